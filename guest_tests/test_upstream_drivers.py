"""The kernel's own driver selftests (tools/testing/selftests/drivers/net/*.py and hw/*.py),
unmodified, against zcnic on NicEnv's topology, like iou-zcrx.py (test_upstream.py).

Each script runs once per guest agent: its first case here runs it (a splat during the
run is charged to that case), the others judge the same KTAP output. Upstream's `ok`
passes, its `# SKIP` skips and its `# XFAIL` xfails with upstream's reason; a case in
NOT_HERE cannot pass in this lab yet and xfails with the reason (passing, it fails: take
it out of NOT_HERE).
"""

import os
import re

import pytest

from guest_tests.lib import sysctl, upstream
from guest_tests.lib.defer import defer
from guest_tests.lib.nic import sh
from guest_tests.lib.upstream import case_output, parse_ktap, script_name, script_run

pytestmark = [pytest.mark.upstream, pytest.mark.in_guest]

NTUPLE_FIELDS = (
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "src_ip.dst_ip",
    "src_ip.dst_ip.src_port.dst_port",
)
GRO_COMMON = [
    "data_same",
    "data_lrg_sml",
    "data_sml_lrg",
    "data_lrg_1byte",
    "data_burst",
    "ack",
    "flags_psh",
    "flags_syn",
    "flags_rst",
    "flags_urg",
    "flags_cwr",
    "tcp_csum",
    "tcp_seq",
    "tcp_ts",
    "tcp_opt",
    "ip_ecn",
    "ip_tos",
    "large_max",
    "large_rem",
]
GRO_IPV4 = [
    "ip_csum",
    "ip_ttl",
    "ip_opt",
    "ip_frag4",
    "ip_id_df1_inc",
    "ip_id_df1_fixed",
    "ip_id_df0_inc",
    "ip_id_df0_fixed",
    "ip_id_df1_inc_fixed",
    "ip_id_df1_fixed_inc",
]
GRO_IPV6 = ["ip_frag6", "ip_v6ext_same", "ip_v6ext_diff"]
GRO_PPPOE = ["data_same", "data_lrg_sml", "data_sml_lrg", "data_lrg_1byte", "data_burst", "pppoe_sid"]
GRO_EXTRA = {"ipv4": GRO_IPV4, "ipv6": GRO_IPV6, "ipip": GRO_IPV4, "ip6ip6": []}
GRO_CASES = (
    [
        f"test.{mode}_{proto}_{name}"
        for mode in ("sw", "hw", "lro")
        for proto, extra in GRO_EXTRA.items()
        for name in GRO_COMMON + extra
    ]
    + [f"test.sw_{proto}_{name}" for proto in ("pppoev4", "pppoev6") for name in GRO_PPPOE]
    + [
        f"test_gro_capacity.{mode}_{setup}"
        for mode in ("sw", "hw", "lro")
        for setup in ("isolated", "1q", "8q")
    ]
)
# the cases of each script in the 7.3 tree, in upstream's order
CASES = {
    "hds.py": [
        "get_hds",
        "get_hds_thresh",
        "set_hds_disable",
        "set_hds_enable",
        "set_hds_thresh_random",
        "set_hds_thresh_zero",
        "set_hds_thresh_max",
        "set_hds_thresh_gt",
        "set_xdp",
        "enabled_set_xdp",
        "ioctl",
        "ioctl_set_xdp",
        "ioctl_enabled_set_xdp",
    ],
    "queues.py": ["get_queues", "addremove_queues", "check_down", "check_xsk"],
    "stats.py": [
        "check_pause",
        "check_fec",
        "check_fec_hist",
        "pkt_byte_sum",
        "qstat_by_ifindex",
        "check_down",
        "procfs_hammer",
        "procfs_downup_hammer",
    ],
    "ring_reconfig.py": ["channels", "ringparam", "reconfig_tx_stall"],
    "ping.py": [
        "test_default_v4",
        "test_default_v6",
        "test_xdp_generic_sb",
        "test_xdp_generic_mb",
        "test_xdp_native_sb",
        "test_xdp_native_mb",
        "test_xdp_offload",
    ],
    "hw/ntuple.py": [
        f"queue.{proto}{ver}.{fields}"
        for ver in ("4", "6")
        for proto in ("tcp", "udp")
        for fields in NTUPLE_FIELDS
    ],
    "hw/rss_api.py": [
        "test_rxfh_nl_set_fail",
        "test_rxfh_nl_set_indir",
        "test_rxfh_nl_set_indir_ctx",
        "test_rxfh_indir_ntf",
        "test_rxfh_indir_ctx_ntf",
        "test_rxfh_nl_set_key",
        "test_rxfh_fields",
        "test_rxfh_fields_set",
        "test_rxfh_fields_set_xfrm",
        "test_rxfh_fields_ntf",
        "test_rss_ctx_add",
        "test_rss_ctx_ntf",
    ],
    "hw/rss_ctx.py": [
        "test_rss_key_indir",
        "test_rss_queue_reconfigure",
        "test_rss_resize",
        "test_hitless_key_update",
        "test_rss_context",
        "test_rss_context4",
        "test_rss_context32",
        "test_rss_context_dump",
        "test_rss_context_queue_reconfigure",
        "test_rss_context_overlap",
        "test_rss_context_overlap2",
        "test_rss_context_out_of_order",
        "test_rss_context4_create_with_cfg",
        "test_flow_add_context_missing",
        "test_delete_rss_context_busy",
        "test_rss_ntuple_addition",
        "test_rss_default_context_rule",
        "test_rss_context_flow_hash",
        "test_rss_context_persist_create_and_ifdown",
        "test_rss_context_persist_ifdown_and_create",
    ],
    "hw/pp_alloc_fail.py": ["test_pp_alloc"],
    "napi_id.py": ["test_napi_id"],
    "gro.py": GRO_CASES,
    "hw/irq.py": ["check_irqs_reported", "check_reconfig_queues", "check_reconfig_xdp", "check_down"],
    "hw/toeplitz.py": [
        f"test.{group}{l4}_ipv{l3}" for group in ("", "rss_", "rps_") for l4 in ("tcp", "udp") for l3 in "46"
    ],
    "hw/nk_qlease.py": [
        "test_iou_zcrx",
        "test_iou_zcrx_large_buf",
        "test_attrs",
        "test_attach_xdp_with_mp",
        "test_destroy",
    ],
    "hw/devmem.py": ["check_rx", "check_tx", "check_tx_chunks", "check_rx_hds", "check_rx_large_niov"],
}

# cases whose upstream failure says the machine is too slow for them (TCG): they xfail
# when that is the failure (a regular expression searched in the case's output), and
# pass or fail as upstream says otherwise (on KVM)
TOO_SLOW = {
    **{
        ("hw/toeplitz.py", f"test.{group}{l4}_ipv{l3}"): (
            "too few frames for verification",
            "needs 40 frames within 4 s from a sender that starts socat per frame; the "
            "debug kernel under TCG receives about 7, the default kernel on a busy 2-core "
            "machine sometimes fewer than 40 (each hash, and with rss_ each CPU, it checks "
            "is right)",
        )
        for group in ("", "rss_")
        for l4 in ("tcp", "udp")
        for l3 in "46"
    },
    **{
        ("hw/devmem.py", case): (
            "Waiting for port listen timed out",
            "ncdevmem sets up the NIC (channels, header split, a flow rule, RSS) and binds the "
            "dma-buf before it listens; on the debug kernel under TCG that took longer than "
            "the 5 s wait_port_listen() gives it",
        )
        for case in ("check_rx", "check_rx_hds")
    },
    **{
        ("gro.py", f"test.sw_{proto}_{name}"): (
            # the exception that ended the case, after its last try: under-coalescing
            # (over-coalescing is gro's exit 42, "GRO over-coalesced", and fails)
            r"Exception\|\s+\S+/gro: incorrect number of packets",
            "software GRO of a 64 KB aggregate needs its segments in one NAPI poll; under "
            "TCG on a busy machine they can arrive over several, and each poll's end flushes "
            "a part (6 tries; upstream ignores this under KSFT_MACHINE_SLOW)",
        )
        for proto in ("ipv4", "ipv6", "ipip", "ip6ip6")
        for name in ("large_max", "large_rem")
    },
    ("hw/pp_alloc_fail.py", "test_pp_alloc"): (
        "Traffic seems low",
        "needs 4000 rx packets/s of iperf3 traffic before it injects page pool allocation "
        "failures; zcnic under TCG receives about 2500",
    ),
}
NOT_HERE: dict[tuple[str, str], str] = {}


def _gro_lab(nic):
    """What gro.py takes from upstream's drivers/net/config that a distribution kernel
    leaves to modules, and from a NIC's port: PPPoE's GRO handler registers when pppoe.ko
    loads (CONFIG_PPPOE=y upstream, and in the lab's kconfigs), and large_* raise zc0's MTU
    to 4096, which zcnic takes only up to its lower device's."""
    if not os.path.exists("/proc/net/pppoe"):  # built in: nothing to load
        sh("modprobe pppoe")
    nic.lower_mtu(9000)


def _devmem_lab(nic):
    """devmem_lib raises vm.nr_hugepages to 64 for a case and puts it back after it; each
    large-niov ncdevmem run takes 32 (a 64 MiB hugetlb udmabuf), released only when its
    devmem binding is freed, from a workqueue. Run after other tests in the same guest,
    that case failed ("create udmabuf: Cannot allocate memory"), once even with 64 pages
    reserved here; alone it passed. 128 free huge pages are kept for the whole run.

    check_rx_large_niov sends each size of its sweep with socat bound to the same source
    port; when the sender closed first, its TIME_WAIT socket failed the next bind
    ("Address already in use", seen once in 4 CI runs). The remote end keeps no TIME_WAIT
    sockets for the run (tcp_max_tw_buckets 0, its own netns)."""
    tw = f"ip netns exec {nic.netns} sysctl"
    old = sh(f"{tw} -n net.ipv4.tcp_max_tw_buckets").stdout.strip()
    sh(f"{tw} -w net.ipv4.tcp_max_tw_buckets=0")
    defer(sh, f"{tw} -w net.ipv4.tcp_max_tw_buckets={old}")
    if sysctl.exists("vm.compact_memory"):  # CONFIG_COMPACTION
        sysctl.write("vm.compact_memory", 1)
    free = sysctl.hugepages_free()
    if free < 128 and not sysctl.reserve_hugepages(128 - free):
        pytest.fail(f"devmem.py needs 128 free huge pages; the guest has {sysctl.hugepages_free()}")


def _ping_lab(nic):
    """ping.py attaches XDP with zc0's MTU at 1500 (one buffer) and at 9000 (frags): the
    kernel refuses single-buffer XDP while tcp-data-split is on, which NicEnv sets and a
    NIC's default leaves off, and zcnic takes no MTU above its lower device's."""
    err, extack = nic.rings(split="off")
    assert err == 0, extack
    nic.lower_mtu(9000)


def _split_off(nic):
    """irq.py's check_reconfig_xdp attaches single-buffer XDP, which the kernel refuses
    while tcp-data-split is on (NicEnv sets it; a NIC's default leaves it off)."""
    err, extack = nic.rings(split="off")
    assert err == 0, extack


def _container_route(nic):
    """NetDrvContEnv (nk_*.py) needs netkit, gives the netkit container addresses of
    LOCAL_PREFIX_V6 and expects the remote end to route that prefix to NETIF, as the lab's
    network would."""
    probe = sh("ip link add zcnkprobe type netkit", check=False)
    if probe.returncode:
        pytest.skip(f"kernel {os.uname().release} has no netkit (CONFIG_NETKIT): {probe.stderr.strip()}")
    sh("ip link del zcnkprobe")
    local6 = nic.addr["ipv6"][0]
    route = f"{upstream.CONTAINER_PREFIX_V6} via {local6}"
    sh(f"ip -n {nic.netns} -6 route add {route}")
    defer(sh, f"ip -n {nic.netns} -6 route del {route}", check=False)


# what a script needs of the machine before it runs, and how long it may take (s)
PREPARE = {
    "gro.py": _gro_lab,
    "hw/devmem.py": _devmem_lab,
    "hw/irq.py": _split_off,
    "ping.py": _ping_lab,
    "hw/nk_qlease.py": _container_route,
}
RUN_TIMEOUT = {  # beyond upstream.RUN_TIMEOUT; about twice an idle TCG run
    "gro.py": 900,  # 318 cases, each a raw-socket sender and receiver
    "hw/rss_ctx.py": 1500,  # SLOW
}
GUEST_TIMEOUT = 1600  # s for the test that runs a whole script: the longest RUN_TIMEOUT, and more


# scripts too long for every run under TCG: marked slow (not in `host test`; `-m upstream`
# runs them)
SLOW = {"hw/rss_ctx.py": "20 cases, most with iperf3 traffic: 12.5 minutes under TCG"}


def _marks(script):
    return [pytest.mark.slow] if script in SLOW else []


PARAMS = [
    pytest.param(s, case, id=f"{s}::{case}", marks=_marks(s)) for s, cases in CASES.items() for case in cases
]


def _run(nic, upstream_tree, script):
    nic.keep_rings()  # upstream restores header split as "unknown": off on zcnic
    return script_run(
        upstream_tree, nic, script, PREPARE.get(script), RUN_TIMEOUT.get(script, upstream.RUN_TIMEOUT)
    )


@pytest.mark.guest_timeout(GUEST_TIMEOUT)
@pytest.mark.parametrize("script,case", PARAMS)
def test_driver_selftest(nic, upstream_tree, script, case):
    rc, out = _run(nic, upstream_tree, script)
    verdict = parse_ktap(out, script_name(script)).get(case)
    if verdict is None:
        pytest.fail(f"no KTAP result for {case} (rc {rc}):\n{out[-3000:]}", pytrace=False)
    ok, directive, reason = verdict
    why = NOT_HERE.get((script, case))
    if why and ok and directive != "SKIP":
        pytest.fail(f"{script} {case} passes now: take it out of NOT_HERE ({why})", pytrace=False)
    if why:
        pytest.xfail(why)
    slow = TOO_SLOW.get((script, case))
    if not ok and slow and re.search(slow[0], case_output(out, case, script_name(script))):
        pytest.xfail(f"too slow here: {slow[1]}")
    if not ok:
        pytest.fail(f"upstream case failed; upstream-ktap/{script.replace('/', '_')}.txt:\n{out[-3000:]}")
    if directive == "SKIP":
        pytest.skip(f"upstream: {reason}")
    if directive == "XFAIL":
        pytest.xfail(f"upstream: {reason}")


@pytest.mark.guest_timeout(GUEST_TIMEOUT)
@pytest.mark.parametrize("script", [pytest.param(s, marks=_marks(s)) for s in CASES])
def test_driver_selftest_cases(nic, upstream_tree, script):
    """The kernel under test's script has exactly the cases CASES lists."""
    rc, out = _run(nic, upstream_tree, script)
    listed = list(parse_ktap(out, script_name(script)))
    assert listed == CASES[script], f"update CASES (rc {rc}):\n{out[-3000:]}"
