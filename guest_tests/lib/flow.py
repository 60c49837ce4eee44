"""A zcrx receive stream on zcnic, observed: CQEs collected from a ring (pump), the
payload and zcrx stats (summary), per-queue `ethtool -S` counter growth (qdelta); a
whole zero-copy transfer through a bound queue (zc_transfer). Shared by the zcnic tests."""

import errno
import socket
import time

from guest_tests.lib.defer import defer
from guest_tests.lib.nic import EV_UD, frame_share, port_for, qstat
from guest_tests.lib.peer import Peer, accept, listener
from guest_tests.zcrx import PAGE_SIZE
from guest_tests.zcrx.util import give_back, pinned_pages, sha256, wait_pins

MiB = 1 << 20


class Stream:
    """Received bytes and CQEs of one RECV_ZC stream."""

    def __init__(self):
        self.data, self.cqes, self.final, self.events, self.rearms = bytearray(), 0, None, [], []
        self.held = []
        self.longest = 0  # the longest data CQE
        self.inside = 0  # data CQEs that point inside a page of the area, not at its start
        self.incoming_cpu = None  # SO_INCOMING_CPU once received: where TCP processed it


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
                st.longest = max(st.longest, c.res)
                st.inside += bool(c.zc_off % PAGE_SIZE)
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
    st.incoming_cpu = conn.getsockopt(socket.SOL_SOCKET, socket.SO_INCOMING_CPU)
    conn.close()
    return st


def tcp_flow(family, size):
    """A listener on zc0's address and a Peer in netns `remote` that sends it `size`
    pattern bytes once started: (port, listener, peer), both gone after the test."""
    port = port_for(size & 0xFFFF)
    lst = listener(family, port)
    defer(lst.close)
    peer = Peer(family, port, size, seed=port)
    defer(peer.kill)
    return port, lst, peer


def zc_transfer(nic, family="ipv4", bind=1, steer=1, size=MiB, knobs=None, event_mask=0):
    """Bind a zcrx to queue `bind`, steer one TCP flow to queue `steer` (an ntuple rule;
    None: wherever RSS puts it), arm `knobs` for the transfer, receive `size` bytes with
    RECV_ZC; then unbind, disarm and observe what is left (bound queues, pins, io_uring
    page pools). The summary() of the stream, with the per-queue counter growth (qdelta)
    and the peer's own report."""
    pins0 = pinned_pages()
    port, lst, peer = tcp_flow(family, size)
    if steer is not None:
        nic.ntuple(family, port, action=steer)
    armed = [nic.arm(k, v) for k, v in (knobs or {}).items()]
    rx = nic.rx(bind, area_pages=1024, event_mask=event_mask)
    s0 = nic.stats()  # after the bind: it restarts the queue, which resets its counters
    st = receive_flow(rx, lst, peer)
    out = summary(st, peer.data, rx)
    out["qdelta"] = qdelta(s0, nic.stats())
    rx.close()
    for knob in armed:
        knob.exec()
    out["peer"] = peer.result()
    out["bound_after"] = nic.wait_unbound()
    out["pins_after"] = wait_pins(pins0)[0] - pins0
    out["pools_after"] = nic.wait_no_pools()
    return out


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
        "longest": st.longest,
        "inside": st.inside,
        "events": st.events,
        "rearms": st.rearms,
        "stats": rx.z.stats(),
        "incoming_cpu": st.incoming_cpu,
    }


QFIELDS = (
    "packets",
    "bytes",
    "hds_packets",
    "no_buf_drops",
    "fault_drops",
    "too_big_drops",
    "alloc_fail",
    "overruns",
)
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


def layout_problem(mode, res, buf=PAGE_SIZE) -> str | None:
    """What the CQEs of a zero-copy stream in zcnic `mode` (summary()) say against the
    mode's buffer layout, or None: no CQE is longer than one frame's share of a buffer
    (zcrx hands out one CQE per skb frag, and the NIC wrote each frag into one buffer);
    with several frames per buffer each less than a page, some CQEs point inside a page
    (frames at non-zero offsets of shared net_iovs)."""
    share = frame_share(mode, buf)
    if not 0 < res["longest"] <= share:
        return f"longest CQE {res['longest']} bytes, a frame's share of a buffer in {mode} mode is {share}"
    if share % PAGE_SIZE and not res["inside"]:
        return f"{mode}: no CQE points inside a buffer, the buffers were not shared"
    return None
