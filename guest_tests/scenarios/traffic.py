"""Guest side of host-injected traffic: receive one TCP connection on zc0."""

import errno
import socket
import time

from guest_tests.zcrx import Ring
from guest_tests.zcrx.util import PAGE_SIZE, recv_zc, sha256


def _accept(port: int, timeout: float, family=socket.AF_INET) -> socket.socket:
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("", port))
    srv.listen(1)
    srv.settimeout(timeout)
    conn, _ = srv.accept()
    srv.close()
    return conn


def zc_receive(
    ifname: str, queue: int, port: int, timeout: float = 120.0, area_pages: int = 1024, rq_entries: int = 512
) -> dict:
    """Bind a zcrx to IFNAME's QUEUE, accept one connection on PORT, RECV_ZC to EOF."""
    with Ring(256) as ring:
        zcrx = ring.register_zcrx(
            nodev=False,
            if_idx=socket.if_nametoindex(ifname),
            if_rxq=queue,
            rq_entries=rq_entries,
            area_len=area_pages * PAGE_SIZE,
        )
        conn = _accept(port, timeout)
        start = time.monotonic()
        # A netdev ifq's refill ring is consumed by the page pool: no flush.
        result = recv_zc(
            ring, zcrx, conn.fileno(), flush=False, timeout=timeout, rearm_on_error=(-errno.ENOSPC,)
        )
        elapsed = time.monotonic() - start
        conn.close()
        out = result.summary(zcrx)
        out["seconds"] = elapsed
        return out


def plain_receive(port: int, timeout: float = 120.0) -> dict:
    """Accept one connection on PORT and recv() to EOF."""
    conn = _accept(port, timeout)
    data = bytearray()
    start = time.monotonic()
    while chunk := conn.recv(1 << 16):
        data += chunk
    elapsed = time.monotonic() - start
    conn.close()
    return {"bytes": len(data), "sha256": sha256(bytes(data)), "seconds": elapsed}
