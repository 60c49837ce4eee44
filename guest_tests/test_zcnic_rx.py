"""Zero-copy receive on zcnic: a TCP flow steered to a zcrx-bound queue arrives without a
copy (struct zcrx_stats copy_count == 0) and intact; the same flow on an unbound queue
goes through the copy fallback; the refill ring running dry drops frames (no_buf_drops)
and raises ZCRX_EVENT_ALLOC_FAIL, and TCP recovers once the buffers come back.
Runs in the guest (guest_tests/agent.py) on guest_tests/lib/nic.py's NicEnv.
"""

import ctypes
import errno
import json
import os
import time
from types import SimpleNamespace

import pytest

from guest_tests.lib import sysctl
from guest_tests.lib.defer import defer
from guest_tests.lib.flow import (
    HW_DROPS,
    Stream,
    layout_problem,
    pump,
    receive_flow,
    summary,
    tcp_flow,
    zc_transfer,
)
from guest_tests.lib.nic import MODES, NETNS, PEER, frame_share, sh
from guest_tests.lib.peer import accept
from guest_tests.zcrx import PAGE_SIZE, Mem, ZcrxArgs
from guest_tests.zcrx import uapi as U
from guest_tests.zcrx.dmabuf import Udmabuf
from guest_tests.zcrx.util import errno_of, give_back, pinned_pages, recv_zc, wait_pins

pytestmark = [pytest.mark.zcnic, pytest.mark.in_guest]

MiB = 1 << 20
ALLOC_FAIL = U.ZCRX_EVENT_ALLOC_FAIL  # also the event CQE's res


def flow_queue_packets(res, queue):
    """TCP segments with payload (header-split) that a queue received during the transfer;
    ARP/ND and bare ACKs are not split."""
    return res["qdelta"][str(queue)]["hds_packets"]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_zero_copy_on_bound_queue(nic, family, mode):
    """ntuple rule to the bound queue: every byte arrives as a zcrx CQE into the area, none
    copied, in each of zcnic's buffer modes (MODES); the CQEs fit the mode's layout (no
    CQE longer than a frame's share of a buffer, CQEs inside shared buffers)."""
    nic.mode(mode)
    res = zc_transfer(nic, family, bind=1, steer=1, size=2 * MiB)
    assert res["final"] == 0 and res["bytes"] == 2 * MiB, res
    assert res["match"], f"payload differs: sha {res['sha_got']} != {res['sha_sent']}"
    assert res["stats"] == {"copy_count": 0, "copy_bytes": 0}, "data was copied, not zero copy"
    assert layout_problem(mode, res) is None, layout_problem(mode, res)
    q1 = res["qdelta"]["1"]
    assert q1["unreadable"] == 1 and q1["hds_packets"] > 0 and q1["bytes"] >= 2 * MiB, q1
    assert all(flow_queue_packets(res, q) == 0 for q in (0, 2, 3)), res["qdelta"]
    assert res["peer"] == {"sent": 2 * MiB, "errno": 0, "secs": res["peer"]["secs"]}
    assert res["bound_after"] == [] and res["pins_after"] == 0, res
    assert res["pools_after"] == 0, "io_uring page pool still there after the ring closed"


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_copy_fallback_on_unbound_queue(nic, family, mode):
    """The same flow steered to queue 2 while queue 1 is bound: readable page-pool pages
    (in each buffer mode: frames at offsets of shared pages, heads in header-pool pages),
    so RECV_ZC copies every byte into the area (zcrx_stats copy_bytes == all of it)."""
    nic.mode(mode)
    res = zc_transfer(nic, family, bind=1, steer=2, size=MiB)
    assert res["final"] == 0 and res["match"], res
    # every byte was copied, but copy_bytes counts copies of frags only: bytes TCP
    # collapsed into linear skbs under receive-memory pressure (TCPRcvCollapsed) are
    # copied from the skb's head, uncounted (io_zcrx_recv_skb)
    assert 0 < res["stats"]["copy_bytes"] <= MiB
    assert 0 < res["stats"]["copy_count"] <= res["cqes"]
    assert res["qdelta"]["2"]["unreadable"] == 0 and flow_queue_packets(res, 2) > 0
    assert flow_queue_packets(res, 1) == 0, "the bound queue saw the flow"
    assert res["pins_after"] == 0


def test_zero_copy_rss_steered(nic):
    """No ntuple rule: RSS weights 0 1 0 0 put every flow on the bound queue 1."""
    nic.rss_weights([0, 1, 0, 0])
    res = zc_transfer(nic, bind=1, steer=None, size=MiB)
    assert res["final"] == 0 and res["match"], res
    assert res["stats"]["copy_count"] == 0
    assert flow_queue_packets(res, 1) > 0 and res["qdelta"]["1"]["unreadable"] == 1
    assert res["bound_after"] == [] and res["pins_after"] == 0, res


def test_netlink_shows_io_uring_provider(nic):
    """While bound: queue-get has an io-uring nest on queue 1 only; page-pool-get lists one
    io-uring pool of zc0 on that queue's NAPI with the ring's buffers in flight, and the
    area is pinned. Once a flow went through it and the ring closed, the queue is unbound
    and the area unpinned."""
    pins0 = pinned_pages()
    port, lst, peer = tcp_flow("ipv4", MiB)
    nic.ntuple("ipv4", port, action=1)
    rx = nic.rx(1, area_pages=1024)
    queue = nic.queues()[1]
    bound = nic.bound_queues()
    pools = nic.io_uring_pools()
    pins_bound = pinned_pages() - pins0
    st = receive_flow(rx, lst, peer)
    rx.close()
    assert queue["io-uring"] == {"rx-buf-len": PAGE_SIZE} and queue["ifindex"] == nic.ifindex, queue
    assert bound == [1]
    [pool] = pools
    assert pool["io-uring"] == {"rx-buf-len": PAGE_SIZE}
    assert pool["ifindex"] == nic.ifindex and pool["napi-id"] == queue["napi-id"], (pool, queue)
    assert pool["inflight"] == 256, "zcnic posts a full rx ring (256) from the pool"
    assert "detach-time" not in pool
    assert pins_bound >= 1024, "the 1024-page area is pinned while bound"
    assert st.final == 0 and bytes(st.data) == peer.data, (st.final, len(st.data))
    assert nic.wait_unbound() == []
    assert wait_pins(pins0)[0] == pins0, "the area is still pinned after the ring closed"


def test_qstats_count_zero_copy_flow(nic):
    """netdev qstats-get (scope queue), growth during the transfer: the bound queue carries
    the flow, checksums were validated by the NIC (csum-unnecessary), nothing dropped."""
    pins0 = pinned_pages()
    port, lst, peer = tcp_flow("ipv4", MiB)
    nic.ntuple("ipv4", port, action=1)
    rx = nic.rx(1)
    before = nic.qstats()  # after the bind: it restarts the queue, which resets its counters
    st = receive_flow(rx, lst, peer)
    # read while still bound: unbinding restarts the queue again
    grown = {
        q: {k: v - before[q].get(k, 0) for k, v in a.items() if k.startswith("rx-")}
        for q, a in nic.qstats().items()
    }
    assert st.final == 0 and bytes(st.data) == peer.data, summary(st, peer.data, rx)
    rx.close()
    q1 = grown[1]
    assert q1["rx-bytes"] >= MiB and q1["rx-packets"] > 0, q1
    assert q1["rx-csum-unnecessary"] > 0 and q1["rx-csum-bad"] == 0
    assert q1["rx-hw-drops"] == 0 and q1["rx-hw-drop-overruns"] == 0
    others = {q: grown[q]["rx-bytes"] for q in (0, 2, 3)}
    assert all(b < 16 << 10 for b in others.values()), f"only ARP/ND expected elsewhere: {others}"
    assert nic.wait_unbound() == [] and wait_pins(pins0)[0] == pins0


class HeldFlow:
    """A 1 MiB flow steered to queue 1 of zc0 with its RX ring cut to 64 entries, bound by
    a zcrx with a 128-page area and ZCRX_EVENT_ALLOC_FAIL enabled; the receiver keeps every
    buffer it gets until told to give them back."""

    queue = 1

    def __init__(self, nic, family):
        err, extack = nic.rings(rx=64)
        assert err == 0, extack
        port, self.lst, self.peer = tcp_flow(family, MiB)
        nic.ntuple(family, port, action=self.queue)
        self.nic = nic
        self.rx = nic.rx(self.queue, area_pages=128, rq_entries=256, event_mask=1 << ALLOC_FAIL)
        self.stream = Stream()

    def start(self):
        """The peer sends; RECV_ZC is armed on its connection."""
        self.peer.start()
        self.conn = accept(self.lst, self.peer)
        defer(self.conn.close)
        self.ud = self.rx.ring.submit_recv_zc(self.conn.fileno(), self.rx.z.id)

    def no_buf_drops(self):
        return self.nic.stats()[f"rx{self.queue}_no_buf_drops"]

    def hold_until_dry(self, timeout=60.0):
        """Collect CQEs without returning a buffer until zcnic dropped a frame for want of
        posted buffers and the ALLOC_FAIL event arrived (or `timeout`)."""
        drops0 = self.no_buf_drops()
        deadline = time.monotonic() + timeout
        fd = self.conn.fileno()
        while time.monotonic() < deadline:
            self.ud = pump(self.rx, fd, self.stream, self.ud, refill=False, idle=1.0, timeout=10)
            if self.no_buf_drops() > drops0 and self.stream.events:
                return

    def give_back_and_finish(self, timeout=120.0):
        """Return every held buffer and receive the rest of the stream: its summary()."""
        give_back(self.rx.z, self.stream.held)
        self.stream.held = []
        pump(self.rx, self.conn.fileno(), self.stream, self.ud, timeout=timeout)
        self.conn.close()
        return summary(self.stream, self.peer.data, self.rx)


REFILL_CASES = [("ipv4", m) for m in MODES] + [("ipv6", "whole")]


@pytest.mark.parametrize("family,mode", REFILL_CASES)
def test_refill_ring_dry_drops_then_recovers(nic, family, mode):
    """128-page area, 64-entry NIC ring, the user holds every buffer: the NIC runs out of
    posted buffers and drops (no_buf_drops, qstats hw-drops); after the buffers are returned
    TCP retransmits and the stream completes intact and zero copy. In the frags modes a
    held CQE keeps its whole buffer from the pool (its other frames' references too)."""
    nic.mode(mode)
    pins0 = pinned_pages()
    flow = HeldFlow(nic, family)
    q = flow.queue
    # the bind restarted the queue (fresh counters); no frame of the flow has come yet
    s0, d0 = nic.stats(), nic.qstats()[q]
    flow.start()
    flow.hold_until_dry()
    # TCP keeps retransmitting into the dry ring, so the drop counters move while they are
    # read: the queue's qstats rx-hw-drops (no_buf + fault + too_big drops, the same
    # counters as ethtool -S) is read between two ethtool -S reads, and as the counters
    # only grow, it lies between their sums whatever arrives in between.
    s1, d1, s2 = nic.stats(), nic.qstats()[q], nic.stats()
    held_bytes, held_buffers = len(flow.stream.data), len(flow.stream.held)
    res = flow.give_back_and_finish()
    flow.rx.close()
    grown = {f: s1[f"rx{q}_{f}"] - s0[f"rx{q}_{f}"] for f in ("no_buf_drops", "alloc_fail")}
    assert grown["no_buf_drops"] > 0 and s1[f"rx{q}_posted"] < 64, (grown, s1[f"rx{q}_posted"])
    drops_before = sum(s1[f"rx{q}_{f}"] for f in HW_DROPS)
    drops_after = sum(s2[f"rx{q}_{f}"] for f in HW_DROPS)
    assert drops_before <= d1["rx-hw-drops"] <= drops_after, (drops_before, d1, drops_after)
    assert grown["alloc_fail"] > 0 and d1["rx-alloc-fail"] - d0["rx-alloc-fail"] > 0, (grown, d0, d1)
    assert 0 < held_bytes < MiB and held_buffers <= 128 * PAGE_SIZE // frame_share(mode)
    assert res["final"] == 0 and res["match"], res
    assert res["stats"]["copy_count"] == 0
    assert nic.wait_unbound() == [] and wait_pins(pins0)[0] == pins0


def test_alloc_fail_event(nic):
    """ZCRX_EVENT_ALLOC_FAIL (enabled in event_desc.type_mask) fires once when the provider
    has no buffer left; ARM_EVENT is refused before it fired and re-arms it afterwards."""
    pins0 = pinned_pages()
    flow = HeldFlow(nic, "ipv4")
    arm_before_fired = errno_of(flow.rx.z.arm_event, ALLOC_FAIL)
    flow.start()
    flow.hold_until_dry()
    events_while_dry = list(flow.stream.events)
    arm_after_fired = errno_of(flow.rx.z.arm_event, ALLOC_FAIL)
    res = flow.give_back_and_finish()
    flow.rx.close()
    assert arm_before_fired == errno.EINVAL
    assert events_while_dry == [ALLOC_FAIL], "exactly one event until re-armed"
    assert arm_after_fired == 0
    assert res["final"] == 0 and res["match"], res
    assert nic.wait_unbound() == [] and wait_pins(pins0)[0] == pins0


def test_recv_zc_on_foreign_ifq_fails(nic):
    """Two ifqs (queues 1 and 2) on one ring; the flow lands on queue 2 but RECV_ZC names
    the ifq of queue 1: its net_iovs belong to another provider, the request ends -EFAULT
    without data; RECV_ZC with the right ifq then takes the whole stream zero copy."""
    pins0 = pinned_pages()
    port, lst, peer = tcp_flow("ipv4", 256 << 10)
    nic.ntuple("ipv4", port, action=2)
    args_b = ZcrxArgs(rq_entries=1024, area_len=512 * PAGE_SIZE, nodev=False, if_idx=nic.ifindex, if_rxq=2)
    defer(args_b.close)  # after the ring's close (defer runs last first)
    rx = nic.rx(1, area_pages=512)
    rx_b = SimpleNamespace(ring=rx.ring, z=rx.ring.register_zcrx(args_b))
    bound = nic.bound_queues()
    peer.start()
    conn = accept(lst, peer)
    defer(conn.close)
    wrong = Stream()
    ud = rx.ring.submit_recv_zc(conn.fileno(), rx.z.id)
    pump(rx, conn.fileno(), wrong, ud, timeout=10, idle=3)
    # the right ifq takes the same socket's data, zero copy
    right = Stream()
    ud = rx.ring.submit_recv_zc(conn.fileno(), rx_b.z.id)
    pump(rx_b, conn.fileno(), right, ud, timeout=60)
    conn.close()
    res = summary(right, peer.data, rx_b)
    rx.close()
    assert bound == [1, 2]
    assert wrong.final == -errno.EFAULT and len(wrong.data) == 0, (wrong.final, len(wrong.data))
    assert res["final"] == 0 and res["match"] and res["stats"]["copy_count"] == 0, res
    assert nic.wait_unbound() == [] and wait_pins(pins0)[0] == pins0


def reserve_hugepages(count):
    """At least COUNT free 2 MiB pages until the test ends, or a skip saying why not."""
    if not sysctl.exists("vm.nr_hugepages"):
        pytest.skip(f"kernel {os.uname().release} has no hugetlb pages (CONFIG_HUGETLBFS)")
    if not sysctl.reserve_hugepages(count):
        pytest.skip(f"could not reserve {count} huge pages")


LARGE_CASES = [(2, m) for m in MODES] + [(16, "whole")]


@pytest.mark.parametrize("pages,mode", LARGE_CASES)
def test_large_buffers_zero_copy(nic, pages, mode):
    """rx_buf_len of `pages` pages on a hugetlb area (physically contiguous): queue-get
    reports that rx-buf-len, zcnic's bound queue posts buffers that big (its page pool of
    that order), and a flow arrives whole by zero copy, no CQE longer than a frame's share
    of a buffer. A veth peer sends TSO super-frames, so payloads above a page land in one
    buffer; in the frags modes a large buffer is shared by frames at offsets inside it."""
    reserve_hugepages(2)
    nic.mode(mode)
    pins0 = pinned_pages()
    buf = pages * PAGE_SIZE
    port, lst, peer = tcp_flow("ipv4", 2 * MiB)
    nic.ntuple("ipv4", port, action=1)
    rx = nic.rx(1, area_pages=512, rq_entries=1024, hugetlb=True, rx_buf_len=buf)
    assert nic.queues()[1].get("io-uring") == {"rx-buf-len": buf}
    st = receive_flow(rx, lst, peer)
    assert st.final == 0 and bytes(st.data) == peer.data, f"{len(st.data)} bytes, final {st.final}"
    assert rx.z.stats()["copy_count"] == 0, "not zero copy"
    layout = layout_problem(mode, summary(st, peer.data, rx), buf=buf)
    assert layout is None, layout
    rx.close()
    assert nic.wait_unbound() == []
    assert wait_pins(pins0)[0] == pins0, "pages still pinned after the ring closed"


def test_rx_buf_len_above_device_limit(nic):
    """32 pages (128 KiB) is more than zcnic takes (64 KiB): its ndo_validate_qcfg refuses
    the queue configuration, the registration fails with EINVAL and nothing stays bound."""
    reserve_hugepages(1)
    err = nic.register_errno(1, rx_buf_len=32 * PAGE_SIZE, area_len=512 * PAGE_SIZE, hugetlb=True)
    assert err == errno.EINVAL, errno.errorcode.get(err)
    assert nic.wait_unbound() == []


@pytest.mark.parametrize("mode", list(MODES))
def test_dmabuf_area_zero_copy(nic, mode):
    """An area that is a dma-buf (udmabuf over a memfd, IORING_ZCRX_AREA_DMABUF): zcrx
    attaches it to zc0's DMA device and takes its DMA addresses from the attachment;
    zcnic's emulated DMA writes the payload there (at offsets inside the buffers in the
    frags modes), and the flow reads back whole through the memfd's mapping, zero copy.
    Closed, the queue is unbound and its pool gone."""
    if not os.path.exists("/dev/udmabuf"):
        pytest.skip(f"kernel {os.uname().release} has no /dev/udmabuf (CONFIG_UDMABUF)")
    nic.mode(mode)
    area = Udmabuf(1024 * PAGE_SIZE)
    defer(area.close)
    port, lst, peer = tcp_flow("ipv4", 2 * MiB)
    nic.ntuple("ipv4", port, action=1)
    rx = nic.rx(1, rq_entries=1024, dmabuf=area)
    assert nic.bound_queues() == [1]
    st = receive_flow(rx, lst, peer)
    assert st.final == 0 and bytes(st.data) == peer.data, f"{len(st.data)} bytes, final {st.final}"
    assert rx.z.stats()["copy_count"] == 0, "not zero copy"
    layout = layout_problem(mode, summary(st, peer.data, rx))
    assert layout is None, layout
    rx.close()
    assert nic.wait_unbound() == []
    assert nic.wait_no_pools() == 0, "the io_uring page pool outlived the ring"


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("length", [1447, 4097, 65539])
def test_length_limited_requests_zero_copy(nic, length, mode):
    """Requests with sqe.len = `length` one after another (upstream's --oneshot style) on
    the bound queue, whose skbs carry several unreadable frags (the veth peer sends TSO
    super-frames; in the frags modes, frags at offsets inside shared buffers): each takes
    exactly `length` bytes in its data CQEs (the cut falls inside a frag) and ends with
    res 0 without F_MORE; together they take the stream in order, zero copy, and the
    request after the peer's FIN ends at once with res 0."""
    nic.mode(mode)
    size = 256 << 10
    port, lst, peer = tcp_flow("ipv4", size)
    nic.ntuple("ipv4", port, action=1)
    rx = nic.rx(1, area_pages=1024, rq_entries=1024)
    peer.start()
    conn = accept(lst, peer)
    defer(conn.close)
    got, short = bytearray(), []
    while len(got) < size:
        res = recv_zc(rx.ring, rx.z, conn.fileno(), length=length, flush=False, timeout=60)
        assert res.final is not None and res.final.res == 0 and not res.final.more, res.final
        want = min(length, size - len(got))
        if len(res.data) != want:
            short.append((len(got), len(res.data)))
        got += res.data
        if not res.data:
            break
    assert short == [], f"requests that did not take exactly {length} bytes (at, took): {short[:5]}"
    assert bytes(got) == peer.data, f"{len(got)} of {size} bytes, or not in order"
    assert rx.z.stats()["copy_count"] == 0, "not zero copy"
    after_eof = recv_zc(rx.ring, rx.z, conn.fileno(), flush=False, timeout=30)
    assert after_eof.final.res == 0 and not after_eof.data, after_eof.final


def test_header_page_pool_zero_copy(nic):
    """zcnic's header_pool mode (as bnxt and fbnic with a memory provider): split headers
    go to pages of a second, readable page pool on the bound queue, and the skb is built
    around them. page-pool-get lists both pools on the queue's NAPI, only one of them
    io_uring's; the flow arrives whole, zero copy; both pools are gone after the close."""
    nic.mode("header_pool")
    pins0 = pinned_pages()
    port, lst, peer = tcp_flow("ipv4", 2 * MiB)
    nic.ntuple("ipv4", port, action=1)
    rx = nic.rx(1, area_pages=1024, rq_entries=1024)
    napi = nic.queues()[1]["napi-id"]
    pools = [p for p in nic.nl.netdev.page_pool_get({}, dump=True) if p.get("napi-id") == napi]
    st = receive_flow(rx, lst, peer)
    assert sorted("io-uring" in p for p in pools) == [False, True], pools
    assert st.final == 0 and bytes(st.data) == peer.data, f"{len(st.data)} bytes, final {st.final}"
    assert rx.z.stats()["copy_count"] == 0, "not zero copy"
    rx.close()
    assert nic.wait_unbound() == []
    assert wait_pins(pins0)[0] == pins0, "pages still pinned after the ring closed"
    ids = {p["id"] for p in pools}  # the queue restarted on unbind: these were destroyed
    now = nic.nl.netdev.page_pool_get({}, dump=True)
    attached = [p for p in now if p["id"] in ids and "detach-time" not in p]
    assert attached == [], f"pools of the queue before the unbind still attached: {attached}"


def tx_packets(dev=PEER, netns=NETNS) -> int:
    """Packets `dev` in `netns` has sent (its rtnl link stats): a TSO super-frame counts once."""
    [link] = json.loads(sh(f"ip -n {netns} -s -j link show {dev}").stdout)
    return link["stats64"]["tx"]["packets"]


def tcp_mib(netns=NETNS) -> dict:
    """The TCP counters of `netns` (/proc/net/snmp Tcp, /proc/net/netstat TcpExt)."""
    out = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        lines = sh(f"ip netns exec {netns} cat {path}").stdout.splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=True):
            kind, _, names = names.partition(":")
            if kind in ("Tcp", "TcpExt"):
                out.update(zip(names.split(), map(int, values.split(":")[1].split()), strict=True))
    return out


def netns_sysctl(name, value, netns=NETNS):
    """A per-netns sysctl of `netns` set until the test ends."""
    old = sh(f"ip netns exec {netns} sysctl -n {name}").stdout.strip()
    sh(f"ip netns exec {netns} sysctl -qw {name}={value}")
    defer(sh, f"ip netns exec {netns} sysctl -qw {name}={old}", check=False)


def test_tso_super_frames_cut_to_mtu(nic):
    """frags4 mode, 1 KiB of a buffer per frame: a veth TSO super-frame with more than
    MAX_SKB_FRAGS KiB of payload fits no skb, and a real NIC never gets one (its wire
    carries MTU-sized frames). zcnic cuts it into the segments the wire would have
    carried instead of dropping it. The sender's TSO frames are made ~64 KiB
    (tcp_min_tso_segs 44 in its netns) and veth1 sends the 2 MiB flow in fewer frames
    than 17 KiB pieces would take; the flow arrives intact and zero copy, the queue
    dropped nothing, and the sender saw no loss: no SACK recovery, no fast retransmit
    (its netns' TcpExt). A retransmission as such is no evidence here: on a slow guest a
    tail loss probe may resend the last segment before its ACK arrives (DSACKed)."""
    netns_sysctl("net.ipv4.tcp_min_tso_segs", 44)
    nic.mode("frags4")
    sent0, mib0 = tx_packets(), tcp_mib()
    res = zc_transfer(nic, "ipv4", bind=1, steer=1, size=2 * MiB)
    frames, mib = tx_packets() - sent0, tcp_mib()
    loss = {k: mib[k] - mib0[k] for k in ("TCPSackRecovery", "TCPFastRetrans", "TCPLostRetransmit")}
    assert res["qdelta"]["1"]["too_big_drops"] == 0, res["qdelta"]["1"]
    moved = {k: mib[k] - mib0[k] for k in mib if k in mib0 and mib[k] != mib0[k]}
    assert loss == dict.fromkeys(loss, 0), f"the sender recovered lost segments: {loss}; moved: {moved}"
    assert frames < 2 * MiB // (17 << 10), f"{frames} frames on veth1: no TSO super-frames"
    assert res["final"] == 0 and res["match"], res
    assert res["stats"]["copy_count"] == 0, "not zero copy"
    assert res["peer"]["errno"] == 0 and res["bound_after"] == [] and res["pins_after"] == 0, res


def test_added_area_used_once_the_first_runs_dry(nic):
    """An ifq on the bound queue with a 32-buffer area, and a 1024-buffer area added with
    ZCRX_CTRL_ADD_AREA: the page pool takes the first area's buffers, and once they are
    all out (posted, in flight, in the user's hands) its slow refill moves on to the
    second (io_zcrx_refill_slow). A 1 MiB flow arrives intact and zero copy, and the
    added area's memory holds payload zcnic's DMA wrote there."""
    added = Mem(1024 * PAGE_SIZE)
    defer(added.close)  # after the ring's close (defers run last first)
    port, lst, peer = tcp_flow("ipv4", MiB)
    nic.ntuple("ipv4", port, action=1)
    rx = nic.rx(1, area_pages=32, rq_entries=1024)
    area = rx.z.add_area(mem=added)
    assert area.id == 1, f"area id {area.id}"
    st = receive_flow(rx, lst, peer)
    assert st.final == 0 and bytes(st.data) == peer.data, f"{len(st.data)} bytes, final {st.final}"
    assert rx.z.stats()["copy_count"] == 0, "not zero copy"
    written = ctypes.string_at(added.addr, added.size)
    assert written.count(0) < len(written), "nothing landed in the added area"
