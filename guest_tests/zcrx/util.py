"""Helpers for guest tests: loopback TCP, payload patterns, receive loop, pins, caps, fork."""

import ctypes
import hashlib
import json
import os
import random
import signal
import socket
import threading
import time

from .mem import PAGE_SIZE, libc, oserror

# --- payloads and sockets


def pattern(n, seed=1):
    return random.Random(seed).randbytes(n)


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def tcp_pair(family=socket.AF_INET, rcvbuf=None):
    """Connected loopback TCP pair: returns (sender, receiver) sockets."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.bind((host, 0))
    lst.listen(1)
    if rcvbuf:  # inherited by the accepted socket
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    snd = socket.create_connection(lst.getsockname()[:2])
    rcv, _ = lst.accept()
    lst.close()
    return snd, rcv


class Sender(threading.Thread):
    """Sends data on a socket from a thread, then shuts down the write side."""

    def __init__(self, sock, data, chunk=1 << 16, shutdown=True, close=False, delay=0.0):
        super().__init__(daemon=True)
        self.sock, self.data, self.chunk = sock, data, chunk
        self.shutdown, self.close_after, self.delay = shutdown, close, delay
        self.sent, self.error = 0, None
        self.start()

    def run(self):
        try:
            if self.delay:
                time.sleep(self.delay)
            mv = memoryview(self.data)
            while self.sent < len(mv):
                self.sent += self.sock.send(mv[self.sent : self.sent + self.chunk])
            if self.shutdown:
                self.sock.shutdown(socket.SHUT_WR)
            if self.close_after:
                self.sock.close()
        except OSError as e:
            self.error = e.errno


class EndlessSender(threading.Thread):
    """Sends a repeating block until the socket breaks (or the process dies)."""

    def __init__(self, sock, block=None):
        super().__init__(daemon=True)
        self.sock, self.block, self.sent = sock, block or pattern(1 << 16, 77), 0
        self.start()

    def run(self):
        try:
            while True:
                self.sent += self.sock.send(self.block)
        except OSError:
            pass


# --- receive loop


class RecvResult:
    def __init__(self):
        self.data = bytearray()
        self.cqes = []  # data CQEs
        self.final = None  # the CQE without F_MORE
        self.others = []  # CQEs of other requests (events, ...)

    def summary(self, zcrx=None, keep_cqes=0):
        offs = [c.area_off for c in self.cqes]
        d = {
            "bytes": len(self.data),
            "sha256": sha256(bytes(self.data)),
            "n_cqes": len(self.cqes),
            "res_min": min((c.res for c in self.cqes), default=None),
            "res_max": max((c.res for c in self.cqes), default=None),
            "res_sum": sum(c.res for c in self.cqes),
            "flags": sorted({c.flags for c in self.cqes}),
            "area_ids": sorted({c.area_id for c in self.cqes}),
            "pad_nonzero": sum(1 for c in self.cqes if c.zc_pad),
            "off_page_misaligned": sum(1 for o in offs if o % PAGE_SIZE),
            "cross_page": sum(1 for c in self.cqes if c.area_off % PAGE_SIZE + c.res > PAGE_SIZE),
            "final": self.final.to_dict() if self.final else None,
            "others": [c.to_dict() for c in self.others],
            "cqes": [c.to_dict() for c in self.cqes[:keep_cqes]],
        }
        if zcrx is not None:
            d["outside_area"] = sum(
                1
                for c in self.cqes
                if c.area_id >= len(zcrx.areas) or c.area_off + c.res > zcrx.areas[c.area_id].len
            )
            d["stats"] = zcrx.stats()
        return d


def give_back(zcrx, cqes, flush=True):
    """Return buffers of data CQEs through the refill ring (flushing when it is full)."""
    for c in cqes:
        while zcrx.rq_space() <= 0:
            zcrx.flush()
        zcrx.refill_cqe(c)
    if flush and cqes:
        zcrx.flush()


def collect(ring, zcrx, ud, r, until_bytes=None, timeout=10.0, refill=True, flush=True):
    """Collect the CQEs of the armed RECV_ZC `ud` into r until its final CQE, until_bytes or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and r.final is None:
        batch = []
        for c in ring.wait_cqes(1, timeout=min(0.5, max(0.01, deadline - time.monotonic()))):
            if c.user_data != ud:
                r.others.append(c)
            elif c.more:
                r.data += zcrx.read(c.zc_off, c.res)
                r.cqes.append(c)
                batch.append(c)
            else:
                r.final = c
        if refill:
            give_back(zcrx, batch, flush)
        if until_bytes is not None and len(r.data) >= until_bytes:
            break
    return r


def recv_zc(
    ring,
    zcrx,
    fd,
    length=0,
    refill=True,
    flush=True,
    timeout=30.0,
    user_data=None,
    until_bytes=None,
    result=None,
    rearm_on_error=(),
):
    """Arm RECV_ZC on fd and collect until its final CQE (or until_bytes or timeout).

    A final CQE whose res is in rearm_on_error is kept in r.others and the
    request armed again.
    """
    r = result or RecvResult()
    ud = ring.submit_recv_zc(fd, zcrx.id, len=length, user_data=user_data)
    deadline = time.monotonic() + timeout
    while True:
        collect(ring, zcrx, ud, r, until_bytes, max(0.0, deadline - time.monotonic()), refill, flush)
        if r.final is not None and r.final.res in rearm_on_error and time.monotonic() < deadline:
            r.others.append(r.final)
            r.final = None
            ud = ring.submit_recv_zc(fd, zcrx.id, len=length)
            continue
        return r


# --- pinned pages (/proc/vmstat)


def pinned_pages():
    """nr_foll_pin_acquired - nr_foll_pin_released, with per-cpu counters folded."""
    try:
        with open("/proc/sys/vm/stat_refresh", "w") as f:
            f.write("1")
    except OSError:
        pass
    vals = {}
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            vals[k] = int(v)
    return vals["nr_foll_pin_acquired"] - vals["nr_foll_pin_released"]


def pinned_vm_kb():
    """VmPin of /proc/self/status (kB): pages pinned and accounted to this mm."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmPin:"):
                return int(line.split()[1])
    raise RuntimeError("no VmPin in /proc/self/status")


def wait_pins(target, timeout=15.0, kick_after=5.0, at_most=False):
    """Poll until pinned_pages() == target (at_most: <= target, where pins that were
    there before may go too); returns (value, seconds waited).

    An area stays pinned until its page pool has every buffer back, and TCP
    hands consumed skbs to the CPU that allocated them (skb defer lists),
    which frees them only in its next NET_RX: on an idle CPU that may be
    never. After `kick_after` seconds every CPU is made to run NET_RX once
    (None: never; test_zcnic_teardown measures that wait on its own)."""
    t0 = time.monotonic()
    kicked = kick_after is None
    while True:
        v = pinned_pages()
        if v == target or (at_most and v < target) or time.monotonic() - t0 > timeout:
            return v, round(time.monotonic() - t0, 2)
        if not kicked and time.monotonic() - t0 > kick_after:
            run_net_rx_on_every_cpu()
            kicked = True
        time.sleep(0.1)


def run_net_rx_on_every_cpu():
    """Make each CPU run NET_RX once: a loopback datagram sent while pinned to
    the CPU is queued to that CPU's backlog and received in its softirq.

    net_rx_action() is where a CPU frees the skbs other CPUs consumed but left
    on its defer list (skb_attempt_defer_free); until it runs, their frags (a
    zcrx area's net_iovs) stay with the page pool. Returns how many CPUs."""
    allowed = os.sched_getaffinity(0)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    kicked = 0
    try:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        for cpu in range(os.cpu_count() or 1):
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:  # offline
                continue
            tx.sendto(b"x", rx.getsockname())
            rx.recv(16)
            kicked += 1
    finally:
        os.sched_setaffinity(0, allowed)
        rx.close()
        tx.close()
    return kicked


# --- capabilities

CAP_NET_ADMIN = 12
CAP_IPC_LOCK = 14
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHdr(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_cap(cap):
    """Drop a capability from the effective and permitted sets of this thread."""
    hdr = _CapHdr(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.syscall(ctypes.c_long(125), ctypes.byref(hdr), ctypes.byref(data)):  # capget
        raise oserror(ctypes.get_errno())
    word, bit = divmod(cap, 32)
    data[word].effective &= ~(1 << bit)
    data[word].permitted &= ~(1 << bit)
    if libc.syscall(ctypes.c_long(126), ctypes.byref(hdr), ctypes.byref(data)):  # capset
        raise oserror(ctypes.get_errno())


def has_cap_eff(cap):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    return False


# --- processes


def in_child(fn, *args, timeout=60.0):
    """Run fn(*args) in a forked child; returns its JSON-able result or raises."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            res = {"ok": True, "value": fn(*args)}
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            res = {"ok": False, "error": repr(e), "errno": getattr(e, "errno", None)}
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    out = read_all(r, timeout)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if not out:
        raise RuntimeError(f"child died without result, status {status:#x}")
    res = json.loads(out)
    if not res["ok"]:
        err = OSError(res["errno"], res["error"]) if res["errno"] else RuntimeError(res["error"])
        raise err
    return res["value"]


def read_all(fd, timeout):
    import select

    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0, deadline - time.monotonic()))
        if not ready:
            break
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def kill_and_reap(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
    return status


def errno_of(fn, *args, **kw):
    """0 if fn succeeds, else the errno of the OSError it raised."""
    try:
        fn(*args, **kw)
        return 0
    except OSError as e:
        return e.errno
