"""Device changes while a queue is bound to a zcrx: the core refuses what would break the
provider (channels below the bound queue, tcp-data-split off, hds-thresh != 0, XDP) and
zcnic rebuilds queues for the rest (-L, -G rx, down/up, MTU) with the provider kept;
either way a zero-copy transfer afterwards is intact with copy_count == 0.
"""

import errno

import pytest

pytestmark = pytest.mark.zcnic

MiB = 1 << 20

# op in scenarios/zcnic.py BOUND_OPS -> (errno, text the extack must contain, channels after);
# an accepted change carries no extack message at all ("")
OPS = {
    "channels_below_bound": (errno.EINVAL, "memory provider", 4),
    "split_off": (errno.EINVAL, "tcp-data-split", 4),
    "hds_thresh_512": (errno.EINVAL, "hds_thresh", 4),
    "xdp_generic": (errno.EBUSY, "memory provider", 4),
    "channels_grow": (0, "", 6),
    "channels_shrink_keep_bound": (0, "", 3),
    "ring_rx_128": (0, "", 4),
    "ring_rx_1024": (0, "", 4),
    "down_up": (0, "", 4),
    "mtu_1400": (0, "", 4),
}


@pytest.mark.parametrize("op", list(OPS))
def test_change_while_bound(nic, op):
    want_errno, want_text, channels = OPS[op]
    res = nic.call("while_bound", op=op)
    assert res["op"]["errno"] == want_errno, res["op"]
    if want_text:
        assert want_text in res["op"]["extack"], res["op"]
    else:
        assert res["op"]["extack"] == "", res["op"]
    assert res["bound_after_op"] == [1] and "io-uring" in res["queue_get"], "provider lost"
    assert res["pools"] == 1, "one io_uring page pool for the bound queue"
    assert res["channels"] == channels
    assert res["rings"]["tcp-data-split"] == 2 and res["rings"]["hds-thresh"] == 0, res["rings"]
    if op.startswith("ring_rx_"):
        assert res["rings"]["rx"] == int(op.rsplit("_", 1)[1])
    if op == "down_up":  # RTM_SETLINK without IFF_UP, then with it
        assert res["op"]["states"] == [{"up": False, "mtu": 1500}, {"up": True, "mtu": 1500}], res["op"]
    assert res["link"] == {"up": True, "mtu": 1400 if op == "mtu_1400" else 1500}, res["link"]
    assert res["final"] == 0 and res["bytes"] == MiB and res["match"], res
    assert res["stats"]["copy_count"] == 0, "no longer zero copy after the change"
    assert res["bound_after"] == [] and res["pins_after"] == 0, res


@pytest.mark.xfail(
    strict=True,
    reason="net/ethtool/common.c ethtool_check_max_channel(): dev_get_min_mp_channel_count() "
    "returns a count (bound index + 1) but is compared with <=, so keeping exactly the bound "
    "queue (combined 2 with queue 1 bound) is refused with EINVAL",
)
def test_channels_down_to_bound_queue(nic):
    """combined == bound queue + 1 keeps the bound queue and should be allowed."""
    res = nic.call("while_bound", op="channels_to_bound_plus_1")
    assert res["op"]["errno"] == 0, res["op"]
    assert res["channels"] == 2 and res["match"] and res["stats"]["copy_count"] == 0
