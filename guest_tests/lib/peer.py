"""TCP ends in netns "remote" for the zcnic tests (guest side): a sender, and a receiver
that reports what it got."""

import hashlib
import json
import os
import select
import socket
import time

from guest_tests.lib.nic import ADDR, FAMILY, NETNS
from guest_tests.zcrx.util import pattern


class _Child:
    """A forked child that runs main() (in netns `remote`, by its own setns) and reports
    its dict over a pipe, once: result() reads it, kill() ends the child."""

    def _spawn(self, main, keep=()):
        self.res_r, res_w = os.pipe()
        self._fds = [self.res_r]  # the parent's ends, closed when the child is reaped
        self.pid = os.fork()
        if self.pid == 0:  # child
            _close_inherited(keep={*keep, res_w})
            try:
                res = main()
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                res = {"error": repr(e)}
            os.write(res_w, json.dumps(res).encode())
            os._exit(0)
        os.close(res_w)

    def result(self, timeout=60.0):
        chunks, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not select.select([self.res_r], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            b = os.read(self.res_r, 65536)
            if not b:
                break
            chunks.append(b)
        if not chunks:
            self.kill()
            return {"error": f"{type(self).__name__.lower()} gave no result"}
        self._reap()
        return json.loads(b"".join(chunks))

    def kill(self):
        if self.pid:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            self._reap()

    def _reap(self):
        if self.pid:
            os.waitpid(self.pid, 0)
            self.pid = 0
            for fd in self._fds:
                os.close(fd)


class Peer(_Child):
    """A TCP sender in netns `remote`: a forked child that connects and sends when start()ed,
    then waits for the receiver to close. It never touches the parent's io_uring."""

    def __init__(self, family, port, size, seed=1, chunk=1 << 16, endless=False):
        self.size, self.seed = size, seed
        go_r, self.go_w = os.pipe()
        self._spawn(lambda: _peer_main(family, port, size, seed, chunk, endless, go_r), keep={go_r})
        self._fds.append(self.go_w)
        os.close(go_r)
        self.data = None if endless else pattern(size, seed)

    def start(self):
        os.write(self.go_w, b"g")


class Sink(_Child):
    """A TCP receiver in netns `remote`: a forked child that listens on the remote address
    and `port`, takes one connection and reads it to EOF. result() is what it got:
    {"received": bytes, "sha256": of them, "errno": 0 or a failed call's}."""

    def __init__(self, family, port, timeout=60.0):
        ready_r, ready_w = os.pipe()
        self._spawn(lambda: _sink_main(family, port, timeout, ready_w), keep={ready_w})
        os.close(ready_w)
        ready = select.select([ready_r], [], [], timeout)[0] and os.read(ready_r, 1)
        os.close(ready_r)
        if not ready:
            raise RuntimeError(f"the receiver in netns {NETNS} never listened: {self.result(5)}")


def _close_inherited(keep):
    """In a forked end: close every descriptor of the test's but `keep` (and stdio). A
    dma-buf, memfd, ring or netlink socket the child still held would outlive the test's
    close() of it: a devmem binding would stay bound, an area pinned."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:  # the listing's own descriptor, gone already
                pass


def _peer_main(family, port, size, seed, chunk, endless, go_r):
    with open(f"/run/netns/{NETNS}") as f:
        os.setns(f.fileno(), os.CLONE_NEWNET)
    if not os.read(go_r, 1):
        return {"error": "not started"}
    data = pattern(1 << 16 if endless else size, seed)
    s = socket.socket(FAMILY[family], socket.SOCK_STREAM)
    s.settimeout(120)
    s.connect((ADDR[family][0], port))
    sent, t0 = 0, time.monotonic()
    try:
        if endless:
            while True:
                sent += s.send(data)
        mv = memoryview(data)
        while sent < size:
            sent += s.send(mv[sent : sent + chunk])
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):  # until the receiver closes
            pass
    except OSError as e:
        return {"sent": sent, "errno": e.errno, "secs": round(time.monotonic() - t0, 2)}
    finally:
        s.close()
    return {"sent": sent, "errno": 0, "secs": round(time.monotonic() - t0, 2)}


def _sink_main(family, port, timeout, ready_w):
    with open(f"/run/netns/{NETNS}") as f:
        os.setns(f.fileno(), os.CLONE_NEWNET)
    lst = socket.socket(FAMILY[family], socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((ADDR[family][1], port))
    lst.listen(1)
    lst.settimeout(timeout)
    os.write(ready_w, b"r")
    received, digest = 0, hashlib.sha256()
    try:
        conn, _ = lst.accept()
        conn.settimeout(timeout)
        while chunk := conn.recv(1 << 16):
            received += len(chunk)
            digest.update(chunk)
        conn.close()
    except OSError as e:
        return {"received": received, "sha256": digest.hexdigest(), "errno": e.errno or -1}
    return {"received": received, "sha256": digest.hexdigest(), "errno": 0}


def listener(family, port=0):
    lst = socket.socket(FAMILY[family], socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((ADDR[family][0], port))
    lst.listen(4)
    return lst


def accept(lst, peer, timeout=60.0):
    """The peer's connection; a peer that never connects fails the test with its report."""
    lst.settimeout(timeout)
    try:
        conn, _ = lst.accept()
    except TimeoutError:
        raise RuntimeError(f"the sender never connected: {peer.result(5)}") from None
    conn.setblocking(True)
    return conn
