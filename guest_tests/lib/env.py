"""Test environments, one object per kind (like net/lib/py's NetDrvEpEnv).

A guest test names its environment as its first parameter (`nodev`, ...); the
agent builds it here from the settings the host sent. Everything an
environment sets up for a test is undone by `defer` when the test ends.
"""

import errno
import socket

from guest_tests.lib.defer import defer
from guest_tests.zcrx import PAGE_SIZE, Mem, Ring
from guest_tests.zcrx.mem import PROT_NONE
from guest_tests.zcrx.util import (
    RecvResult,
    Sender,
    collect,
    pattern,
    pinned_pages,
    pinned_vm_kb,
    recv_zc,
    tcp_pair,
)


class NodevEnv:
    """zcrx without a netdev (ZCRX_REG_NODEV): every byte takes the copy path; traffic
    is loopback TCP. Covers the uapi and the ring logic, not the zero-copy path."""

    page = PAGE_SIZE

    def ring(self, entries: int = 16, **kwargs) -> Ring:
        """An io_uring (zcrx's flags by default), closed after the test; then the memory
        of every ifq registered on it (areas, user regions) is unmapped."""
        ring = Ring(entries, **kwargs)
        defer(_unmap_ifqs, ring)
        defer(ring.close)
        return ring

    @staticmethod
    def close(ring: Ring) -> None:
        """Close the ring now and unmap its ifqs' memory (the undo then has nothing left)."""
        ring.close()
        _unmap_ifqs(ring)

    @staticmethod
    def mem(size: int, **kwargs) -> Mem:
        """An anonymous mapping (Mem keywords), unmapped after the test."""
        mem = Mem(size, **kwargs)
        defer(mem.close)
        return mem

    def inaccessible(self) -> int:
        """The address of a mapped PROT_NONE page: every kernel access to it faults, and
        nothing else can be mapped there during the test."""
        return self.mem(PAGE_SIZE, prot=PROT_NONE, populate=False).addr

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

    def receive(self, ring: Ring, zcrx, size: int, seed: int = 31, timeout: float = 60.0):
        """Send size pattern bytes over a loopback TCP pair and RECV_ZC them on zcrx,
        re-arming when the area runs dry: (RecvResult, whether the data arrived intact)."""
        snd, rcv = self.tcp_pair()
        data = pattern(size, seed)
        sender = Sender(snd, data)
        res = recv_zc(ring, zcrx, rcv.fileno(), timeout=timeout, rearm_on_error=(-errno.ENOMEM,))
        sender.join(10)
        snd.close()
        rcv.close()
        return res, bytes(res.data) == data

    @staticmethod
    def pins() -> int:
        """Pages pinned system-wide (/proc/vmstat foll_pin acquired - released)."""
        return pinned_pages()

    @staticmethod
    def pinned_vm() -> int:
        """This process's VmPin in kB: mm->pinned_vm, where io_uring accounts area pages."""
        return pinned_vm_kb()


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


def _unmap_ifqs(ring: Ring) -> None:
    for zcrx in ring.zcrx:
        if zcrx.args is not None:
            zcrx.args.close()
        for area in zcrx.areas:
            if area.mem is not None:
                area.mem.close()


def buffers(cqes) -> int:
    """Distinct area buffers (niovs) the CQEs point into."""
    return len({c.zc_off >> 12 for c in cqes})


def _nic(**settings):
    from guest_tests.lib.nic import NicEnv  # YNL and zcnic: loaded only where used

    return NicEnv(**settings)


def _tapnic(**settings):
    """zc0 on the test NIC, the host (scapy over the tap) as the remote end."""
    return _nic(lower="tap", **settings)


_KINDS = {"nodev": NodevEnv, "nic": _nic, "tapnic": _tapnic}


def get(name: str, settings: dict):
    if name not in _KINDS:
        raise LookupError(f"no guest environment {name!r} (guest_tests/lib/env.py)")
    return _KINDS[name](**settings)
