"""Devmem TCP on zcnic: a udmabuf bound to an RX queue with netdev bind-rx, a flow steered
there arrives as SCM_DEVMEM_DMABUF frags that zcnic's emulated DMA wrote into the dma-buf
(read back through the memfd's mapping), tokens go back with SO_DEVMEM_DONTNEED, and
closing the netlink socket unbinds. Transmit: a udmabuf bound with bind-tx, sendmsg
(MSG_ZEROCOPY) of offsets into it, which zcnic's emulated DMA reads out. Error paths with
the kernel's errnos. Both sides follow upstream's ncdevmem (drivers/net/hw/devmem.py), in
Python.
Runs in the guest (guest_tests/agent.py) on guest_tests/lib/nic.py's NicEnv.
"""

import errno
import os
import socket
import struct

import pytest

from guest_tests.lib.defer import defer
from guest_tests.lib.devmem import (
    MAX_DONTNEED_TOKENS,
    MSG_SOCK_DEVMEM,
    dontneed,
    ranges,
    recv_devmem,
    send_devmem,
    zerocopy_completions,
)
from guest_tests.lib.flow import tcp_flow
from guest_tests.lib.nic import ADDR, FAMILY, MODES, frame_share, port_for
from guest_tests.lib.peer import Sink, accept
from guest_tests.zcrx import PAGE_SIZE
from guest_tests.zcrx.dmabuf import Udmabuf
from guest_tests.zcrx.util import pattern, pinned_pages, sha256, wait_pins

pytestmark = [pytest.mark.zcnic, pytest.mark.in_guest]

MiB = 1 << 20
AREA = 1024 * PAGE_SIZE
BOUND_EXISTS = "designated queue already memory provider bound"  # netif_mp_open_rxq()'s extack
SO_ZEROCOPY = 60
NO_NETMEM_TX = "Driver does not support netmem TX"  # netdev_nl_bind_tx_doit()'s extack


def udmabuf(size=AREA) -> Udmabuf:
    """A udmabuf over a memfd, closed after the test; a skip if the kernel has none."""
    if not os.path.exists("/dev/udmabuf"):
        pytest.skip(f"kernel {os.uname().release} has no /dev/udmabuf (CONFIG_UDMABUF)")
    area = Udmabuf(size)
    defer(area.close)
    return area


def chunks(rs):
    """Token ranges cut into SO_DEVMEM_DONTNEED calls of at most MAX_DONTNEED_TOKENS."""
    return [rs[i : i + MAX_DONTNEED_TOKENS] for i in range(0, len(rs), MAX_DONTNEED_TOKENS)]


def connect(lst, peer):
    """Start the peer and accept its connection, closed after the test."""
    peer.start()
    conn = accept(lst, peer)
    defer(conn.close)
    return conn


RX_CASES = [("ipv4", m) for m in MODES] + [("ipv6", "whole")]


@pytest.mark.parametrize("family,mode", RX_CASES)
def test_devmem_rx_zero_copy(nic, family, mode):
    """bind-rx of a udmabuf to queue 1, a 2 MiB flow steered there: queue-get and
    page-pool-get name the binding's dmabuf id on queue 1 (and its NAPI); recvmsg
    (MSG_SOCK_DEVMEM) returns every payload byte as an SCM_DEVMEM_DMABUF frag of that id
    (header split: no SCM_DEVMEM_LINEAR), none longer than a frame's share of a buffer in
    the mode; the frags read from the memfd at frag_offset are the stream. Every
    SO_DEVMEM_DONTNEED frees as many frags as tokens it gave, and given again they free
    none. Closing the netlink socket unbinds: no queue or pool on the dma-buf any more,
    and once the udmabuf is closed its pages are unpinned (the binding let go of it)."""
    nic.mode(mode)
    pins0 = pinned_pages()
    area = udmabuf()
    port, lst, peer = tcp_flow(family, 2 * MiB)
    nic.ntuple(family, port, action=1)
    binding = nic.bind_rx(area.fd, [1])
    assert binding.err == 0, (errno.errorcode.get(binding.err), binding.extack)
    queues, pools, napi = nic.dmabuf_queues(), nic.dmabuf_pools(), nic.queues()[1]["napi-id"]
    pins_bound = pinned_pages() - pins0
    conn = connect(lst, peer)
    st = recv_devmem(conn, area.read, 2 * MiB)
    again = [dontneed(conn, r) for r in chunks(ranges(f.token for f in st.dmabuf_frags()))]
    conn.close()
    binding.close()
    left = nic.wait_no_dmabuf()
    area.close()
    assert queues == {1: binding.id}, queues
    assert [(p["dmabuf"], p["napi-id"]) for p in pools] == [(binding.id, napi)], pools
    assert st.error == 0 and not st.short and not st.ctrunc and not st.odd_cmsgs, st.error
    assert bytes(st.data) == peer.data, f"{len(st.data)} of {len(peer.data)} bytes, or they differ"
    assert st.linear_frags() == [], "payload copied (SCM_DEVMEM_LINEAR) on a split queue"
    frags = st.dmabuf_frags()
    assert {f.dmabuf_id for f in frags} == {binding.id} and {f.flags for f in frags} == {0}
    longest = max(f.size for f in frags)
    assert 0 < longest <= frame_share(mode), f"a {longest}-byte frag in {mode} mode"
    assert all(f.offset + f.size <= AREA for f in frags)
    assert st.freed and all(given == freed for given, freed in st.freed), st.freed
    assert sum(n for n, _ in st.freed) == len(frags)
    assert set(again) == {0}, "tokens freed twice"
    assert left == ({}, []), f"still on the dma-buf after the unbind: {left}"
    assert pins_bound >= AREA // PAGE_SIZE, "udmabuf pins its memfd's pages"
    assert wait_pins(pins0)[0] == pins0, "the udmabuf's pages are still pinned"


def test_devmem_tokens_held_until_dontneed(nic):
    """Tokens kept by the receiver hold their buffers: with every token held, the 64-page
    udmabuf runs out and the flow stalls (5 s without data, at most 256 KiB of 1 MiB);
    SO_DEVMEM_DONTNEED of the held tokens (returns their count) lets the rest of the
    stream arrive intact (TCP retransmits what the NIC dropped meanwhile)."""
    area = udmabuf(64 * PAGE_SIZE)
    port, lst, peer = tcp_flow("ipv4", MiB)
    nic.ntuple("ipv4", port, action=1)
    binding = nic.bind_rx(area.fd, [1])
    assert binding.err == 0, binding.extack
    conn = connect(lst, peer)
    held = recv_devmem(conn, area.read, MiB, keep=True, idle=5)
    frags = held.dmabuf_frags()
    freed = [dontneed(conn, r) for r in chunks(ranges(f.token for f in frags))]
    rest = recv_devmem(conn, area.read, MiB - len(held.data), timeout=120)
    assert held.idle and held.error == 0, "the flow did not stall with every token held"
    assert 0 < len(held.data) <= 64 * PAGE_SIZE
    assert sum(freed) == len(frags), (sum(freed), len(frags))
    assert rest.error == 0 and bytes(held.data + rest.data) == peer.data


def test_plain_recv_of_devmem_flow_fails(nic):
    """A flow on a devmem-bound queue: recv() without MSG_SOCK_DEVMEM fails with EFAULT
    and takes nothing (tcp_recvmsg_locked: dmabuf skbs only with the flag); then recvmsg
    (MSG_SOCK_DEVMEM) takes the whole stream from the start."""
    area = udmabuf()
    port, lst, peer = tcp_flow("ipv4", 256 << 10)
    nic.ntuple("ipv4", port, action=1)
    binding = nic.bind_rx(area.fd, [1])
    assert binding.err == 0, binding.extack
    conn = connect(lst, peer)
    conn.settimeout(30)
    try:
        plain = len(conn.recv(4096))
    except OSError as e:
        plain = e.errno
    st = recv_devmem(conn, area.read, len(peer.data))
    assert plain == errno.EFAULT, f"recv() got {plain} (bytes or errno)"
    assert st.error == 0 and bytes(st.data) == peer.data and st.linear_frags() == []


def test_devmem_recvmsg_on_unbound_queue_copies(nic):
    """Queue 1 bound, the flow steered to queue 2: its skbs are readable, so recvmsg
    (MSG_SOCK_DEVMEM) copies them like recvmsg() does, without a devmem cmsg (no error:
    the flag asks for cmsgs only where the frags are dma-buf net_iovs)."""
    area = udmabuf()
    port, lst, peer = tcp_flow("ipv4", 256 << 10)
    nic.ntuple("ipv4", port, action=2)
    binding = nic.bind_rx(area.fd, [1])
    assert binding.err == 0, binding.extack
    conn = connect(lst, peer)
    conn.settimeout(60)
    got, cmsgs = bytearray(), []
    while len(got) < len(peer.data):
        msg, anc, _, _ = conn.recvmsg(1 << 16, 1 << 16, MSG_SOCK_DEVMEM)
        if not msg:
            break
        got += msg
        cmsgs += anc
    assert bytes(got) == peer.data and cmsgs == [], f"{len(got)} bytes, cmsgs {cmsgs[:3]}"
    assert nic.dmabuf_queues() == {1: binding.id}


def test_bind_rx_on_zcrx_queue(nic):
    """bind-rx to a queue io_uring zcrx holds fails EEXIST (netif_mp_open_rxq: one memory
    provider per queue) and leaves the zcrx on it; another queue binds."""
    area = udmabuf()
    nic.rx(1, area_pages=64, rq_entries=64)
    busy = nic.bind_rx(area.fd, [1])
    other = nic.bind_rx(area.fd, [2])
    assert (busy.err, busy.extack.get("msg")) == (errno.EEXIST, BOUND_EXISTS), busy.extack
    assert nic.bound_queues() == [1]
    assert other.err == 0 and nic.dmabuf_queues() == {2: other.id}


def test_zcrx_on_devmem_queue(nic):
    """io_uring zcrx on a queue a devmem binding holds fails EEXIST; the binding stays."""
    area = udmabuf()
    binding = nic.bind_rx(area.fd, [1])
    assert binding.err == 0, binding.extack
    err = nic.register_errno(1)
    assert err == errno.EEXIST, errno.errorcode.get(err)
    assert nic.dmabuf_queues() == {1: binding.id} and nic.bound_queues() == []


def test_bind_rx_twice_same_queue(nic):
    """A second binding of the same dma-buf to a bound queue fails EEXIST."""
    area = udmabuf()
    first = nic.bind_rx(area.fd, [1])
    second = nic.bind_rx(area.fd, [1])
    assert first.err == 0
    assert (second.err, second.extack.get("msg")) == (errno.EEXIST, BOUND_EXISTS), second.extack
    assert nic.dmabuf_queues() == {1: first.id}


def test_bind_rx_not_a_dmabuf(nic):
    """bind-rx of a memfd (not a dma-buf) fails EINVAL, of an fd number no file has EBADF
    (dma_buf_get); nothing is bound."""
    area = udmabuf()
    memfd = nic.bind_rx(area.memfd, [1])
    unused = os.sysconf("SC_OPEN_MAX") + 1  # above RLIMIT_NOFILE: never an open fd
    closed = nic.bind_rx(unused, [1])
    assert memfd.err == errno.EINVAL, errno.errorcode.get(memfd.err)
    assert closed.err == errno.EBADF, errno.errorcode.get(closed.err)
    assert nic.dmabuf_queues() == {}


def test_bind_rx_queue_out_of_range(nic):
    """bind-rx to RX queue 4 of a 4-queue zc0 fails EINVAL, the extack pointing at the
    queue id (netdev_nl_read_rxq_bitmap); nothing is bound."""
    area = udmabuf()
    assert nic.channels_get()["combined-count"] == 4
    res = nic.bind_rx(area.fd, [4])
    assert res.err == errno.EINVAL, errno.errorcode.get(res.err)
    assert res.extack.get("bad-attr") == ".queues.id", res.extack
    assert nic.dmabuf_queues() == {}


def test_bind_rx_without_header_split(nic):
    """bind-rx with tcp-data-split off fails EINVAL with the extack saying so."""
    area = udmabuf()
    err, extack = nic.rings(split="off")
    assert err == 0, extack
    res = nic.bind_rx(area.fd, [1])
    assert (res.err, res.extack.get("msg")) == (errno.EINVAL, "tcp-data-split is disabled"), res.extack
    assert nic.dmabuf_queues() == {}


def test_dontneed_bogus_tokens(nic):
    """SO_DEVMEM_DONTNEED on a TCP socket that holds no frags frees nothing (returns 0) for
    tokens it never gave; a length that is not whole struct dmabuf_tokens, or more than
    MAX_DONTNEED_TOKENS of them, is EINVAL; on a UDP socket EBADF."""
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    defer(tcp.close)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    defer(udp.close)
    assert dontneed(tcp, [(0, 1), (7, 100), (1 << 30, 1)]) == 0
    assert errno_of_dontneed(tcp, raw=b"\0" * 12) == errno.EINVAL
    assert errno_of_dontneed(tcp, [(i, 1) for i in range(MAX_DONTNEED_TOKENS + 1)]) == errno.EINVAL
    assert errno_of_dontneed(udp, [(0, 1)]) == errno.EBADF


def errno_of_dontneed(sock, tokens=(), raw=None):
    try:
        dontneed(sock, tokens, raw=raw)
        return 0
    except OSError as e:
        return e.errno


def tx_socket(family, port, zerocopy=True):
    """A TCP socket connected to a Sink in netns `remote` on `port` (over zc0), with
    SO_ZEROCOPY set unless not `zerocopy`; (socket, sink), both gone after the test."""
    sink = Sink(family, port)
    defer(sink.kill)
    sock = socket.socket(FAMILY[family], socket.SOCK_STREAM)
    defer(sock.close)
    if zerocopy:
        sock.setsockopt(socket.SOL_SOCKET, SO_ZEROCOPY, 1)
    sock.settimeout(60)
    sock.connect((ADDR[family][1], port))
    sock.settimeout(None)  # blocking again: send_devmem() calls sendmsg() itself
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("=qq", 60, 0))
    return sock, sink


def tx_calls(start, size, call=48 << 10, iovs=3):
    """sendmsg() calls covering dma-buf bytes [start, start + size): `iovs` spans of
    unequal length per call, so iovs and frags start at odd offsets and cross pages."""
    calls, off, end = [], start, start + size
    while off < end:
        spans, left = [], min(call, end - off)
        for i in range(iovs):
            n = left if i == iovs - 1 else min(left, (left // iovs) + 1000 * i + 7)
            if n:
                spans.append((off, n))
                off, left = off + n, left - n
        calls.append(spans)
    return calls


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_devmem_tx_zero_copy(nic, family):
    """bind-tx of a 4 MiB udmabuf to zc0 (an id back), 2 MiB of pattern bytes written at
    offset 123 of its memfd and sent with sendmsg(MSG_ZEROCOPY, SCM_DEVMEM_DMABUF) in
    calls of three iovs that name offsets into the dma-buf: each call sends all it was
    given; the receiver in netns remote gets exactly those 2 MiB (zcnic's emulated DMA
    read them out of the net_iovs at their DMA addresses; the kernel has no CPU mapping
    of them). The error queue completes every call, as zero-copy (no
    SO_EE_CODE_ZEROCOPY_COPIED). Once the binding's socket and the udmabuf are closed,
    its pages are unpinned."""
    pins0 = pinned_pages()
    area = udmabuf()
    data = pattern(2 * MiB, seed=7)
    area.write(123, data)
    binding = nic.bind_tx(area.fd)
    assert binding.err == 0, (errno.errorcode.get(binding.err), binding.extack)
    sock, sink = tx_socket(family, port_for(7))
    calls = tx_calls(123, len(data))
    sent = [send_devmem(sock, binding.id, spans) for spans in calls]
    sock.shutdown(socket.SHUT_WR)
    done = zerocopy_completions(sock, len(calls))
    got = sink.result()
    sock.close()
    binding.close()
    area.close()
    assert sent == [sum(n for _, n in spans) for spans in calls]
    assert got == {"received": len(data), "sha256": sha256(data), "errno": 0}, got
    assert sorted(first for first, _, _ in done) == [first for first, _, _ in done], done
    covered = [i for first, last, _ in done for i in range(first, last + 1)]
    assert covered == list(range(len(calls))), f"completions {done} for {len(calls)} calls"
    assert not any(copied for _, _, copied in done), f"the kernel copied: {done}"
    assert wait_pins(pins0)[0] == pins0, "the udmabuf's pages are still pinned"


def test_devmem_tx_refusals(nic):
    """sendmsg() of dma-buf bytes that the kernel must refuse, each before a byte goes out:
    without MSG_ZEROCOPY, and without SO_ZEROCOPY on the socket, EINVAL (tcp_sendmsg_locked:
    a dmabuf cmsg needs zero-copy); an RX binding's id, EINVAL (no TX vector); a span past
    the dma-buf's end, EFAULT (net_devmem_get_niov_at); the TX binding on a socket routed
    over lo, ENODEV (its DMA addresses are zc0's). The receiver got nothing, and a send
    that follows on the same socket arrives whole."""
    area = udmabuf()
    area.write(0, pattern(PAGE_SIZE, seed=3))
    tx = nic.bind_tx(area.fd)
    rx = nic.bind_rx(udmabuf().fd, [1])
    assert tx.err == 0 and rx.err == 0, (tx.extack, rx.extack)
    sock, sink = tx_socket("ipv4", port_for(3))
    plain, _ = tx_socket("ipv4", port_for(4), zerocopy=False)
    local = socket.create_server(("127.0.0.1", 0))
    defer(local.close)
    over_lo = socket.create_connection(local.getsockname())
    defer(over_lo.close)
    over_lo.setsockopt(socket.SOL_SOCKET, SO_ZEROCOPY, 1)
    refused = {
        "no MSG_ZEROCOPY": errno_of_send(sock, tx.id, [(0, 100)], flags=0),
        "no SO_ZEROCOPY": errno_of_send(plain, tx.id, [(0, 100)]),
        "RX binding": errno_of_send(sock, rx.id, [(0, 100)]),
        "past the end": errno_of_send(sock, tx.id, [(AREA, 100)]),
        "over lo": errno_of_send(over_lo, tx.id, [(0, 100)]),
    }
    sent = send_devmem(sock, tx.id, [(0, PAGE_SIZE)])
    sock.shutdown(socket.SHUT_WR)
    got = sink.result()
    assert refused == {
        "no MSG_ZEROCOPY": errno.EINVAL,
        "no SO_ZEROCOPY": errno.EINVAL,
        "RX binding": errno.EINVAL,
        "past the end": errno.EFAULT,
        "over lo": errno.ENODEV,
    }, {k: errno.errorcode.get(v, v) for k, v in refused.items()}
    assert sent == PAGE_SIZE
    assert got == {"received": PAGE_SIZE, "sha256": sha256(area.read(0, PAGE_SIZE)), "errno": 0}, got


def test_bind_tx_needs_netmem_tx(nic):
    """bind-tx to lo, which cannot transmit net_iovs (netmem_tx none), fails EOPNOTSUPP with
    the extack saying so; bind-tx of a memfd to zc0 fails EINVAL (not a dma-buf)."""
    area = udmabuf()
    lo = nic.bind_tx(area.fd, ifindex=socket.if_nametoindex("lo"))
    memfd = nic.bind_tx(area.memfd)
    assert (lo.err, lo.extack.get("msg")) == (errno.EOPNOTSUPP, NO_NETMEM_TX), lo.extack
    assert memfd.err == errno.EINVAL, errno.errorcode.get(memfd.err)


def test_devmem_tx_id_gone_after_unbind(nic):
    """A bind-tx binding ends when its netlink socket closes (freed later, once the sent
    frags are back): with the udmabuf closed too, its pages are unpinned once the binding
    let go of the dma-buf, and sendmsg() with the binding's id then fails EINVAL (no
    binding of that id), on the socket that sent 1000 bytes with it before."""
    pins0 = pinned_pages()
    area = udmabuf()
    tx = nic.bind_tx(area.fd)
    assert tx.err == 0, tx.extack
    sock, sink = tx_socket("ipv4", port_for(5))
    before = send_devmem(sock, tx.id, [(0, 1000)])
    done = zerocopy_completions(sock, 1)
    tx.close()
    area.close()
    pins, _ = wait_pins(pins0)
    after = errno_of_send(sock, tx.id, [(0, 1000)])
    sock.shutdown(socket.SHUT_WR)
    got = sink.result()
    assert (before, done) == (1000, [(0, 0, False)]), done
    assert pins == pins0, "the udmabuf's pages are still pinned after the unbind"
    assert after == errno.EINVAL, errno.errorcode.get(after, after)
    assert got["received"] == 1000 and got["errno"] == 0, got


def errno_of_send(sock, dmabuf_id, spans, **kw):
    try:
        send_devmem(sock, dmabuf_id, spans, **kw)
        return 0
    except OSError as e:
        return e.errno
