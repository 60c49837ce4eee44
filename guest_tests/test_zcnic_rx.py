"""Zero-copy receive on zcnic: a TCP flow steered to a zcrx-bound queue arrives without a
copy (struct zcrx_stats copy_count == 0) and intact; the same flow on an unbound queue
goes through the copy fallback; the refill ring running dry drops frames (no_buf_drops)
and raises ZCRX_EVENT_ALLOC_FAIL, and TCP recovers once the buffers come back.

Guest side: guest_tests/scenarios/zcnic.py (veth pair, sender in netns `remote`).
"""

import errno

import pytest

pytestmark = pytest.mark.zcnic

MiB = 1 << 20
PAGE = 4096
ALLOC_FAIL = 0  # ZCRX_EVENT_ALLOC_FAIL: the event CQE's res
HW_DROPS = ("no_buf_drops", "fault_drops", "too_big_drops")  # ethtool -S, summed in rx-hw-drops


def flow_queue_packets(res, queue):
    """TCP segments with payload (header-split) that a queue received during the transfer;
    ARP/ND and bare ACKs are not split."""
    return res["qdelta"][str(queue)]["hds_packets"]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_zero_copy_on_bound_queue(nic, nic_cached, family):
    """ntuple rule to the bound queue: every byte arrives as a zcrx CQE into the area, none copied."""
    res = nic_cached(nic, "transfer", family=family, bind=1, steer=1, size=2 * MiB)
    assert res["final"] == 0 and res["bytes"] == 2 * MiB, res
    assert res["match"], f"payload differs: sha {res['sha_got']} != {res['sha_sent']}"
    assert res["stats"] == {"copy_count": 0, "copy_bytes": 0}, "data was copied, not zero copy"
    q1 = res["qdelta"]["1"]
    assert q1["unreadable"] == 1 and q1["hds_packets"] > 0 and q1["bytes"] >= 2 * MiB, q1
    assert all(flow_queue_packets(res, q) == 0 for q in (0, 2, 3)), res["qdelta"]
    assert res["peer"] == {"sent": 2 * MiB, "errno": 0, "secs": res["peer"]["secs"]}
    assert res["bound_after"] == [] and res["pins_after"] == 0, res
    assert res["pools_after"] == 0, "io_uring page pool still there after the ring closed"


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_copy_fallback_on_unbound_queue(nic, nic_cached, family):
    """The same flow steered to queue 2 while queue 1 is bound: readable page-pool pages,
    so RECV_ZC copies every byte into the area (zcrx_stats copy_bytes == all of it)."""
    res = nic_cached(nic, "transfer", family=family, bind=1, steer=2, size=MiB)
    assert res["final"] == 0 and res["match"], res
    assert res["stats"]["copy_bytes"] == MiB
    assert 0 < res["stats"]["copy_count"] <= res["cqes"]
    assert res["qdelta"]["2"]["unreadable"] == 0 and flow_queue_packets(res, 2) > 0
    assert flow_queue_packets(res, 1) == 0, "the bound queue saw the flow"
    assert res["pins_after"] == 0


def test_zero_copy_rss_steered(nic, nic_cached):
    """No ntuple rule: RSS weights 0 1 0 0 put every flow on the bound queue 1."""
    res = nic_cached(nic, "transfer", bind=1, rss=[0, 1, 0, 0], size=MiB)
    assert res["final"] == 0 and res["match"], res
    assert res["stats"]["copy_count"] == 0
    assert flow_queue_packets(res, 1) > 0 and res["qdelta"]["1"]["unreadable"] == 1


def test_netlink_shows_io_uring_provider(nic, nic_cached):
    """While bound: queue-get has an io-uring nest on queue 1 only; page-pool-get lists one
    io-uring pool of zc0 on that queue's NAPI with the ring's buffers in flight."""
    res = nic_cached(nic, "transfer", bind=1, steer=1, size=MiB, probe=True)
    q = res["queue_get"]
    assert q["io-uring"] == {"rx-buf-len": PAGE} and q["ifindex"] == nic.ifindex, q
    assert res["bound"] == [1]
    [pool] = res["pools"]
    assert pool["io-uring"] == {"rx-buf-len": PAGE}
    assert pool["ifindex"] == nic.ifindex and pool["napi-id"] == q["napi-id"], (pool, q)
    assert pool["inflight"] == 256, "zcnic posts a full rx ring (256) from the pool"
    assert "detach-time" not in pool
    assert res["pins_bound"] >= 1024, "the 1024-page area is pinned while bound"
    assert res["bound_after"] == [] and res["pins_after"] == 0


def test_qstats_count_zero_copy_flow(nic, nic_cached):
    """netdev qstats-get (scope queue), growth during the transfer: the bound queue carries
    the flow, checksums were validated by the NIC (csum-unnecessary), nothing dropped."""
    res = nic_cached(nic, "transfer", bind=1, steer=1, size=MiB, probe=True)
    q1 = res["qstats"]["1"]
    assert q1["rx-bytes"] >= MiB and q1["rx-packets"] > 0, q1
    assert q1["rx-csum-unnecessary"] > 0 and q1["rx-csum-bad"] == 0
    assert q1["rx-hw-drops"] == 0 and q1["rx-hw-drop-overruns"] == 0
    others = {q: res["qstats"][q]["rx-bytes"] for q in ("0", "2", "3")}
    assert all(b < 16 << 10 for b in others.values()), f"only ARP/ND expected elsewhere: {others}"


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_refill_ring_dry_drops_then_recovers(nic, nic_cached, family):
    """128-page area, 64-entry NIC ring, the user holds every buffer: the NIC runs out of
    posted buffers and drops (no_buf_drops, qstats hw-drops); after the buffers are returned
    TCP retransmits and the stream completes intact and zero copy."""
    res = nic_cached(nic, "refill_dry", family=family)
    dry = res["dry"]
    assert dry["no_buf_drops"] > 0 and dry["posted"] < 64, dry
    # qstats rx-hw-drops is zcnic's no_buf + fault + too_big drops. TCP retransmits into the
    # dry ring while the counters are read, so it lies between the ethtool -S reads around it.
    hw_drops = res["dry_qstats"]["rx-hw-drops"]
    drops_before = sum(dry[f] for f in HW_DROPS)
    drops_after = sum(res["dry_later"][f] for f in HW_DROPS)
    assert drops_before <= hw_drops <= drops_after, (drops_before, hw_drops, res["dry_later"])
    assert dry["alloc_fail"] > 0 and res["dry_qstats"]["rx-alloc-fail"] > 0
    assert 0 < res["held_bytes"] < MiB and res["held_buffers"] <= 128
    assert res["final"] == 0 and res["match"], res
    assert res["stats"]["copy_count"] == 0
    assert res["bound_after"] == [] and res["pins_after"] == 0


def test_alloc_fail_event(nic, nic_cached):
    """ZCRX_EVENT_ALLOC_FAIL (enabled in event_desc.type_mask) fires once when the provider
    has no buffer left; ARM_EVENT is refused before it fired and re-arms it afterwards."""
    res = nic_cached(nic, "refill_dry", family="ipv4")
    assert res["arm_before_fired"] == errno.EINVAL
    assert res["events_while_dry"] == [ALLOC_FAIL], "exactly one event until re-armed"
    assert res["arm_after_fired"] == 0


def test_recv_zc_on_foreign_ifq_fails(nic):
    """Two ifqs (queues 1 and 2) on one ring; the flow lands on queue 2 but RECV_ZC names
    the ifq of queue 1: its net_iovs belong to another provider, the request ends -EFAULT
    without data; RECV_ZC with the right ifq then takes the whole stream zero copy."""
    res = nic.call("foreign_ifq")
    assert res["bound"] == [1, 2]
    assert res["wrong_ifq"]["final"] == -errno.EFAULT and res["wrong_ifq"]["bytes"] == 0, res
    right = res["right_ifq"]
    assert right["final"] == 0 and right["match"] and right["stats"]["copy_count"] == 0, right
    assert res["bound_after"] == []
