"""Real TCP from the host (scapy on the tap, host/traffic.py) into zc0 stacked on the
multi-queue virtio-net test NIC: zero copy on a bound queue, also for flows the host
shapes (no PSH, reordered, lossy, tiny segments, jumbo frames in each zcnic buffer
mode), the copy fallback on another queue, an ntuple rule picking the queue. Runs in
the guest (guest_tests/agent.py) on NicEnv's `tapnic` topology; the host's sender is
the host_flow fixture, whose flow (port, size, payload seed, MSS, MTU) crosses as a
contract.HostFlow.
"""

import socket
import struct

import pytest

from guest_tests.lib.defer import defer
from guest_tests.lib.flow import Stream, pump
from guest_tests.lib.nic import MODES, frame_share, qstat
from guest_tests.zcrx.util import sha256

pytestmark = [pytest.mark.traffic, pytest.mark.zcnic, pytest.mark.in_guest]

MiB = 1 << 20
ACCEPT_TIMEOUT = 120.0  # the host SYNs about once a second until we listen


def accept(nic, flow):
    """Listen on zc0's address at the flow's port (the host's SYNs were reset until now)
    and take its connection; both closed after the test."""
    local, remote, _ = nic.addr[flow.family]
    lst = socket.socket(socket.AF_INET6 if flow.family == "ipv6" else socket.AF_INET, socket.SOCK_STREAM)
    defer(lst.close)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((local, flow.port))
    lst.listen(1)
    lst.settimeout(ACCEPT_TIMEOUT)
    conn, (peer, *_) = lst.accept()  # IPv6: (host, port, flowinfo, scope id)
    defer(conn.close)
    conn.settimeout(ACCEPT_TIMEOUT)
    assert peer == remote, f"a connection from {peer}, not from the host"
    return conn


def segments(flow) -> int:
    """The fewest data segments the flow can take (the host sends MSS-sized ones)."""
    return -(-flow.size // flow.mss)


def zc_receive(rx, conn) -> Stream:
    """A multishot RECV_ZC on the connection until its final CQE (buffers refilled)."""
    st = Stream()
    ud = rx.ring.submit_recv_zc(conn.fileno(), rx.z.id)
    pump(rx, conn.fileno(), st, ud, timeout=120)
    return st


def check_payload(got: bytes, flow) -> None:
    want = flow.payload()
    assert len(got) == len(want), f"{len(got)} of {len(want)} bytes"
    assert got == want, f"payload differs: sha256 {sha256(got)[:16]}, sent {sha256(want)[:16]}"


def tcp_ext(name: str) -> int:
    """A TcpExt counter of /proc/net/netstat."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0][1:], lines[1][1:], strict=True))[name])


SHAPED = {
    "1MiB": {"size": MiB},
    "no_psh": {"size": MiB, "shape": "no_psh"},
    "reorder": {"size": MiB, "shape": "reorder"},
    "loss": {"size": MiB, "shape": "loss"},
    "tiny_mss": {"size": MiB // 4, "mss": 256},
    "ipv6": {"size": MiB, "family": "ipv6", "mss": 1428},  # 1500 - 40 (IPv6) - 20 (TCP) - 12
}


@pytest.mark.parametrize("host_flow", list(SHAPED.values()), ids=list(SHAPED), indirect=True)
def test_zero_copy_on_bound_queue(tapnic, host_flow):
    """A flow steered to the queue a zcrx is bound to, as the host shapes it
    (contract.SHAPES; tiny_mss: 256-byte segments, a buffer each; IPv6): every byte arrives in
    order by zero copy (copy_count 0) through that queue (its packet counter grows by at
    least the flow's segments, unless GRO merged them), and the host's FIN ends the
    multishot RECV_ZC (a final CQE, res 0). A reordered or lossy flow went through TCP's
    out-of-order queue (TcpExt TCPOFOQueue grew) with its zcrx buffers intact."""
    queue = 1
    tapnic.ntuple(host_flow.family, host_flow.port, action=queue)
    rx = tapnic.rx(queue, area_pages=1024, rq_entries=512)
    before = tapnic.stats()  # after the bind: it restarts the queue, which resets its counters
    ofo = tcp_ext("TCPOFOQueue")
    conn = accept(tapnic, host_flow)
    st = zc_receive(rx, conn)
    check_payload(bytes(st.data), host_flow)
    stats = rx.z.stats()
    assert stats["copy_count"] == 0, f"data on the bound queue was copied, not zero copy: {stats}"
    assert st.final == 0, f"the RECV_ZC ended with {st.final}, not at EOF"
    grew = qstat(tapnic.stats(), queue, "packets") - qstat(before, queue, "packets")
    if host_flow.shape != "no_psh":
        assert grew >= segments(host_flow), f"queue {queue} saw {grew} packets"
    if host_flow.shape in ("reorder", "loss"):
        assert tcp_ext("TCPOFOQueue") > ofo, "no segment went through the out-of-order queue"


@pytest.mark.parametrize("host_flow", [MiB // 4], ids=["256KiB"], indirect=True)
def test_copy_fallback_on_unbound_queue(tapnic, host_flow):
    """A flow steered to a queue without a zcrx still reaches RECV_ZC whole, by copy:
    copy_count > 0 and copy_bytes at most what arrived."""
    tapnic.ntuple("ipv4", host_flow.port, action=2)
    rx = tapnic.rx(1, area_pages=1024, rq_entries=512)  # bound to queue 1, the flow goes to 2
    conn = accept(tapnic, host_flow)
    st = zc_receive(rx, conn)
    check_payload(bytes(st.data), host_flow)
    assert st.final == 0, f"the RECV_ZC ended with {st.final}, not at EOF"
    stats = rx.z.stats()
    assert stats["copy_count"] > 0, stats
    # Payload the kernel copies out of an skb's linear part is not counted in zcrx_stats
    # (io_zcrx_recv_skb's headlen path), so copy_bytes can fall a segment short of what
    # arrived; it never exceeds it.
    assert 0 < stats["copy_bytes"] <= host_flow.size, stats


@pytest.mark.parametrize("host_flow", [200_000], ids=["200KB"], indirect=True)
def test_ntuple_rule_picks_the_queue(tapnic, host_flow):
    """An ntuple rule for the flow's port puts all its packets on the chosen queue (its
    packet counter grows by at least the flow's segments); recv() gets the payload whole."""
    queue = 3
    tapnic.ntuple("ipv4", host_flow.port, action=queue)
    before = tapnic.stats()
    conn = accept(tapnic, host_flow)
    data = bytearray()
    while chunk := conn.recv(1 << 16):
        data += chunk
    check_payload(bytes(data), host_flow)
    grew = qstat(tapnic.stats(), queue, "packets") - qstat(before, queue, "packets")
    assert grew >= segments(host_flow), f"queue {queue} saw {grew} packets"


# 9000-byte frames (HostFlow.mtu): 8948 bytes of payload, as Linux sends them (9000 - 20
# IPv4 - 20 TCP - 12 of timestamps), each more than two 4 KiB buffers' worth
JUMBO = {"size": MiB, "mss": 8948}


def tcp_rcv_mss(conn) -> int:
    """struct tcp_info's tcpi_rcv_mss: the kernel's estimate of the peer's segment size,
    the largest segment received (tcp_measure_rcv_mss), capped by the advertised MSS."""
    info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, 20)[0]  # after 8 bytes of u8 fields, rto, ato, snd_mss


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("host_flow", [JUMBO], ids=["jumbo"], indirect=True)
def test_jumbo_segments_across_buffers(tapnic, host_flow, mode):
    """The test NIC and zc0 at MTU 9000 (and the host's tap: host_flow), the host sending
    8948-byte segments to the bound queue: TCP saw segments that size (tcpi_rcv_mss), every
    byte arrives in order by zero copy, and each segment's payload was split over as many
    buffers as it needs in zcnic buffer mode `mode` (header split, then 4096 + 4096 + 756
    bytes in whole buffers, 1 KiB frames in frags4, ...): zcrx's CQEs, one per buffer, are
    never longer than a frame's share of a buffer, some are exactly that long, and there
    are at least as many as the segments' buffers."""
    tapnic.mode(mode)
    err, extack = tapnic.jumbo(host_flow.mtu)
    assert err == 0, extack
    queue = 1
    tapnic.ntuple(host_flow.family, host_flow.port, action=queue)
    rx = tapnic.rx(queue, area_pages=1024, rq_entries=512)
    conn = accept(tapnic, host_flow)
    st = zc_receive(rx, conn)
    rcv_mss = tcp_rcv_mss(conn)
    check_payload(bytes(st.data), host_flow)
    assert rx.z.stats()["copy_count"] == 0, f"jumbo frames were copied, not zero copy: {rx.z.stats()}"
    assert st.final == 0, f"the RECV_ZC ended with {st.final}, not at EOF"
    assert rcv_mss == host_flow.mss, f"TCP estimated {rcv_mss}-byte segments, not {host_flow.mss}"
    share = frame_share(mode)
    full, last = divmod(host_flow.size, host_flow.mss)
    buffers = full * -(-host_flow.mss // share) + -(-last // share)
    assert st.longest == share, f"longest CQE {st.longest} bytes, a frame's share of a buffer is {share}"
    assert st.cqes >= buffers, f"{st.cqes} CQEs for {buffers} buffers' worth of segments"
