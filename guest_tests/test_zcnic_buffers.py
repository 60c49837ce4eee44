"""Buffer lifetime on a zcnic queue bound to a zcrx: a buffer the user holds (its CQE not
yet returned through the refill ring) must keep the bytes it delivered whatever happens
to the queue; a buffer returned twice must not be handed out twice; buffers never
returned are released when the ring closes.
Runs in the guest (guest_tests/agent.py) on guest_tests/lib/nic.py's NicEnv.
"""

import pytest

from guest_tests.lib.defer import defer
from guest_tests.lib.flow import Stream, pump
from guest_tests.lib.nic import MODES, port_for
from guest_tests.lib.peer import Peer, accept, listener
from guest_tests.zcrx import PAGE_SIZE
from guest_tests.zcrx.util import give_back, pinned_pages, recv_zc, wait_pins

pytestmark = [pytest.mark.zcnic, pytest.mark.in_guest]

KiB, MiB = 1 << 10, 1 << 20


def flow_to_queue(nic, rx, size, refill=True, queue=1):
    """One TCP flow of `size` bytes, steered to `queue` by an ntuple rule and received with a
    multishot RECV_ZC; refill=False keeps every buffer (Stream.held). (Stream, sent bytes)."""
    port = port_for(size & 0xFFFF)
    lst = listener("ipv4", port)
    defer(lst.close)
    peer = Peer("ipv4", port, size, seed=port)
    defer(peer.kill)
    nic.ntuple("ipv4", port, action=queue)
    peer.start()
    conn = accept(lst, peer)
    defer(conn.close)
    st = Stream()
    pump(rx, conn.fileno(), st, rx.ring.submit_recv_zc(conn.fileno(), rx.z.id), refill=refill)
    conn.close()
    return st, peer.data


def assert_zero_copy(st, sent, rx):
    assert st.final == 0 and bytes(st.data) == sent, f"{len(st.data)} of {len(sent)} bytes, final {st.final}"
    assert rx.z.stats()["copy_count"] == 0, "not zero copy"


# what happens to the bound queue while the user holds buffers
EVENTS = {
    "more_traffic": lambda nic: (0, ""),
    "ring_resize": lambda nic: nic.rings(rx=128),  # every queue restarted, the provider kept
    "channels_grow": lambda nic: nic.channels(6),
    "link_down_up": lambda nic: (nic.setlink(up=False), nic.setlink(up=True))[-1],
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("event", list(EVENTS))
def test_held_buffers_keep_their_bytes(nic, event, mode):
    """The user holds every buffer of a 256 KiB flow; after `event` and a 1 MiB flow through
        the same queue, each held buffer still holds what its CQE delivered (a buffer recycled
        while held shows changed bytes). Returned through the refill ring, unflushed (the
    pool that takes them back may be the one the event made), the buffers carry a third
    flow zero copy;
        once the ring closes, the area is unpinned. In every buffer mode (MODES): with 2 or 4
        frames per buffer (fbnic-like) a held CQE shares its buffer with other frames; with a
        header pool the skb heads come from a second pool the event rebuilds too."""
    nic.mode(mode)
    pins = pinned_pages()
    rx = nic.rx(1, area_pages=1024, rq_entries=1024)
    first, sent = flow_to_queue(nic, rx, 256 * KiB, refill=False)
    assert_zero_copy(first, sent, rx)
    held = [(c.zc_off, rx.z.read(c.zc_off, c.res)) for c in first.held]
    assert b"".join(data for _, data in held) == sent
    err, extack = EVENTS[event](nic)
    assert err == 0, extack
    second, sent = flow_to_queue(nic, rx, MiB)
    assert_zero_copy(second, sent, rx)
    changed = [off for off, data in held if rx.z.read(off, len(data)) != data]
    assert changed == [], f"{len(changed)} of {len(held)} held buffers were overwritten"
    # not flushed: the queue's page pool takes them from the refill ring itself, and
    # after a restart that is a new pool meeting the old one's buffers
    give_back(rx.z, first.held, flush=False)
    third, sent = flow_to_queue(nic, rx, MiB)
    assert_zero_copy(third, sent, rx)
    rx.close()
    assert wait_pins(pins)[0] == pins, "pages still pinned after the ring closed"


def test_copy_fallback_buffers_returned_to_a_bound_queue(nic):
    """Buffers of a flow on an unbound queue (copy fallback: area buffers of no page pool)
    are held, then returned through the refill ring unflushed; a flow on the bound queue
    then drains its page pool, which refills from the ring itself, meets those buffers
    first and must put them back on the area's freelist rather than take them
    (zcrx_put_refill_niov: niov->desc.pp != pp). The second flow arrives intact and zero
    copy; closed, the area is unpinned, the queue unbound, the io_uring page pool gone (a
    buffer taken by the wrong owner would keep one of them)."""
    pins = pinned_pages()
    rx = nic.rx(1, area_pages=1024, rq_entries=1024)
    copied, sent = flow_to_queue(nic, rx, 256 * KiB, refill=False, queue=2)
    assert copied.final == 0 and bytes(copied.data) == sent
    copies = rx.z.stats()["copy_count"]
    assert copies > 0, "queue 2 is not bound: its flow must have been copied"
    give_back(rx.z, copied.held, flush=False)
    # held, not returned: the pool's first 256 buffers run out, and it refills from the ring
    second, sent = flow_to_queue(nic, rx, 2 * MiB, refill=False)
    assert second.final == 0 and bytes(second.data) == sent, f"{len(second.data)} of {len(sent)} bytes"
    assert rx.z.stats()["copy_count"] == copies, "the bound queue's flow was copied"
    give_back(rx.z, second.held)
    rx.close()
    assert nic.wait_unbound() == []
    assert wait_pins(pins)[0] == pins, "pages still pinned after the ring closed"
    assert nic.wait_no_pools() == 0, "the io_uring page pool outlived the ring"


@pytest.mark.parametrize("mode", list(MODES))
def test_double_return_is_ignored(nic, mode):
    """Every buffer of a flow is returned twice through the refill ring. The second return
    of each finds no user reference and must be dropped: a buffer handed to the NIC twice
    would take two frames, and the next flow would arrive corrupted. Closed, the ring's
    area is unpinned (a buffer counted twice would keep it pinned, or unpin it early).
    With 2 or 4 frames per buffer a buffer has several user references at once."""
    nic.mode(mode)
    pins = pinned_pages()
    rx = nic.rx(1, area_pages=512, rq_entries=1024)
    first, sent = flow_to_queue(nic, rx, 512 * KiB, refill=False)
    assert_zero_copy(first, sent, rx)
    give_back(rx.z, first.held)
    give_back(rx.z, first.held)
    for _ in range(2):  # more than the area holds: every buffer is reused
        again, sent = flow_to_queue(nic, rx, 2 * MiB)
        assert_zero_copy(again, sent, rx)
    rx.close()
    assert wait_pins(pins)[0] == pins, "pages still pinned after the ring closed"


@pytest.mark.parametrize("mode", list(MODES))
def test_never_returned_buffers_released_at_close(nic, mode):
    """The ring closes while the user still holds every buffer of a flow (in the frags
    modes, buffers whose frames are held by several CQEs): the area is unpinned, the queue
    unbound and its io_uring page pool gone."""
    nic.mode(mode)
    pins = pinned_pages()
    rx = nic.rx(1, area_pages=1024, rq_entries=1024)
    first, sent = flow_to_queue(nic, rx, 512 * KiB, refill=False)
    assert_zero_copy(first, sent, rx)
    assert first.held and pinned_pages() - pins >= 1024
    rx.close()
    assert nic.wait_unbound() == []
    assert wait_pins(pins)[0] == pins, "pages still pinned after the ring closed"
    assert nic.wait_no_pools() == 0, "the io_uring page pool outlived the ring"


@pytest.mark.parametrize("frags", [2, 4])
def test_fragmented_buffers_zero_copy(nic, frags):
    """zcnic posts each 4 KiB buffer as `frags` fragments (page_pool_fragment_netmem, as
    fbnic): frames land at non-zero offsets of shared niovs, so CQEs point inside buffers
    and one niov carries several user references; the flow still arrives whole, zero
    copy, and every buffer goes back (the area is unpinned once the ring closes)."""
    nic.mode(f"frags{frags}")
    pins = pinned_pages()
    port = port_for(frags)
    lst = listener("ipv4", port)
    defer(lst.close)
    peer = Peer("ipv4", port, 2 * MiB, seed=port)
    defer(peer.kill)
    nic.ntuple("ipv4", port, action=1)
    rx = nic.rx(1, area_pages=1024, rq_entries=1024)
    peer.start()
    conn = accept(lst, peer)
    defer(conn.close)
    res = recv_zc(rx.ring, rx.z, conn.fileno(), flush=False, timeout=120)
    assert res.final is not None and res.final.res == 0, res.final
    assert bytes(res.data) == peer.data, f"{len(res.data)} of {2 * MiB} bytes, or not in order"
    assert rx.z.stats()["copy_count"] == 0, "not zero copy"
    inside = {c.zc_off % PAGE_SIZE for c in res.cqes} - {0}
    assert inside, "no CQE points inside a buffer: the buffers were not fragmented"
    assert max(c.res for c in res.cqes) <= PAGE_SIZE // frags
    rx.close()
    assert wait_pins(pins)[0] == pins, "pages still pinned after the ring closed"
