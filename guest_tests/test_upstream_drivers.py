"""The kernel's own driver selftests (tools/testing/selftests/drivers/net/*.py and hw/*.py),
unmodified, against zcnic on NicEnv's topology, like iou-zcrx.py (test_upstream.py).

Each script runs once per guest agent: its first case here runs it (a splat during the
run is charged to that case), the others judge the same KTAP output. Upstream's `ok`
passes, its `# SKIP` skips with upstream's reason; a case in NOT_HERE cannot pass in
this lab yet and xfails with the reason (passing, it fails: take it out of NOT_HERE);
a script in NOT_RUN is not run, for the reason given.
"""

import pytest

from guest_tests.lib.upstream import parse_ktap, script_name, script_run

pytestmark = [pytest.mark.upstream, pytest.mark.in_guest]

NTUPLE_FIELDS = (
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "src_ip.dst_ip",
    "src_ip.dst_ip.src_port.dst_port",
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
    "hw/devmem.py": ["check_rx", "check_tx", "check_tx_chunks", "check_rx_hds", "check_rx_large_niov"],
}

NO_BPF = "needs net/lib/xdp_dummy.bpf.o, a BPF object: the guest image has no clang to build it"
NOT_HERE = {
    ("hds.py", "set_xdp"): NO_BPF,
    ("ping.py", "test_xdp_generic_sb"): NO_BPF,
    ("ping.py", "test_xdp_generic_mb"): NO_BPF,
    ("ping.py", "test_xdp_native_sb"): NO_BPF,
}

NOT_RUN = {
    "gro.py": "about 300 cases (3 GRO modes x 6 encapsulations x 20-30 packet shapes), each "
    "a raw-socket sender and receiver pair: far too long under TCG for every run; its C helper "
    "net/lib/gro is not built yet",
    "hw/toeplitz.py": "needs the toeplitz C helper, and per-queue IRQs (NAPI irq) that an "
    "emulated NIC without interrupts does not have",
    "hw/nk_qlease.py": "NetDrvContEnv: needs LOCAL_PREFIX_V6 and a netkit container "
    "environment this lab does not set up yet",
}

PARAMS = [pytest.param(s, case, id=f"{s}::{case}") for s, cases in CASES.items() for case in cases]


@pytest.mark.parametrize("script,case", PARAMS)
def test_driver_selftest(nic, upstream_tree, script, case):
    nic.keep_rings()  # upstream restores header split as "unknown": off on zcnic
    rc, out = script_run(upstream_tree, nic, script)
    verdict = parse_ktap(out, script_name(script)).get(case)
    if verdict is None:
        pytest.fail(f"no KTAP result for {case} (rc {rc}):\n{out[-3000:]}", pytrace=False)
    ok, directive, reason = verdict
    why = NOT_HERE.get((script, case))
    if why and ok and directive != "SKIP":
        pytest.fail(f"{script} {case} passes now: take it out of NOT_HERE ({why})", pytrace=False)
    if why:
        pytest.xfail(why)
    if not ok:
        pytest.fail(f"upstream case failed; upstream-ktap/{script.replace('/', '_')}.txt:\n{out[-3000:]}")
    if directive == "SKIP":
        pytest.skip(f"upstream: {reason}")


@pytest.mark.parametrize("script", list(CASES))
def test_driver_selftest_cases(nic, upstream_tree, script):
    """The kernel under test's script has exactly the cases CASES lists."""
    nic.keep_rings()
    rc, out = script_run(upstream_tree, nic, script)
    listed = list(parse_ktap(out, script_name(script)))
    assert listed == CASES[script], f"update CASES (rc {rc}):\n{out[-3000:]}"


@pytest.mark.parametrize("script", list(NOT_RUN))
def test_driver_selftest_not_run(script):
    pytest.skip(f"{script}: {NOT_RUN[script]}")
