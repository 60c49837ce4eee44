"""Guest side of the receive benchmark (host/bench.py): one transfer on NicEnv's topology,
the sender a process in netns `remote` (lib/peer.py), the flow steered to one queue of
zc0 and received there by zcrx (RECV_ZC, buffers refilled as it goes) or by recv()."""

import time

from guest_tests.lib.defer import defer
from guest_tests.lib.flow import Stream, pump
from guest_tests.lib.nic import port_for
from guest_tests.lib.peer import Peer, accept, listener

TIMEOUT = 300.0


def one_round(nic, mode: str, size: int, seed: int, queue: int = 1) -> dict:
    """SIZE bytes from the peer to a port steered to QUEUE, received by MODE ("zcrx" or
    "recv"): {"bytes", "match", "seconds" (from the accept to EOF), "copy_count"}."""
    port = port_for(seed)
    nic.ntuple("ipv4", port, action=queue)
    lst = listener("ipv4", port)
    defer(lst.close)
    peer = Peer("ipv4", port, size, seed=seed)
    defer(peer.kill)
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
