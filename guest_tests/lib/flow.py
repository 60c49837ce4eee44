"""A zcrx receive stream on zcnic, observed: CQEs collected from a ring (pump), the
payload and zcrx stats (summary), per-queue `ethtool -S` counter growth (qdelta).
Shared by the in_guest zcnic tests and scenarios/zcnic.py."""

import errno
import time

from guest_tests.lib.defer import defer
from guest_tests.lib.nic import EV_UD, qstat
from guest_tests.lib.peer import accept
from guest_tests.zcrx.util import give_back, sha256


class Stream:
    """Received bytes and CQEs of one RECV_ZC stream."""

    def __init__(self):
        self.data, self.cqes, self.final, self.events, self.rearms = bytearray(), 0, None, [], []
        self.held = []


def pump(rx, fd, st, ud, refill=True, timeout=60.0, idle=None, until=None):
    """Collect CQEs of RECV_ZC request ud into st until its final CQE, `until` bytes, `idle`
    seconds without data, or timeout. Returns the (possibly re-armed) request's user_data."""
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while time.monotonic() < deadline:
        got = rx.ring.wait_cqes(1, timeout=0.5)
        batch = []
        for c in got:
            if c.user_data == EV_UD:
                st.events.append(c.res)
            elif c.user_data != ud:
                continue
            elif c.more:
                st.data += rx.z.read(c.zc_off, c.res)
                st.cqes += 1
                batch.append(c)
            elif c.res in (-errno.ENOMEM, -errno.ENOSPC):  # multishot ended for space: re-arm
                st.rearms.append(c.res)
                ud = rx.ring.submit_recv_zc(fd, rx.z.id)
            else:
                st.final = c.res
        if batch:
            last = time.monotonic()
            if refill:
                give_back(rx.z, batch)
            else:
                st.held += batch
        if st.final is not None:
            break
        if until is not None and len(st.data) >= until:
            break
        if idle is not None and time.monotonic() - last > idle:
            break
    return ud


def receive_flow(rx, lst, peer, timeout=120.0):
    """Start PEER, accept its connection on LST and receive the whole flow with a
    multishot RECV_ZC on RX (refilling as it goes); the Stream, once the peer closed."""
    peer.start()
    conn = accept(lst, peer)
    defer(conn.close)
    st = Stream()
    ud = rx.ring.submit_recv_zc(conn.fileno(), rx.z.id)
    pump(rx, conn.fileno(), st, ud, timeout=timeout)
    conn.close()
    return st


def summary(st, peer_data, rx):
    got = bytes(st.data)
    return {
        "bytes": len(got),
        "sent": len(peer_data),
        "match": got == peer_data,
        "sha_got": sha256(got)[:16],
        "sha_sent": sha256(peer_data)[:16],
        "final": st.final,
        "cqes": st.cqes,
        "events": st.events,
        "rearms": st.rearms,
        "stats": rx.z.stats(),
    }


QFIELDS = ("packets", "bytes", "hds_packets", "no_buf_drops", "fault_drops", "alloc_fail", "overruns")
# zcnic's qstats rx-hw-drops of a queue: the sum of these ethtool -S counters
HW_DROPS = ("no_buf_drops", "fault_drops", "too_big_drops")


def qdelta(s0, s1):
    """Per-queue counter growth between two `ethtool -S` snapshots (counters reset on restart)."""
    out = {}
    for q in range(16):
        if f"rx{q}_packets" not in s1:
            continue
        d = {f: qstat(s1, q, f) - qstat(s0, q, f) for f in QFIELDS}
        d["unreadable"] = qstat(s1, q, "unreadable")
        d["posted"] = qstat(s1, q, "posted")
        d["ring_size"] = qstat(s1, q, "ring_size")
        out[str(q)] = d
    return out
