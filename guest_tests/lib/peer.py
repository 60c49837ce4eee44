"""A TCP sender in netns "remote" for the zcnic tests (guest side)."""

import json
import os
import select
import socket
import time

from guest_tests.lib.nic import ADDR, FAMILY, NETNS
from guest_tests.zcrx.util import pattern


class Peer:
    """A TCP sender in netns `remote`: a forked child that connects and sends when start()ed,
    then waits for the receiver to close. It never touches the parent's io_uring."""

    def __init__(self, family, port, size, seed=1, chunk=1 << 16, endless=False):
        self.size, self.seed = size, seed
        go_r, self.go_w = os.pipe()
        self.res_r, res_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # child
            os.close(self.go_w)
            os.close(self.res_r)
            try:
                res = _peer_main(family, port, size, seed, chunk, endless, go_r)
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                res = {"error": repr(e)}
            os.write(res_w, json.dumps(res).encode())
            os._exit(0)
        os.close(go_r)
        os.close(res_w)
        self.data = None if endless else pattern(size, seed)

    def start(self):
        os.write(self.go_w, b"g")

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
            return {"error": "peer gave no result"}
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
            os.close(self.res_r)
            os.close(self.go_w)


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
