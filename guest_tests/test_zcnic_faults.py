"""zcnic fault injection (/sys/kernel/debug/zcnic/zc0/): each knob drives an error path
that must fail cleanly, after which the queue registers again and carries data zero copy.

fail_queue_start is only ever armed with 1: with >= 2 the core's restart of the old queue
fails too and net/core/netdev_rx_queue.c WARNs by design ("Failed to restart old queue").
A knob is never left armed while a zcrx is bound: unbinding restarts the queue through
the same ops, and a failure there is a WARN_ON in __netif_mp_close_rxq().
"""

import errno

import pytest

pytestmark = [pytest.mark.zcnic, pytest.mark.faults]

MiB = 1 << 20


@pytest.fixture
def fault_nic(nic):
    nic.require_knobs()
    return nic


def assert_recovered(again, size=MiB):
    assert again["final"] == 0 and again["bytes"] == size and again["match"], again
    assert again["stats"]["copy_count"] == 0
    assert again["bound_after"] == [] and again["pins_after"] == 0


@pytest.mark.parametrize(
    "knob,err", [("fail_queue_mem_alloc", errno.ENOMEM), ("fail_queue_start", errno.EIO)]
)
def test_registration_fails_cleanly(fault_nic, knob, err):
    """ndo_queue_mem_alloc / ndo_queue_start fail: registration returns the driver's errno,
    the knob is consumed, nothing stays bound, the old queue runs on (a full posted ring of
    readable buffers); a fresh registration then works zero copy."""
    res = fault_nic.call("fault_register", name=knob)
    assert res["errno"] == err, res
    assert res["knob_after"] == 0
    assert res["bound_after_fail"] == [] and res["pools_after_fail"] == 0
    assert res["posted_after_fail"] == 256 and res["unreadable_after_fail"] == 0
    assert_recovered(res["again"])


@pytest.mark.parametrize(
    "knob,text",
    [("fail_queue_mem_alloc", "Cannot allocate memory"), ("fail_queue_start", "Input/output error")],
)
def test_link_up_fails_cleanly(fault_nic, knob, text):
    """ndo_open fails: `ip link set zc0 up` reports it and zc0 stays down; the next up works."""
    res = fault_nic.call("fault_link_up", name=knob)
    assert res["rc"] != 0 and text in res["stderr"], res
    assert not res["up_after_fail"] and res["knob_after"] == 0
    assert res["rc_again"] == 0
    assert_recovered(res["again"], 256 << 10)


def test_pp_alloc_failures_on_bound_queue(fault_nic):
    """Every 3rd page-pool allocation fails while data flows to the bound queue: zcnic counts
    alloc_fail and refills later; the stream completes zero copy. The failures are zcnic's
    own (the provider is never asked), so ZCRX_EVENT_ALLOC_FAIL stays silent."""
    res = fault_nic.call("fault_datapath", name="fail_pp_alloc", value=3, bind=1, steer=1)
    assert res["qdelta"]["1"]["alloc_fail"] > 0, res["qdelta"]["1"]
    assert res["dev_qstats_delta"]["rx-alloc-fail"] >= res["qdelta"]["1"]["alloc_fail"]
    assert res["events"] == []
    assert_recovered(res)


def test_pp_alloc_failures_on_unbound_queue(fault_nic):
    """The same on a queue with a normal page pool: the copy fallback gets everything."""
    res = fault_nic.call("fault_datapath", name="fail_pp_alloc", value=3, bind=1, steer=2)
    assert res["qdelta"]["2"]["alloc_fail"] > 0
    assert res["final"] == 0 and res["match"], res
    assert res["stats"]["copy_bytes"] == MiB


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_rx_drop(fault_nic, family):
    """Every 7th frame zcnic receives is dropped (the count is device-wide, so ARP/ND on other
    queues may be hit too): the bound queue's fault_drops and the device's qstats hw-drops
    count them, TCP retransmits, the stream completes intact and zero copy."""
    res = fault_nic.call("fault_datapath", name="rx_drop", value=7, bind=1, steer=1, family=family)
    drops = res["qdelta"]["1"]["fault_drops"]
    assert drops > 0, res["qdelta"]["1"]
    all_drops = sum(q["fault_drops"] for q in res["qdelta"].values())
    assert res["dev_qstats_delta"]["rx-hw-drops"] >= all_drops >= drops
    assert_recovered(res)
