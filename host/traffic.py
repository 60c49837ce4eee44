"""Real TCP from the host into the guest's test NIC, with scapy, over the tap.

The host side has no IP stack on the tap: this module is the peer. It answers
ARP for its address, opens a connection with a real three-way handshake, and
sends a byte stream as MSS-sized segments inside the guest's advertised
window, with cumulative-ACK tracking, NewReno's fast retransmit and recovery, and
go-back-N on timeout, then closes with FIN. That is enough TCP to push
megabytes through zcnic's queues the way a remote host would, with full
control over the frames (ports that pick a queue, segment sizes, pauses).
"""

import random
import select
import socket
import threading
import time
from dataclasses import dataclass

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from guest_tests.contract import TEST_IP, TEST_IP6, TEST_MAC, TEST_PEER_IP, TEST_PEER_IP6, HostFlow
from host.errors import LabError
from host.vm.testlink import TestLink


@dataclass
class Peer:
    """The host's end: a made-up MAC and IPv4 and IPv6 addresses on the tap."""

    mac: str = "02:00:5e:00:53:01"
    ip: str = TEST_PEER_IP
    ip6: str = TEST_PEER_IP6


class TcpFlow:
    def __init__(
        self,
        sock: socket.socket,
        guest_mac: str,
        guest_ip: str,
        dport: int,
        sport: int | None = None,
        peer: Peer | None = None,
        mss: int = 1448,
    ):
        self.guest_mac, self.guest_ip, self.dport = guest_mac, guest_ip, dport
        self.v6 = ":" in guest_ip
        self.sport = sport or random.randint(20000, 60000)
        self.peer = peer or Peer()
        self.mss = mss
        self.sock = sock  # an AF_PACKET socket on the tap (host/vm/testlink.py)
        self.isn = random.randint(0, 2**31)
        self.snd_una = self.snd_nxt = self.isn
        self.rcv_nxt = 0
        self.rwnd = 0
        self.retransmits = 0
        self.segments = 0

    # -- frames ----------------------------------------------------------------
    def _segment(self, flags: str, seq: int, payload: bytes = b"", options=None):
        if self.v6:
            ip = IPv6(src=self.peer.ip6, dst=self.guest_ip)
        else:
            ip = IP(src=self.peer.ip, dst=self.guest_ip)
        return (
            Ether(src=self.peer.mac, dst=self.guest_mac)
            / ip
            / TCP(
                sport=self.sport,
                dport=self.dport,
                flags=flags,
                seq=seq & 0xFFFFFFFF,
                ack=self.rcv_nxt & 0xFFFFFFFF,
                window=65535,
                options=options or [],
            )
            / payload
        )

    def _send(self, frame) -> None:
        self.sock.send(bytes(frame))

    def _receive(self, timeout: float):
        """Next TCP segment of this flow (answering ARP and IPv6 neighbour solicitations on
        the way), or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            frame = Ether(self.sock.recv(65536))
            if ARP in frame and frame[ARP].op == 1 and frame[ARP].pdst == self.peer.ip:
                self._send(
                    Ether(src=self.peer.mac, dst=frame.src)
                    / ARP(
                        op=2,
                        hwsrc=self.peer.mac,
                        psrc=self.peer.ip,
                        hwdst=frame[ARP].hwsrc,
                        pdst=frame[ARP].psrc,
                    )
                )
                continue
            if ICMPv6ND_NS in frame and frame[ICMPv6ND_NS].tgt == self.peer.ip6:
                self._send(
                    Ether(src=self.peer.mac, dst=frame.src)
                    / IPv6(src=self.peer.ip6, dst=frame[IPv6].src)
                    / ICMPv6ND_NA(tgt=self.peer.ip6, R=0, S=1, O=1)
                    / ICMPv6NDOptDstLLAddr(lladdr=self.peer.mac)
                )
                continue
            ip = frame.getlayer(IPv6 if self.v6 else IP)
            if TCP in frame and ip is not None and ip.src == self.guest_ip and frame[TCP].dport == self.sport:
                seg = frame[TCP]
                if seg.flags.R:
                    raise LabError(f"the guest reset the connection to port {self.dport}")
                return seg

    def _acked(self, seg) -> int:
        """Advance snd_una from SEG's ACK; returns the bytes newly acknowledged."""
        ack = self.snd_una + ((seg.ack - self.snd_una) & 0xFFFFFFFF)
        if seg.flags.A and self.snd_una < ack <= self.snd_nxt:
            newly = ack - self.snd_una
            self.snd_una = ack
            self.rwnd = seg.window
            return newly
        if seg.flags.A:
            self.rwnd = seg.window
        return 0

    # -- the connection ----------------------------------------------------------
    def connect(self, timeout: float = 30, stop: threading.Event | None = None) -> None:
        """Three-way handshake; a RST means nothing listens yet (the guest side is still
        starting): SYN again until TIMEOUT, or until STOP is set."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                raise LabError(f"stopped before {self.guest_ip}:{self.dport} listened")
            self._send(self._segment("S", self.isn, options=[("MSS", self.mss)]))
            try:
                seg = self._receive(1.0)
            except LabError:  # RST: nothing listens yet; SYN again after a pause
                time.sleep(0.2)
                continue
            if seg is not None and seg.flags.S and seg.flags.A and seg.ack == (self.isn + 1) & 0xFFFFFFFF:
                self.snd_una = self.snd_nxt = self.isn + 1
                self.rcv_nxt = seg.seq + 1
                self.rwnd = seg.window
                self._send(self._segment("A", self.snd_nxt))
                return
        raise LabError(f"no SYN-ACK from {self.guest_ip}:{self.dport} in {timeout:.0f} s")

    # no ACK for this long: the window is resent from the first unacked byte (doubling,
    # up to RTO_MAX, while nothing new is acknowledged: a guest descheduled by a busy host
    # is not hurried by resending faster)
    RTO, RTO_MAX = 1.0, 4.0
    clock = staticmethod(time.monotonic)  # send()'s timers (host/test_traffic.py runs them on its own)

    def send(self, data: bytes, timeout: float = 120, window_segments: int = 32, shape: str = "psh") -> None:
        """Send DATA in MSS-sized segments inside the guest's window, shaped (contract.SHAPES):
        psh: PSH on every segment; no_psh: PSH on the last only (GRO may merge the rest);
        reorder: each pair of new segments sent second first; loss: every 8th segment's
        first transmission dropped (dupacks or the timeout make us resend).

        Losses are repaired as NewReno does (RFC 6582): three duplicate ACKs resend the
        first unacked segment only, each partial ACK the next hole, and duplicate ACKs
        are not counted again until everything sent before the repair is acknowledged.
        Without that, the guest's duplicate ACKs for the resent segments it already had
        trigger more resends of the whole window: a storm that, on a busy host, kept a
        256 KiB flow from finishing in two minutes."""
        base = self.snd_una
        end = base + len(data)
        deadline = self.clock() + timeout
        last_progress = self.clock()
        rto = self.RTO
        dupacks = 0
        recover: int | None = None  # repairing: the highest byte sent when the repair began
        fast = False  # the repair is a fast retransmit (partial ACKs resend the next hole)
        dropped: set[int] = set()  # seqs whose first transmission the loss shape dropped

        def segment(seq: int):
            n = min(self.mss, end - seq)
            off = seq - base
            flags = "A" if shape == "no_psh" and seq + n < end else "PA"
            self.segments += 1
            return self._segment(flags, seq, data[off : off + n]), n

        def resend_first_unacked() -> None:
            self._send(segment(self.snd_una)[0])
            self.retransmits += 1

        while self.snd_una < end:
            if self.clock() > deadline:
                raise LabError(f"sent {self.snd_una - base} of {len(data)} bytes in {timeout:.0f} s")
            window = min(max(self.rwnd, self.mss), window_segments * self.mss)
            batch = []
            while self.snd_nxt < end and self.snd_nxt - self.snd_una < window:
                frame, n = segment(self.snd_nxt)
                batch.append((self.snd_nxt, frame))
                self.snd_nxt += n
            if shape == "reorder":
                for i in range(0, len(batch) - 1, 2):
                    batch[i], batch[i + 1] = batch[i + 1], batch[i]
            for seq, frame in batch:
                if shape == "loss" and (seq - base) // self.mss % 8 == 3 and seq not in dropped:
                    dropped.add(seq)
                    continue
                self._send(frame)
            seg = self._receive(0.2)
            if seg is not None:
                if self._acked(seg):
                    last_progress, dupacks, rto = self.clock(), 0, self.RTO
                    if recover is not None and self.snd_una >= recover:
                        recover = None  # repaired
                    elif recover is not None and fast and self.snd_una < end:
                        resend_first_unacked()  # a partial ACK: the next hole
                elif seg.flags.A and seg.ack == self.snd_una & 0xFFFFFFFF and not len(seg.payload):
                    dupacks += recover is None
                    if dupacks == 3:
                        recover, fast, dupacks = self.snd_nxt, True, 0
                        resend_first_unacked()
            if self.clock() - last_progress > rto:
                recover, fast = max(self.snd_nxt, recover or 0), False
                self.snd_nxt = self.snd_una  # go back: resend from the first unacked byte
                self.retransmits += 1
                last_progress, dupacks, rto = self.clock(), 0, min(2 * rto, self.RTO_MAX)

    def close(self, timeout: float = 30) -> None:
        """FIN, wait for its ACK and the guest's FIN, ACK that."""
        deadline = time.monotonic() + timeout
        fin_acked = peer_fin = False
        while time.monotonic() < deadline and not (fin_acked and peer_fin):
            if not fin_acked:
                self._send(self._segment("FA", self.snd_nxt))
            seg = self._receive(1.0)
            if seg is None:
                continue
            if seg.flags.A and seg.ack == (self.snd_nxt + 1) & 0xFFFFFFFF:
                fin_acked = True
            if seg.flags.F:
                self.rcv_nxt = seg.seq + len(seg.payload) + 1
                self._send(self._segment("A", self.snd_nxt + 1))
                peer_fin = True
        self.sock.close()
        if not fin_acked:
            raise LabError("the guest never acknowledged our FIN")


class FlowSender(threading.Thread):
    """Sends a contract.HostFlow into the guest from a background thread: connects (SYN
    again while the guest resets: it is not listening yet), sends the payload, closes.
    `error` is what went wrong (None: the whole flow was acknowledged and closed)."""

    def __init__(self, link: TestLink, flow: HostFlow, connect_timeout: float, send_timeout: float = 300):
        super().__init__(daemon=True, name=f"flow-{flow.port}")
        self.link, self.flow = link, flow
        self.connect_timeout, self.send_timeout = connect_timeout, send_timeout
        self.stop = threading.Event()
        self.connected = False
        self.segments = self.retransmits = 0
        self.error: Exception | None = None
        self.start()

    def run(self) -> None:
        try:
            guest_ip = TEST_IP6 if self.flow.family == "ipv6" else TEST_IP
            tcp = TcpFlow(self.link.packet_socket(), TEST_MAC, guest_ip, self.flow.port, mss=self.flow.mss)
            try:
                try:
                    tcp.connect(self.connect_timeout, stop=self.stop)
                except LabError:
                    if self.stop.is_set():  # the guest test ended without listening: its verdict says why
                        return
                    raise
                self.connected = True
                tcp.send(self.flow.payload(), timeout=self.send_timeout, shape=self.flow.shape)
                tcp.close()
            finally:
                self.segments, self.retransmits = tcp.segments, tcp.retransmits
                tcp.sock.close()
        except Exception as exc:  # judged by whoever joins the thread
            self.error = exc
