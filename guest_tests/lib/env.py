"""Test environments, one object per kind (like net/lib/py's NetDrvEpEnv).

A guest test names its environment as its first parameter (`nodev`, ...); the
agent builds it here from the settings the host sent. Everything an
environment sets up for a test is undone by `defer` when the test ends.
"""

import errno
import socket

from guest_tests.lib.defer import defer
from guest_tests.zcrx import PAGE_SIZE, Ring
from guest_tests.zcrx.util import RecvResult, Sender, collect, pattern, pinned_pages, tcp_pair


class NodevEnv:
    """zcrx without a netdev (ZCRX_REG_NODEV): every byte takes the copy path; traffic
    is loopback TCP. Covers the uapi and the ring logic, not the zero-copy path."""

    page = PAGE_SIZE

    def ring(self, entries: int = 16, **kwargs) -> Ring:
        ring = Ring(entries, **kwargs)
        defer(ring.close)
        return ring

    def stream(self, ring: Ring, zcrx, total: int, seed: int = 31, rcvbuf: int | None = None) -> "Stream":
        stream = Stream(ring, zcrx, total, seed, rcvbuf)
        defer(stream.close)
        return stream

    def tcp_pair(self, family=socket.AF_INET, rcvbuf: int | None = None):
        """A connected loopback TCP pair (sender, receiver), closed after the test."""
        snd, rcv = tcp_pair(family, rcvbuf=rcvbuf)
        defer(rcv.close)
        defer(snd.close)
        return snd, rcv

    @staticmethod
    def pins() -> int:
        """Pages pinned system-wide (/proc/vmstat foll_pin acquired - released)."""
        return pinned_pages()


class Stream:
    """A loopback TCP stream fed by a sender thread, received with RECV_ZC on one ifq."""

    def __init__(self, ring, zcrx, total, seed=31, rcvbuf=None):
        self.ring, self.zcrx = ring, zcrx
        self.snd, self.rcv = tcp_pair(socket.AF_INET, rcvbuf=rcvbuf)
        self.data = pattern(total, seed)
        self.sender = Sender(self.snd, self.data)
        self.result = RecvResult()

    def receive(self, timeout: float = 10.0, refill: bool = False) -> list:
        """Arm a multishot RECV_ZC and collect until it ends; the new data CQEs."""
        ud = self.ring.submit_recv_zc(self.rcv.fileno(), self.zcrx.id)
        self.result.final = None
        before = len(self.result.cqes)
        collect(self.ring, self.zcrx, ud, self.result, timeout=timeout, refill=refill)
        return self.result.cqes[before:]

    @property
    def final(self):
        """The CQE that ended the last receive (res 0: EOF, -ENOMEM: area exhausted)."""
        return self.result.final

    def ran_dry(self) -> bool:
        return self.final is not None and self.final.res == -errno.ENOMEM

    def intact(self) -> bool:
        got = bytes(self.result.data)
        return got == self.data[: len(got)]

    def close(self):
        self.snd.close()
        self.rcv.close()
        self.sender.join(5)


def buffers(cqes) -> int:
    """Distinct area buffers (niovs) the CQEs point into."""
    return len({c.zc_off >> 12 for c in cqes})


def _nic(**settings):
    from guest_tests.lib.nic import NicEnv  # YNL and zcnic: loaded only where used

    return NicEnv(**settings)


_KINDS = {"nodev": NodevEnv, "nic": _nic}


def get(name: str, settings: dict):
    if name not in _KINDS:
        raise LookupError(f"no guest environment {name!r} (guest_tests/lib/env.py)")
    return _KINDS[name](**settings)
