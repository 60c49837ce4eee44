"""Teardown of a NODEV ifq when its owner is SIGKILLed: pinned pages return to the
baseline (/proc/vmstat nr_foll_pin_acquired - nr_foll_pin_released), the same
registration works again at once. Runs in the guest; splats are caught by the harness.

The owner is a forked child that registers, gets into a mode (receiving, holding
every buffer, a multishot armed, data queued in the socket, its zcrx fd exported to
another process) and reports; the test then kills it.
"""

import errno
import json
import os
import select
import signal
import socket
import time

import pytest

from guest_tests.lib.defer import defer
from guest_tests.zcrx import PAGE_SIZE, Ring
from guest_tests.zcrx.util import (
    EndlessSender,
    RecvResult,
    Sender,
    collect,
    kill_and_reap,
    pattern,
    pinned_pages,
    recv_zc,
    tcp_pair,
    wait_pins,
)

pytestmark = [pytest.mark.nodev, pytest.mark.teardown, pytest.mark.in_guest]

AREA_PAGES = 256
REGION_PAGES = 3  # 256 refill entries + header + stats, page-aligned


def owner(mode, report_fd, holder_sock=None):
    """The forked owner: register, get into MODE, report on REPORT_FD, wait to be killed."""
    ring = Ring(16, cq_entries=1024)
    zcrx = ring.register_zcrx(area_len=AREA_PAGES * PAGE_SIZE, rq_entries=256)
    snd, rcv = tcp_pair()
    info, got, ud = {}, RecvResult(), None
    if mode == "exported":
        fd = zcrx.export()
        socket.send_fds(holder_sock, [b"x"], [fd])
        os.close(fd)
    if mode in ("receiving", "exported"):
        EndlessSender(snd)
        deadline = time.monotonic() + 30
        while len(got.data) < 1 << 20 and time.monotonic() < deadline:
            # a burst of task work can use up the area before refills are flushed
            # (-ENOMEM ends the multishot): re-arm, as a real receiver does
            ud = ring.submit_recv_zc(rcv.fileno(), zcrx.id)
            got.final = None
            collect(ring, zcrx, ud, got, until_bytes=1 << 20, timeout=deadline - time.monotonic())
        info["received"] = len(got.data)
    elif mode == "held":
        snd.sendall(pattern(AREA_PAGES * PAGE_SIZE * 2, 2))
        ud = ring.submit_recv_zc(rcv.fileno(), zcrx.id)
        collect(ring, zcrx, ud, got, timeout=10, refill=False)
        info["held_buffers"] = len({c.zc_off for c in got.cqes})
    elif mode == "armed":
        ring.submit_recv_zc(rcv.fileno(), zcrx.id)
    elif mode == "queued":
        snd.sendall(pattern(200_000, 3))  # data sits in the socket, no request
    os.write(report_fd, (json.dumps(info) + "\n").encode())
    while True:  # keep going until killed
        if mode in ("receiving", "exported"):
            collect(ring, zcrx, ud, got, timeout=1)
        else:
            time.sleep(1)


def fd_holder(sock):
    """Forked before any ring exists: receives the exported zcrx fd and keeps it."""
    _, fds, _, _ = socket.recv_fds(sock, 16, 4)
    link = os.readlink(f"/proc/self/fd/{fds[0]}") if fds else None
    sock.send(json.dumps({"fds": len(fds), "link": link}).encode())
    while True:
        time.sleep(1)


def fork(fn, *args) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            fn(*args)
        finally:
            os._exit(1)
    defer(_reap, pid)
    return pid


def _reap(pid):
    try:
        kill_and_reap(pid)
    except ChildProcessError:
        pass  # already reaped by the test


def read_line(fd, timeout):
    buf, deadline = b"", time.monotonic() + timeout
    while not buf.endswith(b"\n") and time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf.decode().strip()


def start_owner(mode, holder_sock=None):
    """Fork the owner in MODE; (pid, its report)."""
    report_r, report_w = os.pipe()
    pid = fork(owner, mode, report_w, holder_sock)
    os.close(report_w)
    line = read_line(report_r, 40)
    os.close(report_r)
    assert line, f"the owner never got into mode {mode!r}"
    return pid, json.loads(line)


def kill(pid):
    status = kill_and_reap(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def registers_and_receives_again(nodev):
    """The same registration at once, and a 256 KiB stream through it, intact to its
    end; then the ring is closed, which must release its pins too."""
    ring = Ring(16, cq_entries=4096)
    closing = defer(ring.close)
    zcrx = ring.register_zcrx(area_len=AREA_PAGES * PAGE_SIZE, rq_entries=256)
    defer(zcrx.args.close)
    snd, rcv = nodev.tcp_pair()
    data = pattern(256 * 1024, seed=7)
    sender = Sender(snd, data, close=True)
    got = recv_zc(ring, zcrx, rcv.fileno(), timeout=60, rearm_on_error=(-errno.ENOMEM, -errno.ENOSPC))
    sender.join(10)
    assert bytes(got.data) == data and got.final is not None and got.final.res == 0
    closing.exec()


@pytest.mark.parametrize("mode", ["receiving", "held", "armed", "queued", "exported"])
def test_sigkill_owner(nodev, mode):
    base = pinned_pages()
    holder = mine = None
    if mode == "exported":
        mine, theirs = socket.socketpair()
        defer(mine.close)
        holder = fork(fd_holder, theirs)
        theirs.close()
    pid, report = start_owner(mode, mine)
    assert pinned_pages() - base == AREA_PAGES + REGION_PAGES
    if mode == "receiving":
        assert report["received"] >= 1 << 20
    if mode == "held":
        assert report["held_buffers"] == AREA_PAGES
    kill(pid)
    if holder:
        kill(holder)
    pins, _ = wait_pins(base, timeout=20)
    assert pins - base == 0, "pinned pages leaked after the owner died"
    registers_and_receives_again(nodev)
    assert wait_pins(base)[0] - base == 0


def test_exported_fd_keeps_ifq_alive(nodev):
    """An exported zcrx fd held by another process keeps the area pinned after the
    owner dies; closing it (killing the holder) releases everything."""
    base = pinned_pages()
    mine, theirs = socket.socketpair()
    defer(mine.close)
    holder = fork(fd_holder, theirs)
    theirs.close()
    pid, _ = start_owner("exported", mine)
    mine.settimeout(10)
    assert json.loads(mine.recv(4096)) == {"fds": 1, "link": "anon_inode:[zcrx]"}
    kill(pid)
    time.sleep(1.0)
    assert pinned_pages() - base == AREA_PAGES + REGION_PAGES, "the holder's fd no longer pins the area"
    kill(holder)
    assert wait_pins(base, timeout=20)[0] - base == 0
