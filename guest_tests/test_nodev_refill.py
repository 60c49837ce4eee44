"""Refill ring of a NODEV ifq: returns, wraps, invalid entries, double returns,
corrupted head/tail, FLUSH_RQ.

Method (scenarios/nodev.py): an 8-buffer area is drained until RECV_ZC ends with
-ENOMEM, so the user holds every buffer; crafted refill entries are flushed; a new
RECV_ZC then counts how many distinct buffers the kernel can hand out again.
"""

import errno

import pytest

pytestmark = pytest.mark.nodev

SCN = "scenarios.nodev:"


def refill(guest, kind):
    res = guest.call(SCN + "refill_entries", kind=kind)
    first = res["exhaust1"]
    assert first["niovs"] == 8 and first["final"]["res"] == -errno.ENOMEM, first
    assert res["intact"], "payload corrupted"
    return res


@pytest.mark.parametrize(
    "kind,freed",
    [("valid", 1), ("all", 8), ("misaligned", 1), ("len_0", 1), ("len_huge", 1)],
)
def test_refill_returns_buffers(guest, kind, freed):
    """Entries pointing into a held buffer return it; rqe.len and the offset inside the
    buffer are not checked (7.3: only off >> niov_shift matters)."""
    res = refill(guest, kind)
    assert res["head_after_flush1"] == res["tail"] == res["n_entries"], res
    assert res["exhaust2"]["niovs"] == freed, res["exhaust2"]
    assert res["exhaust2"]["final"]["res"] == -errno.ENOMEM


@pytest.mark.parametrize("kind", ["outside_area", "wrong_area_token", "pad_nonzero"])
def test_invalid_refill_entry_returns_nothing(guest, kind):
    """An invalid entry is consumed without returning a buffer; the valid entry after it
    returns exactly one. (7.3: FLUSH_RQ stops its batch at the invalid entry, so the
    valid one may need a second FLUSH_RQ; both flushes are done here.)"""
    res = refill(guest, kind)
    assert res["head_after_flush2"] == res["tail"] == 2, res
    assert res["exhaust2"]["niovs"] == 1, res["exhaust2"]


@pytest.mark.xfail(
    strict=True,
    reason="io_parse_rqe() stores (off & ~AREA_MASK) >> niov_shift in a 32-bit unsigned: "
    "offsets >= 2^44 inside area 0 alias a valid buffer instead of being rejected (7.3.4)",
)
def test_refill_offset_far_outside_area_rejected(guest):
    res = refill(guest, "far_outside_area")
    assert res["exhaust2"]["niovs"] == 1, res


def test_double_return_ignored(guest):
    """The same buffer twice: the second entry has no user reference left and is dropped."""
    res = refill(guest, "double_return")
    assert res["head_after_flush1"] == 2
    assert res["exhaust2"]["niovs"] == 1


def test_nodev_refill_needs_flush(guest):
    """NODEV has no page pool: refill entries are only consumed by ZCRX_CTRL_FLUSH_RQ."""
    res = guest.call(SCN + "refill_not_consumed_without_flush")
    assert res["head_before"] == 0 and res["tail"] == 8
    assert res["exhaust2_without_flush"]["niovs"] == 0
    assert res["exhaust2_without_flush"]["final"]["res"] == -errno.ENOMEM
    assert res["head_after_recv"] == 0
    assert res["head_after_flush"] == 8
    assert res["exhaust3_after_flush"]["niovs"] == 8
    assert res["intact"]


def test_refill_ring_many_wraps(guest):
    """A 4-entry refill ring wrapped >100 times over 2 MiB; every byte intact."""
    res = guest.call(SCN + "refill_wraps", timeout=600)
    assert res["match"] and res["bytes"] == 2 << 20, res
    assert res["rq_entries"] == 4 and res["wraps"] > 100
    assert res["head"] == res["tail"]
    assert set(res["rearms"]) <= {-errno.ENOMEM}  # a 16-buffer area runs dry between flushes
    assert res["final"]["res"] == 0


@pytest.mark.parametrize(
    "kind,flush1,flush2",
    [
        ("tail_far_ahead", 16, 32),  # at most rq_entries per flush; stale entries ignored
        ("tail_behind_head", 8 + 16, 8 + 32),  # tail - head wraps: clamped to rq_entries
        ("head_garbage", 8, 8),  # the kernel's cached head wins and is written back
    ],
)
def test_corrupted_refill_header(guest, kind, flush1, flush2):
    res = guest.call(SCN + "refill_corrupt", kind=kind)
    assert res["exhaust1"]["niovs"] == 8
    assert (res["head_after_flush1"], res["head_after_flush2"]) == (flush1, flush2), res
    # after resynchronising, all 8 buffers come back and data stays intact
    assert res["exhaust2"]["niovs"] == 8 and res["intact"], res


def test_flush_more_than_one_batch(guest):
    """200 entries (> ZCRX_FLUSH_BATCH = 32) are all consumed by one FLUSH_RQ."""
    res = guest.call(SCN + "flush_batches")
    assert res["exhaust1"]["niovs"] == 200
    assert res["head_after_flush"] == res["tail"] == 200
    assert res["exhaust2"]["niovs"] == 200 and res["intact"]
