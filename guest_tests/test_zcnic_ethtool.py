"""ethtool on zcnic without zcrx: channels (-L), rings (-G rx, hds-thresh), and steering
(-N ntuple rules, -X RSS weights and contexts) observed in netdev per-queue qstats.
"""

import errno

import pytest

pytestmark = pytest.mark.zcnic

KiB = 1 << 10


def test_channels(nic, nic_cached):
    """-L combined 1..16: queue-get, ethtool -S and the default indirection table follow;
    0 and 17 are refused."""
    res = nic_cached(nic, "channels_and_rings")
    for n in (1, 16, 4):
        assert res[f"L{n}"] == {"errno": 0, "queues": n, "stats_queues": n, "indir_max": n - 1}, n
    assert res["L17"]["errno"] == errno.EINVAL and res["L17"]["queues"] == 16
    assert res["L0"]["errno"] == errno.EINVAL


def test_rx_ring_size(nic, nic_cached):
    """-G rx 8..4096: every queue gets a ring of that size, fully posted; 7 and 4097 refused."""
    res = nic_cached(nic, "channels_and_rings")
    for n in (8, 4096, 64, 256):
        assert res[f"G{n}"] == {"errno": 0, "rx": n, "ring_size": [n], "posted": [n]}, res[f"G{n}"]
    assert res["G7"]["errno"] == errno.EINVAL and res["G7"]["rx"] == 4096
    assert res["G4097"]["errno"] == errno.EINVAL


def test_hds_thresh_limits(nic, nic_cached):
    res = nic_cached(nic, "channels_and_rings")
    assert res["hds_max"] == 1024
    assert res["hds_1025"] == errno.EINVAL
    assert res["hds_1024"] == 0 and res["hds_now"] == 1024


def only_queue(res, queue):
    """Did only `queue` receive TCP payload (header-split segments, ethtool -S hds_packets)?
    ARP and ND land wherever RSS puts them."""
    moved = {q for q, n in res["qhds"].items() if n > 0}
    return moved == {str(queue)}, res["qhds"]


@pytest.mark.parametrize("family,queue", [("ipv4", 3), ("ipv6", 0)])
def test_ntuple_rule_steers(nic, family, queue):
    res = nic.call("plain_transfer", family=family, rule=queue)
    assert res["rule_listed"] and res["match"], res
    ok, moved = only_queue(res, queue)
    assert ok, f"flow not (only) on queue {queue}: {moved}"
    assert res["qbytes"][str(queue)] >= 256 * KiB, "qstats rx-bytes of the queue"
    assert res["qpackets"][str(queue)] >= res["qhds"][str(queue)]


def test_ntuple_drop_rule(nic):
    """action -1: the NIC drops the flow (rx_steer_drops), the connection never comes up."""
    res = nic.call("plain_transfer", rule=-1)
    assert not res["connected"] and res["steer_drops"] > 0, res


def test_rss_weights_steer(nic):
    res = nic.call("plain_transfer", rss=[0, 0, 1, 0])
    assert res["match"]
    ok, moved = only_queue(res, 2)
    assert ok, moved


def test_rss_context_steers(nic):
    """A new RSS context (start 2, equal 1) and an ntuple rule to it: the flow lands on queue 2."""
    res = nic.call("plain_transfer", rss_ctx={"start": 2, "equal": 1})
    assert 1 <= res["rss_context"] <= 7 and res["match"], res
    ok, moved = only_queue(res, 2)
    assert ok, moved
