"""Devmem TCP on zcnic: a udmabuf bound to an RX queue with netdev bind-rx, a flow steered
there arrives as SCM_DEVMEM_DMABUF frags that zcnic's emulated DMA wrote into the dma-buf
(read back through the memfd's mapping), tokens go back with SO_DEVMEM_DONTNEED, and
closing the netlink socket unbinds. Error paths with the kernel's errnos.
The receive side follows upstream's ncdevmem (drivers/net/hw/devmem.py), in Python.
Runs in the guest (guest_tests/agent.py) on guest_tests/lib/nic.py's NicEnv.
"""

import errno
import os
import socket

import pytest

from guest_tests.lib.defer import defer
from guest_tests.lib.devmem import (
    MAX_DONTNEED_TOKENS,
    MSG_SOCK_DEVMEM,
    dontneed,
    ranges,
    recv_devmem,
)
from guest_tests.lib.flow import tcp_flow
from guest_tests.lib.nic import MODES, frame_share
from guest_tests.lib.peer import accept
from guest_tests.zcrx import PAGE_SIZE
from guest_tests.zcrx.dmabuf import Udmabuf
from guest_tests.zcrx.util import pinned_pages, wait_pins

pytestmark = [pytest.mark.zcnic, pytest.mark.in_guest]

MiB = 1 << 20
AREA = 1024 * PAGE_SIZE
BOUND_EXISTS = "designated queue already memory provider bound"  # netif_mp_open_rxq()'s extack


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
