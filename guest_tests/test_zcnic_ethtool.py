"""ethtool on zcnic without zcrx: channels (-L), rings (-G rx, hds-thresh), and steering
(-N ntuple rules, -X RSS weights and contexts) observed in netdev per-queue qstats.
Runs in the guest (guest_tests/agent.py) on guest_tests/lib/nic.py's NicEnv.
"""

import errno

import pytest

from guest_tests.lib.defer import defer
from guest_tests.lib.nic import port_for, qstat
from guest_tests.lib.peer import Peer, listener

pytestmark = [pytest.mark.zcnic, pytest.mark.in_guest]

KiB = 1 << 10
SIZE = 256 * KiB


def test_channels(nic):
    """-L combined 1..16: queue-get, ethtool -S and the default indirection table follow;
    0 and 17 are refused."""
    for n in (1, 16, 4):
        err, extack = nic.channels(n)
        st = nic.stats()
        got = {
            "errno": err,
            "queues": len(nic.queues()),
            "stats_queues": sum(1 for k in st if k.endswith("_ring_size")),
            "indir_max": max(nic.indir_table()),
        }
        assert got == {"errno": 0, "queues": n, "stats_queues": n, "indir_max": n - 1}, (n, extack)
        if n == 16:
            assert nic.channels(17)[0] == errno.EINVAL and len(nic.queues()) == 16
            assert nic.channels(0)[0] == errno.EINVAL


def test_rx_ring_size(nic):
    """-G rx 8..4096: every queue gets a ring of that size, fully posted; 7 and 4097 refused."""
    for n in (8, 4096, 64, 256):
        err, extack = nic.rings(rx=n)
        st = nic.wait_stats(
            lambda st, n=n, queues=range(nic.queues_default): all(qstat(st, q, "posted") == n for q in queues)
        )
        got = {
            "errno": err,
            "rx": nic.rings_get()["rx"],
            "ring_size": sorted({qstat(st, q, "ring_size") for q in range(nic.queues_default)}),
            "posted": sorted({qstat(st, q, "posted") for q in range(nic.queues_default)}),
        }
        assert got == {"errno": 0, "rx": n, "ring_size": [n], "posted": [n]}, (got, extack)
        if n == 4096:
            assert nic.rings(rx=7)[0] == errno.EINVAL and nic.rings_get()["rx"] == 4096
            assert nic.rings(rx=4097)[0] == errno.EINVAL


def test_hds_thresh_limits(nic):
    assert nic.rings_get().get("hds-thresh-max") == 1024
    assert nic.rings(hds_thresh=1025)[0] == errno.EINVAL
    assert nic.rings(hds_thresh=1024)[0] == 0 and nic.rings_get().get("hds-thresh") == 1024


def plain_transfer(nic, family, port, expect_connect=True):
    """A plain TCP transfer (recv()) of SIZE bytes to `port`; per-queue deltas of qstats
    (netlink) and ethtool -S across it."""
    lst = listener(family, port)
    defer(lst.close)
    peer = Peer(family, port, SIZE, seed=port)
    defer(peer.kill)
    q0, e0 = nic.qstats(), nic.stats()
    peer.start()
    lst.settimeout(60 if expect_connect else 5)
    try:
        conn, _ = lst.accept()
    except TimeoutError:
        conn = None
    got = bytearray()
    if conn:
        conn.settimeout(60)
        while b := conn.recv(1 << 16):
            got += b
        conn.close()
    q1, e1 = nic.qstats(), nic.stats()
    return {
        "bytes": len(got),
        "match": bytes(got) == peer.data,
        "connected": conn is not None,
        "qpackets": {q: q1[q]["rx-packets"] - q0.get(q, {}).get("rx-packets", 0) for q in q1},
        "qhds": {q: qstat(e1, q, "hds_packets") - qstat(e0, q, "hds_packets") for q in q1},
        "qbytes": {q: q1[q]["rx-bytes"] - q0.get(q, {}).get("rx-bytes", 0) for q in q1},
        "steer_drops": e1["rx_steer_drops"] - e0["rx_steer_drops"],
    }


def only_queue(res, queue):
    """Did only `queue` receive TCP payload (header-split segments, ethtool -S hds_packets)?
    ARP and ND land wherever RSS puts them."""
    moved = {q for q, n in res["qhds"].items() if n > 0}
    return moved == {queue}, res["qhds"]


@pytest.mark.parametrize("family,queue", [("ipv4", 3), ("ipv6", 0)])
def test_ntuple_rule_steers(nic, family, queue):
    port = port_for(SIZE & 0xFFFF)
    rule = nic.ntuple(family, port, action=queue)
    assert f"Filter: {rule}" in nic.ntuple_list(), "rule not listed by ethtool -n"
    res = plain_transfer(nic, family, port)
    assert res["match"], res
    ok, moved = only_queue(res, queue)
    assert ok, f"flow not (only) on queue {queue}: {moved}"
    assert res["qbytes"][queue] >= 256 * KiB, "qstats rx-bytes of the queue"
    assert res["qpackets"][queue] >= res["qhds"][queue]


def test_ntuple_drop_rule(nic):
    """action -1: the NIC drops the flow (rx_steer_drops), the connection never comes up."""
    port = port_for(SIZE & 0xFFFF)
    nic.ntuple("ipv4", port, action=-1)
    res = plain_transfer(nic, "ipv4", port, expect_connect=False)
    assert not res["connected"] and res["steer_drops"] > 0, res


def test_rss_weights_steer(nic):
    nic.rss_weights([0, 0, 1, 0])
    res = plain_transfer(nic, "ipv4", port_for(SIZE & 0xFFFF))
    assert res["match"]
    ok, moved = only_queue(res, 2)
    assert ok, moved


def test_rss_context_steers(nic):
    """A new RSS context (start 2, equal 1) and an ntuple rule to it: the flow lands on queue 2."""
    port = port_for(SIZE & 0xFFFF)
    ctx = nic.rss_context(start=2, equal=1)
    nic.ntuple("ipv4", port, context=ctx)
    res = plain_transfer(nic, "ipv4", port)
    assert 1 <= ctx <= 7 and res["match"], (ctx, res)
    ok, moved = only_queue(res, 2)
    assert ok, moved
