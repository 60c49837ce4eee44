"""zcnic fault injection (/sys/kernel/debug/zcnic/zc0/): each knob drives an error path
that must fail cleanly, after which the queue registers again and carries data zero copy.
Runs in the guest (guest_tests/agent.py) on guest_tests/lib/nic.py's NicEnv.

fail_queue_start is only ever armed with 1: with >= 2 the core's restart of the old queue
fails too and net/core/netdev_rx_queue.c WARNs by design ("Failed to restart old queue").
A knob is never left armed while a zcrx is bound: unbinding restarts the queue through
the same ops, and a failure there is a WARN_ON in __netif_mp_close_rxq().
"""

import errno
import os

import pytest

from guest_tests.lib.flow import zc_transfer
from guest_tests.lib.nic import IFNAME, qstat, sh
from guest_tests.zcrx import uapi as U

pytestmark = [pytest.mark.zcnic, pytest.mark.faults, pytest.mark.in_guest]

MiB = 1 << 20


def fault_datapath(nic, name, value, bind=1, steer=1, family="ipv4"):
    """A knob armed for the whole transfer (rx_drop, fail_pp_alloc) with ALLOC_FAIL armed;
    the device's qstats growth across it."""
    nic.require_knobs()
    q0 = nic.dev_qstats()
    mask = 1 << U.ZCRX_EVENT_ALLOC_FAIL
    out = zc_transfer(nic, family, bind, steer, knobs={name: value}, event_mask=mask)
    q1 = nic.dev_qstats()
    out["dev_qstats_delta"] = {k: q1.get(k, 0) - q0.get(k, 0) for k in q1 if k.startswith("rx-")}
    return out


def assert_recovered(again, size=MiB):
    assert again["final"] == 0 and again["bytes"] == size and again["match"], again
    assert again["stats"]["copy_count"] == 0
    assert again["bound_after"] == [] and again["pins_after"] == 0


@pytest.mark.parametrize(
    "knob,err", [("fail_queue_mem_alloc", errno.ENOMEM), ("fail_queue_start", errno.EIO)]
)
def test_registration_fails_cleanly(nic, knob, err):
    """ndo_queue_mem_alloc / ndo_queue_start fail: registration returns the driver's errno,
    the knob is consumed, nothing stays bound, the old queue runs on (a full posted ring of
    readable buffers); a fresh registration then works zero copy."""
    armed = nic.arm(knob, 1)
    got, left = nic.register_errno(1), nic.knob(knob)
    armed.exec()
    assert got == err, f"errno {got} ({errno.errorcode.get(got)})"
    assert left == 0
    assert nic.wait_unbound(timeout=5) == [] and len(nic.io_uring_pools()) == 0
    st = nic.stats()
    assert qstat(st, 1, "posted") == 256 and qstat(st, 1, "unreadable") == 0, st
    assert_recovered(zc_transfer(nic, bind=1, steer=1))


@pytest.mark.parametrize(
    "knob,text",
    [("fail_queue_mem_alloc", "Cannot allocate memory"), ("fail_queue_start", "Input/output error")],
)
def test_link_up_fails_cleanly(nic, knob, text):
    """ndo_open fails: `ip link set zc0 up` reports it and zc0 stays down; the next up works."""
    nic.require_knobs()
    nic.link_down()
    armed = nic.arm(knob, 1)
    up = sh(f"ip link set {IFNAME} up", check=False)
    left = nic.knob(knob)
    with open(f"/sys/class/net/{IFNAME}/flags") as f:
        up_after_fail = bool(int(f.read(), 16) & 1)
    armed.exec()
    assert up.returncode != 0 and text in up.stderr, (up.returncode, up.stderr)
    assert not up_after_fail and left == 0
    assert sh(f"ip link set {IFNAME} up", check=False).returncode == 0
    assert_recovered(zc_transfer(nic, bind=1, steer=1, size=256 << 10), 256 << 10)


def test_pp_alloc_failures_on_bound_queue(nic):
    """Every 3rd page-pool allocation fails while data flows to the bound queue: zcnic counts
    alloc_fail and refills later; the stream completes zero copy. The failures are zcnic's
    own (the provider is never asked), so ZCRX_EVENT_ALLOC_FAIL stays silent."""
    res = fault_datapath(nic, "fail_pp_alloc", 3, bind=1, steer=1)
    assert res["qdelta"]["1"]["alloc_fail"] > 0, res["qdelta"]["1"]
    assert res["dev_qstats_delta"]["rx-alloc-fail"] >= res["qdelta"]["1"]["alloc_fail"]
    assert res["events"] == []
    assert_recovered(res)


def test_pp_alloc_failures_on_unbound_queue(nic):
    """The same on a queue with a normal page pool: the copy fallback gets everything."""
    res = fault_datapath(nic, "fail_pp_alloc", 3, bind=1, steer=2)
    assert res["qdelta"]["2"]["alloc_fail"] > 0
    assert res["final"] == 0 and res["match"], res
    # every byte was copied, but copy_bytes counts copies of frags only: bytes TCP
    # collapsed into linear skbs under receive-memory pressure (TCPRcvCollapsed) are
    # copied from the skb's head, uncounted (io_zcrx_recv_skb)
    assert 0 < res["stats"]["copy_bytes"] <= MiB


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_rx_drop(nic, family):
    """Every 7th frame zcnic receives is dropped (the count is device-wide, so ARP/ND on other
    queues may be hit too): the bound queue's fault_drops and the device's qstats hw-drops
    count them, TCP retransmits, the stream completes intact and zero copy."""
    res = fault_datapath(nic, "rx_drop", 7, bind=1, steer=1, family=family)
    drops = res["qdelta"]["1"]["fault_drops"]
    assert drops > 0, res["qdelta"]["1"]
    all_drops = sum(q["fault_drops"] for q in res["qdelta"].values())
    assert res["dev_qstats_delta"]["rx-hw-drops"] >= all_drops >= drops
    assert_recovered(res)


# a queue left without memory by a failed restart, and what brings it back
HEALS = {
    "link_down_up": lambda nic: (nic.setlink(up=False), nic.setlink(up=True))[-1],  # ndo_stop, ndo_open
    "ring_resize": lambda nic: nic.rings(rx=128),  # every queue rebuilt (zcnic_reconfig)
    "link_del": lambda nic: (sh(f"ip link del {IFNAME}"), (0, ""))[-1],  # the next test rebuilds zc0
}


@pytest.mark.expected_warning(
    r"netdev_rx_queue\.c",
    reason="netdev_rx_queue_restart() WARNs when restarting the old queue fails: by design",
)
@pytest.mark.parametrize("heal", list(HEALS))
def test_queue_restart_fails_twice(nic, heal):
    """fail_queue_start 2: registration starts the new queue 1 (fails), then the core
    restarts the old one (fails too, the kernel WARNs). Registration fails with EIO and
    queue 1 stays without memory: no buffers posted, no NAPI. zcnic survives it: a flow to
    queue 2 still arrives, and link down/up, a ring resize or deleting the link go
    through the queue without memory; after the first two, queue 1 carries data zero copy."""
    armed = nic.arm("fail_queue_start", 2)
    got = nic.register_errno(1)
    left = nic.knob("fail_queue_start")
    armed.exec()
    assert got == errno.EIO and left == 0, (got, left)
    st = nic.stats()
    assert qstat(st, 1, "ring_size") == 0 and qstat(st, 1, "posted") == 0, st
    assert "napi-id" not in nic.queues()[1]
    other = zc_transfer(nic, bind=2, steer=2, size=256 << 10)
    assert_recovered(other, 256 << 10)
    err, extack = HEALS[heal](nic)
    assert err == 0, extack
    if heal == "link_del":
        assert not os.path.exists(f"/sys/class/net/{IFNAME}")
        return
    assert qstat(nic.stats(), 1, "posted") > 0
    assert_recovered(zc_transfer(nic, bind=1, steer=1))
