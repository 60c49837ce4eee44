"""Guest side of the receive benchmark (host/bench.py): one transfer on NicEnv's topology,
the sender a process in netns `remote` (lib/peer.py), the flow steered to one queue of
zc0 and received there by zcrx (RECV_ZC, buffers refilled as it goes) or by recv()."""

import json
import subprocess
import time

from guest_tests.lib.defer import defer
from guest_tests.lib.flow import Stream, pump
from guest_tests.lib.nic import port_for
from guest_tests.lib.peer import Peer, accept, listener

TIMEOUT = 300.0


def one_round(nic, mode: str, size: int, seed: int, queue: int = 1, receiver: str | None = None) -> dict:
    """SIZE bytes from the peer to a port steered to QUEUE, received by MODE ("zcrx" or
    "recv"), in Python or by the C RECEIVER (guest_tests/bench_receiver.c): {"bytes",
    "match", "seconds" (from the accept to EOF), "copy_count" (Python zcrx only)}."""
    port = port_for(seed)
    nic.ntuple("ipv4", port, action=queue)
    lst = listener("ipv4", port)
    defer(lst.close)
    peer = Peer("ipv4", port, size, seed=seed)
    defer(peer.kill)
    if receiver is not None:
        return c_round(nic, mode, queue, receiver, lst, peer)
    rx = nic.rx(queue, area_pages=2048, rq_entries=2048) if mode == "zcrx" else None
    peer.start()
    conn = accept(lst, peer)
    defer(conn.close)
    start = time.monotonic()
    if rx is not None:
        st = Stream()
        pump(rx, conn.fileno(), st, rx.ring.submit_recv_zc(conn.fileno(), rx.z.id), timeout=TIMEOUT)
        data, copies = st.data, rx.z.stats()["copy_count"]
    else:
        conn.settimeout(TIMEOUT)
        data, copies = bytearray(), None
        while chunk := conn.recv(1 << 16):
            data += chunk
    seconds = time.monotonic() - start
    conn.close()
    return {"bytes": len(data), "match": data == peer.data, "seconds": seconds, "copy_count": copies}


def c_round(nic, mode, queue, receiver, lst, peer) -> dict:
    """The C receiver takes the listening socket as its stdin (and binds its own zcrx
    first); it reports bytes, their byte sum and the nanoseconds from accept() to EOF."""
    args = [receiver, mode] + ([str(nic.ifindex), str(queue), "2048"] if mode == "zcrx" else [])
    proc = subprocess.Popen(args, stdin=lst.fileno(), stdout=subprocess.PIPE, text=True)
    defer(proc.kill)
    if mode == "zcrx" and proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{receiver} did not register its zcrx: exit {proc.wait()}")
    peer.start()
    out, _ = proc.communicate(timeout=TIMEOUT)
    if proc.returncode:
        raise RuntimeError(f"{receiver} {mode} failed with exit {proc.returncode}: {out}")
    got = json.loads(out.strip().splitlines()[-1])
    return {
        "bytes": got["bytes"],
        "match": got["bytes"] == len(peer.data) and got["sum"] == sum(peer.data),
        "seconds": got["ns"] / 1e9,
        "copy_count": None,
    }


def nothing() -> None:
    """An empty guest function: host/bench.py times the agent's round trip with it."""
