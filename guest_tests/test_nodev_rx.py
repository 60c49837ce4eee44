"""Completion ring of RECV_ZC on a NODEV ifq over loopback TCP (copy fallback):
payload integrity, CQE fields, length limits, endings, several sockets, CQ overflow,
area exhaustion, copy statistics and events.
"""

import errno

import pytest

pytestmark = pytest.mark.nodev

PAGE = 4096
MORE = 1 << 1  # IORING_CQE_F_MORE
F32 = 1 << 15  # IORING_CQE_F_32
SCN = "scenarios.nodev:"


def run(guest, func, **kw):
    """One guest call per (function, kwargs) per session, shared by the tests that judge it."""
    return guest.cached(SCN + func, **kw)


STREAMS = {
    "ipv4_1M": {"size": 1 << 20},
    "ipv6_1M": {"size": 1 << 20, "family": "ipv6"},
    "cqe_mixed": {"size": 300_000, "ring": "mixed"},
    "small_chunks": {"size": 200_000, "chunk": 1000},
    "small_rcvbuf": {"size": 1 << 20, "rcvbuf": 8192},
    # 32-byte CQEs in a 16-slot CQ: wraps with filler (F_SKIP) CQEs and -ENOSPC re-arms
    "cqe_mixed_small_cq": {"size": 300_000, "ring": "mixed", "cq_entries": 16},
}


@pytest.mark.parametrize("stream", list(STREAMS))
def test_payload_integrity(guest, stream):
    res = run(guest, "recv_stream", **STREAMS[stream])
    assert res["bytes"] == res["sent"] and res["full_match"], res
    assert res["res_sum"] == res["sent"]
    assert res["final"]["res"] == 0 and not res["final"]["flags"] & MORE
    assert set(res["rearms"]) <= {-errno.ENOMEM, -errno.ENOSPC}, res["rearms"]


@pytest.mark.parametrize("stream", ["ipv4_1M", "cqe_mixed"])
def test_cqe_offsets_inside_area(guest, stream):
    """Each zcrx CQE: area id 0 in the top bits, off+len within the area; the copy fallback
    writes every chunk at the start of its own buffer (page), never across a page."""
    res = run(guest, "recv_stream", **STREAMS[stream])
    assert res["area_ids"] == [0]
    assert res["outside_area"] == 0
    assert res["off_page_misaligned"] == 0 and res["cross_page"] == 0
    assert 0 < res["res_min"] <= res["res_max"] <= PAGE
    assert res["pad_nonzero"] == 0  # io_uring_zcrx_cqe.__pad


def test_data_cqe_flags_cqe32(guest):
    res = run(guest, "recv_stream", **STREAMS["ipv4_1M"])
    assert res["flags"] == [MORE]
    assert res["final_big"] == "00" * 16, "final CQE's second half must be zero"


def test_data_cqe_flags_cqe_mixed(guest):
    """CQE_MIXED: data CQEs are 32-byte (F_32), the final CQE is a plain 16-byte one."""
    res = run(guest, "recv_stream", **STREAMS["cqe_mixed"])
    assert res["flags"] == [MORE | F32] and res["cqe_f32"] == res["n_cqes"]
    assert res["final_f32"] is False and res["full_match"]


def test_refill_ring_fully_consumed(guest):
    res = run(guest, "recv_stream", **STREAMS["ipv4_1M"])
    assert res["rq_head"] == res["rq_tail"] == res["n_cqes"]


def test_pins_released_after_ring_close(guest):
    res = run(guest, "recv_stream", **STREAMS["ipv4_1M"])
    assert res["pins_registered"] == res["expected_pins"]
    assert res["pins_after_close"] == 0


def test_length_limited_recv(guest):
    """sqe.len caps one RECV_ZC: exactly len bytes, then res 0 without F_MORE; the rest
    stays in the socket for a normal recv()."""
    res = run(guest, "recv_stream", size=300_000, length=10_000)
    assert res["bytes"] == 10_000 and res["match"], res
    assert res["final"]["res"] == 0 and res["final"]["flags"] == 0
    assert res["rest_bytes"] == 290_000 and res["rest_match"]


def test_oneshot_sequence(guest):
    """Repeated length-limited requests (upstream --oneshot style) deliver the stream in order."""
    res = run(guest, "oneshot_sequence")
    assert res["per_request_bytes"] == [PAGE] * 8
    assert all(f["res"] == 0 and f["flags"] == 0 for f in res["finals"])
    assert res["match"]
    assert res["after_eof_final"]["res"] == 0 and res["after_eof_bytes"] == 0


PREP_RES = {
    "no_multishot": -errno.EINVAL,  # RECV_ZC requires IORING_RECV_MULTISHOT
    "bad_zcrx_id": -errno.EINVAL,
    "addr_set": -errno.EINVAL,
    "off_set": -errno.EINVAL,
    "addr3_set": -errno.EINVAL,
    "msg_flags_set": -errno.EINVAL,
    "ioprio_unknown": -errno.EINVAL,
    "udp_socket": -errno.EPROTONOSUPPORT,
    "unix_stream": -errno.EPROTONOSUPPORT,
    "pipe": -errno.ENOTSOCK,
    "listening_tcp": -errno.ENOTCONN,
    "bad_fd": -errno.EBADF,
}


@pytest.mark.parametrize("case", list(PREP_RES))
def test_recv_zc_rejected(guest, case):
    got = run(guest, "recv_prep_errors")[case]
    assert got["res"] == PREP_RES[case], got
    assert not got["flags"] & MORE


@pytest.mark.parametrize(
    "kind,final_res",
    [("eof", 0), ("eof_no_data", 0), ("shutdown_rd", 0), ("reset", -errno.ECONNRESET)],
)
def test_multishot_ending(guest, kind, final_res):
    res = run(guest, "recv_end", kind=kind)
    assert res["bytes"] == res["expected_bytes"], res
    assert res["final"]["res"] == final_res and res["final"]["flags"] == 0, res["final"]


def test_several_sockets_one_ifq(guest):
    res = run(guest, "many_sockets")
    assert res["match"] == [True] * 4, res
    assert all(f and f["res"] == 0 for f in res["finals"])
    assert res["stats"]["copy_bytes"] == sum(res["bytes"])


def test_cq_overflow(guest):
    """zcrx data CQEs never go to the overflow list: a full CQ ends the request with
    -ENOSPC (that CQE overflows), no data is lost, re-arming continues the stream."""
    res = run(guest, "cq_overflow")
    assert res["cq_ready_before_reap"] == res["cq_entries"] == res["n_data_cqes_first"]
    assert res["sq_flag_cq_overflow"]
    assert res["first_final"] and res["first_final"]["res"] == -errno.ENOSPC
    assert res["match"] and res["bytes"] == 256 * 1024, res
    assert res["rest_final"]["res"] == 0


def test_area_exhaustion_then_refill(guest):
    """A 4-buffer area with no refill: 4 CQEs, then -ENOMEM ends the multishot; after
    refill + FLUSH_RQ the stream continues intact."""
    res = run(guest, "area_exhaustion")
    first = res["first"]
    assert first["n_cqes"] == first["distinct_offsets"] == 4, first
    assert first["final"]["res"] == -errno.ENOMEM
    assert res["match"] and res["bytes"] == 64 * 1024
    assert res["second_final"]["res"] == 0


def test_multiple_areas_receive(guest):
    """ADD_AREA areas get ids 1, 2; when area 0 is used up data lands in the next ones."""
    res = run(guest, "multi_area_recv")
    assert res["tokens"] == [0, 1 << 48, 2 << 48]
    assert res["area_ids"] == [0, 1, 2] and res["outside_area"] == 0, res
    assert res["cqes_per_area"]["0"] == 4  # area 0 has 4 buffers
    assert res["match"]


def test_stats_copy_bytes(guest):
    """NODEV copies everything: zcrx_stats.copy_bytes equals the bytes delivered."""
    res = run(guest, "recv_stream", **STREAMS["ipv4_1M"])
    assert res["stats"]["copy_bytes"] == res["bytes"]
    assert 0 < res["stats"]["copy_count"] <= res["n_cqes"]


@pytest.mark.xfail(
    strict=True,
    reason="uapi zcrx.h documents copy_count as 'cumulative copy-fallback CQEs', but "
    "io_zcrx_copy_frag() adds 1 per skb frag, while a frag is split into one CQE per "
    "page (Linux 7.3.4)",
)
def test_stats_copy_count_counts_cqes(guest):
    res = run(guest, "recv_stream", **STREAMS["ipv4_1M"])
    assert res["stats"]["copy_count"] == res["n_cqes"], res["stats"]


def test_copy_event_fires_once_until_rearmed(guest):
    res = run(guest, "stats_events")
    ev = {"user_data": 0xC0FFEE, "res": 1, "flags": 0}  # res = ZCRX_EVENT_COPY
    strip = [{k: e[k] for k in ev} for e in res["events_1"]]
    assert strip == [ev], res["events_1"]
    assert res["arm_copy_errno"] == 0
    assert res["arm_copy_again_errno"] == errno.EINVAL  # not fired since
    assert res["arm_alloc_fail_errno"] == errno.EINVAL  # never fires without a page pool
    assert [{k: e[k] for k in ev} for e in res["events_2"]] == [ev]
    assert res["match"]


def test_stats_accumulate(guest):
    res = run(guest, "stats_events")
    assert res["stats_initial"] == {"copy_count": 0, "copy_bytes": 0}
    assert res["stats_1"]["copy_bytes"] == res["bytes_1"]
    assert res["stats_2"]["copy_bytes"] == res["bytes_1"] + res["bytes_2"]
    assert res["stats_2"]["copy_count"] > res["stats_1"]["copy_count"] > 0
