"""TcpFlow.send's shapes against a simulated receiver (no tap): what goes on the wire in
which order, and that every shape still delivers every byte."""

import pytest
from scapy.layers.inet import TCP

from host.traffic import Peer, TcpFlow

MSS = 100


class WireFlow(TcpFlow):
    """TcpFlow whose wire is a list: a receiver that ACKs the contiguous bytes it has."""

    def __init__(self):  # no socket: nothing touches a tap
        self.guest_mac, self.guest_ip, self.dport = "02:00:00:00:00:02", "192.0.2.2", 80
        self.sport, self.peer, self.mss, self.v6 = 4000, Peer(), MSS, False
        self.snd_una = self.snd_nxt = self.isn = 1000
        self.rcv_nxt, self.rwnd = 1, 65535
        self.retransmits = self.segments = 0
        self.wire: list = []  # (seq, flags, length) in the order sent
        self.have: dict[int, int] = {}  # seq -> length received
        self.acked = self.isn

    def _send(self, frame) -> None:
        seg = frame[TCP]
        self.wire.append((seg.seq, str(seg.flags), len(seg.payload)))
        self.have[seg.seq] = len(seg.payload)
        while self.acked in self.have:
            self.acked += self.have[self.acked]

    def _receive(self, timeout: float):
        return TCP(flags="A", ack=self.acked, window=65535)


def sent(shape: str, size: int = 10 * MSS) -> WireFlow:
    flow = WireFlow()
    flow.send(bytes(size), timeout=10, shape=shape)
    assert flow.acked == flow.isn + size, f"{shape}: {flow.acked - flow.isn} of {size} bytes acknowledged"
    return flow


def test_psh_on_every_segment():
    flow = sent("psh")
    assert [f for _, f, _ in flow.wire] == ["PA"] * 10


def test_no_psh_but_the_last():
    flow = sent("no_psh")
    assert [f for _, f, _ in flow.wire] == ["A"] * 9 + ["PA"]


def test_reorder_sends_each_pair_second_first():
    flow = sent("reorder")
    seqs = [s - flow.isn for s, _, _ in flow.wire]
    assert seqs[:4] == [MSS, 0, 3 * MSS, 2 * MSS]


def test_loss_drops_every_8th_first_transmission_and_resends_it():
    flow = sent("loss", size=16 * MSS)
    seqs = [s - flow.isn for s, _, _ in flow.wire]
    assert seqs.count(3 * MSS) == 1 and seqs.index(3 * MSS) > seqs.index(4 * MSS), "segment 3 not resent late"
    assert flow.retransmits >= 1


@pytest.mark.parametrize("shape", ["psh", "no_psh", "reorder", "loss"])
def test_every_shape_delivers_an_odd_tail(shape):
    sent(shape, size=7 * MSS + 13)


class AckingWireFlow(WireFlow):
    """A receiver that ACKs every segment it gets (a duplicate gets a duplicate ACK, as
    Linux sends), and whose ACKs reach us only after `stall` seconds: a guest that a busy
    host left unscheduled for longer than our retransmission timeout. Time is the
    simulation's own (a millisecond per empty wait), so the run is the same on any host."""

    RTO, RTO_MAX = 0.01, 0.04

    def __init__(self, stall: float):
        super().__init__()
        self.acks: list[int] = []
        self.now = 0.0
        self.release = stall

    def clock(self) -> float:
        return self.now

    def _send(self, frame) -> None:
        super()._send(frame)
        self.acks.append(self.acked)

    def _receive(self, timeout: float):
        if self.now < self.release or not self.acks:
            self.now += 0.001
            return None
        return TCP(flags="A", ack=self.acks.pop(0), window=65535)


@pytest.mark.parametrize("shape", ["psh", "loss"])
def test_a_stalled_receiver_gets_no_retransmission_storm(shape):
    """After a timeout resend of a 32-segment window, the receiver's duplicate ACKs for
    segments it already had must not trigger more resends of the window."""
    size = 64 * MSS
    flow = AckingWireFlow(stall=0.1)
    flow.send(bytes(size), timeout=10, shape=shape)
    assert flow.acked == flow.isn + size
    sent = len(flow.wire)
    assert sent <= 2 * 64 + 32 * 4, f"{sent} segments on the wire for 64 ({flow.retransmits} retransmissions)"
