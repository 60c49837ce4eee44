"""Guest-side zcrx scenarios that need no netdev (ZCRX_REG_NODEV, loopback TCP).

Each public function returns observations (errnos, byte counts, CQE fields,
counters); the host-side tests in guest_tests/test_nodev_*.py judge them.
"""

import errno
import json
import os
import select
import socket
import struct
import time

from guest_tests.zcrx import PAGE_SIZE, Ring
from guest_tests.zcrx import uapi as U
from guest_tests.zcrx.util import (
    EndlessSender,
    RecvResult,
    Sender,
    collect,
    errno_of,
    give_back,
    kill_and_reap,
    pattern,
    pinned_pages,
    recv_zc,
    tcp_pair,
    wait_pins,
)

DEFER = U.IORING_SETUP_DEFER_TASKRUN | U.IORING_SETUP_SINGLE_ISSUER
RING_FLAGS = {
    "zcrx": U.ZCRX_RING_FLAGS,
    "mixed": DEFER | U.IORING_SETUP_CQE_MIXED,
    "clamp": U.ZCRX_RING_FLAGS | U.IORING_SETUP_CLAMP,
    "plain": 0,
    "no_defer": U.IORING_SETUP_SINGLE_ISSUER | U.IORING_SETUP_CQE32,
    "no_cqe32": DEFER,
    "coop_cqe32": U.IORING_SETUP_COOP_TASKRUN | U.IORING_SETUP_CQE32,
}


def multi_area_recv(n_extra=2, first_pages=4, extra_pages=8, size=None):
    """Small area 0 plus ADD_AREA areas; data spills into later areas (no refill)."""
    with Ring(8, cq_entries=1024) as ring:
        z = ring.register_zcrx(area_len=first_pages * PAGE_SIZE, rq_entries=64)
        for _ in range(n_extra):
            z.add_area(extra_pages * PAGE_SIZE)
        total_pages = first_pages + n_extra * extra_pages
        size = size or (total_pages - 1) * PAGE_SIZE
        snd, rcv = tcp_pair()
        data = pattern(size, seed=11)
        s = Sender(snd, data)
        res = recv_zc(ring, z, rcv.fileno(), refill=False, until_bytes=size, timeout=20)
        s.join(5)
        summ = res.summary(z)
        summ["match"] = bytes(res.data) == data
        summ["tokens"] = [a.token for a in z.areas]
        per_area = {}
        for c in res.cqes:
            per_area[c.area_id] = per_area.get(c.area_id, 0) + 1
        summ["cqes_per_area"] = {str(k): v for k, v in sorted(per_area.items())}
        summ["total_pages"] = total_pages
        snd.close()
        rcv.close()
        return summ


# --------------------------------------------------------------------------------------
# completion ring


def recv_stream(
    size=1 << 20,
    family="ipv4",
    ring="zcrx",
    rq_entries=256,
    area_pages=512,
    length=0,
    refill=True,
    chunk=1 << 16,
    cq_entries=4096,
    rcvbuf=None,
    sender_close=False,
    keep_cqes=0,
    event_mask=0,
):
    """Send `size` pattern bytes over loopback TCP and receive them with RECV_ZC."""
    fam = socket.AF_INET6 if family == "ipv6" else socket.AF_INET
    pins0 = pinned_pages()
    with Ring(16, RING_FLAGS[ring], cq_entries=cq_entries) as r:
        z = r.register_zcrx(
            rq_entries=rq_entries,
            area_len=area_pages * PAGE_SIZE,
            event_mask=event_mask,
            event_user_data=0xE7E7,
        )
        pins_reg = pinned_pages() - pins0
        snd, rcv = tcp_pair(fam, rcvbuf)
        data = pattern(size, seed=size & 0xFFFF)
        s = Sender(snd, data, chunk=chunk, close=sender_close)
        t0 = time.monotonic()
        # a run of task work can use up the whole area (-ENOMEM ends the multishot): re-arm
        rearm = () if length else (-errno.ENOMEM, -errno.ENOSPC)
        res = recv_zc(r, z, rcv.fileno(), length=length, refill=refill, timeout=60, rearm_on_error=rearm)
        secs = time.monotonic() - t0
        out = res.summary(z, keep_cqes)
        got = bytes(res.data)
        out.update(
            sent=len(data),
            match=got == data[: len(got)],
            full_match=got == data,
            secs=round(secs, 2),
            rq_head=z.head,
            rq_tail=z.tail,
            rq_entries=z.rq_entries,
            area_len=z.areas[0].len,
            pins_registered=pins_reg,
            expected_pins=(z.areas[0].len + z.args.rd.size) // PAGE_SIZE,
            cqe_f32=sum(1 for c in res.cqes if c.flags & U.IORING_CQE_F_32),
            final_f32=bool(res.final and res.final.flags & U.IORING_CQE_F_32),
            final_big=res.final.big.hex() if res.final and res.final.big else None,
            cq_skipped=r.skipped,
            rearms=[c.res for c in res.others if c.user_data != 0xE7E7],
        )
        if length:
            # what is left in the socket after a length-limited receive
            s.join(10)
            rcv.settimeout(5)
            rest = bytearray()
            while True:
                b = rcv.recv(1 << 16)
                if not b:
                    break
                rest += b
            out["rest_bytes"] = len(rest)
            out["rest_match"] = got + bytes(rest) == data
        s.join(10)
        snd.close()
        rcv.close()
    out["pins_after_close"] = wait_pins(pins0)[0] - pins0
    return out


def recv_prep_errors():
    """Invalid RECV_ZC submissions: the CQE res of each."""
    out = {}
    with Ring(16) as ring:
        z = ring.register_zcrx()
        snd, rcv = tcp_pair()
        fd = rcv.fileno()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        r, w = os.pipe()
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        unix_a, unix_b = socket.socketpair()
        cases = {
            "no_multishot": dict(fd=fd, multishot=False),
            "bad_zcrx_id": dict(fd=fd, zcrx_id=3),
            "addr_set": dict(fd=fd, addr=0x1000),
            "off_set": dict(fd=fd, off=1),
            "addr3_set": dict(fd=fd, addr3=1),
            "msg_flags_set": dict(fd=fd, op_flags=socket.MSG_DONTWAIT),
            "ioprio_unknown": dict(fd=fd, ioprio=1 << 5),
            "udp_socket": dict(fd=udp.fileno()),
            "pipe": dict(fd=r),
            "listening_tcp": dict(fd=lst.fileno()),
            "unix_stream": dict(fd=unix_a.fileno()),
            "bad_fd": dict(fd=9999),
        }
        for name, kw in cases.items():
            kw = dict(kw)
            ud = ring.submit_recv_zc(
                kw.pop("fd"), kw.pop("zcrx_id", z.id), multishot=kw.pop("multishot", True), **kw
            )
            cqes = ring.wait_cqes(1, timeout=1.0)
            mine = [c for c in cqes if c.user_data == ud]
            out[name] = (
                {"res": mine[0].res, "flags": mine[0].flags}
                if mine
                else {"res": None, "flags": None, "pending": True}
            )
        for s in (snd, rcv, udp, lst, unix_a, unix_b):
            s.close()
        os.close(r)
        os.close(w)
    return out


def recv_end(kind="eof"):
    """How a multishot RECV_ZC ends: eof, eof_no_data, reset, shutdown_rd, close_receiver."""
    with Ring(16) as ring:
        z = ring.register_zcrx()
        snd, rcv = tcp_pair()
        data = pattern(20_000, seed=3)
        if kind == "eof_no_data":
            snd.shutdown(socket.SHUT_WR)
            res = recv_zc(ring, z, rcv.fileno(), timeout=10)
        elif kind == "reset":
            ud = ring.submit_recv_zc(rcv.fileno(), z.id)
            snd.sendall(data)
            res = RecvResult()
            res = collect(ring, z, ud, res, until_bytes=len(data), timeout=10)
            snd.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            snd.close()
            res = collect(ring, z, ud, res, timeout=10)
        elif kind == "shutdown_rd":
            ud = ring.submit_recv_zc(rcv.fileno(), z.id)
            snd.sendall(data)
            res = collect(ring, z, ud, RecvResult(), until_bytes=len(data), timeout=10)
            rcv.shutdown(socket.SHUT_RD)
            res = collect(ring, z, ud, res, timeout=5)
        else:  # eof after data
            Sender(snd, data).join()
            res = recv_zc(ring, z, rcv.fileno(), timeout=10)
        out = res.summary(z)
        out["expected_bytes"] = 0 if kind == "eof_no_data" else len(data)
        snd.close()
        rcv.close()
        return out


def oneshot_sequence(chunk=PAGE_SIZE, n=8):
    """Repeated length-limited RECV_ZC (like upstream's --oneshot): n requests of chunk bytes."""
    with Ring(16) as ring:
        z = ring.register_zcrx()
        snd, rcv = tcp_pair()
        data = pattern(chunk * n, seed=5)
        s = Sender(snd, data)
        got, finals, per_req = bytearray(), [], []
        for _ in range(n):
            r = recv_zc(ring, z, rcv.fileno(), length=chunk, timeout=10)
            got += r.data
            finals.append(r.final.to_dict() if r.final else None)
            per_req.append(len(r.data))
        s.join()
        tail = recv_zc(ring, z, rcv.fileno(), timeout=10)
        snd.close()
        rcv.close()
        return {
            "per_request_bytes": per_req,
            "finals": finals,
            "match": bytes(got) == data,
            "after_eof_final": tail.final.to_dict() if tail.final else None,
            "after_eof_bytes": len(tail.data),
        }


def many_sockets(n=4, size=200_000):
    """n TCP connections, one multishot each, all on one ifq."""
    with Ring(64, cq_entries=4096) as ring:
        z = ring.register_zcrx(area_len=1024 * PAGE_SIZE, rq_entries=1024)
        pairs = [tcp_pair() for _ in range(n)]
        datas = [pattern(size, seed=100 + i) for i in range(n)]
        uds = {ring.submit_recv_zc(rcv.fileno(), z.id): i for i, (_, rcv) in enumerate(pairs)}
        senders = [Sender(snd, d) for (snd, _), d in zip(pairs, datas, strict=True)]
        got = [bytearray() for _ in range(n)]
        finals = [None] * n
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(f is None for f in finals):
            batch = []
            for c in ring.wait_cqes(1, timeout=1.0):
                i = uds[c.user_data]
                if c.more:
                    got[i] += z.read(c.zc_off, c.res)
                    batch.append(c)
                else:
                    finals[i] = c.to_dict()
            give_back(z, batch)
        for s in senders:
            s.join(5)
        for a, b in pairs:
            a.close()
            b.close()
        return {
            "match": [bytes(g) == d for g, d in zip(got, datas, strict=True)],
            "bytes": [len(g) for g in got],
            "finals": finals,
            "stats": z.stats(),
        }


def cq_overflow(cq_entries=8, size=256 * 1024):
    """Do not reap while data arrives: zcrx CQEs cannot overflow; what ends the request?"""
    with Ring(4, cq_entries=cq_entries) as ring:
        z = ring.register_zcrx(area_len=512 * PAGE_SIZE, rq_entries=512)
        snd, rcv = tcp_pair()
        data = pattern(size, seed=9)
        ud = ring.submit_recv_zc(rcv.fileno(), z.id)
        s = Sender(snd, data)
        time.sleep(1.0)
        # let the kernel run the deferred work without consuming CQEs
        from guest_tests.zcrx.ring import io_uring_enter

        for _ in range(5):
            io_uring_enter(ring.fd, 0, 0, U.IORING_ENTER_GETEVENTS)
            time.sleep(0.2)
        ready = ring.cq_ready()
        sq_flags = ring.sq_flags.value
        overflow_counter = ring.cq_overflow.value
        first = ring.reap()
        more_flushed = ring.get_events()
        all_cqes = first + more_flushed
        mine = [c for c in all_cqes if c.user_data == ud]
        data_cqes = [c for c in mine if c.more]
        final = [c for c in mine if not c.more]
        got = bytearray()
        for c in data_cqes:
            got += z.read(c.zc_off, c.res)
        give_back(z, data_cqes)
        # re-arm and take the rest: nothing may be lost
        rest = recv_zc(ring, z, rcv.fileno(), timeout=30, rearm_on_error=(-errno.ENOSPC,))
        got += rest.data
        s.join(10)
        snd.close()
        rcv.close()
        return {
            "cq_ready_before_reap": ready,
            "cq_entries": ring.cq_entries,
            "sq_flag_cq_overflow": bool(sq_flags & U.IORING_SQ_CQ_OVERFLOW),
            "cq_overflow_counter": overflow_counter,
            "n_data_cqes_first": len(data_cqes),
            "first_final": final[0].to_dict() if final else None,
            "rest_final": rest.final.to_dict() if rest.final else None,
            "rest_rearms": [c.res for c in rest.others],
            "match": bytes(got) == data,
            "bytes": len(got),
        }


def area_exhaustion(area_pages=4, size=64 * 1024):
    """No refill: the area runs dry; observe the ending CQE, then refill and finish."""
    with Ring(16) as ring:
        z = ring.register_zcrx(area_len=area_pages * PAGE_SIZE, rq_entries=64)
        snd, rcv = tcp_pair()
        data = pattern(size, seed=13)
        s = Sender(snd, data)
        r1 = recv_zc(ring, z, rcv.fileno(), refill=False, timeout=10)
        first = {
            "bytes": len(r1.data),
            "n_cqes": len(r1.cqes),
            "final": r1.final.to_dict() if r1.final else None,
            "distinct_offsets": len({c.zc_off for c in r1.cqes}),
        }
        give_back(z, r1.cqes)
        r2 = recv_zc(ring, z, rcv.fileno(), timeout=30, rearm_on_error=(-errno.ENOMEM,))
        s.join(10)
        got = bytes(r1.data) + bytes(r2.data)
        snd.close()
        rcv.close()
        return {
            "first": first,
            "second_final": r2.final.to_dict() if r2.final else None,
            "rearms": len(r2.others),
            "match": got == data,
            "bytes": len(got),
            "stats": z.stats(),
        }


def stats_events(size=100_000):
    """Copy statistics and ZCRX_EVENT_COPY notifications on a NODEV ifq."""
    with Ring(16) as ring:
        z = ring.register_zcrx(event_mask=1 << U.ZCRX_EVENT_COPY, event_user_data=0xC0FFEE)
        snd, rcv = tcp_pair()
        out = {"stats_initial": z.stats()}
        data1, data2 = pattern(size, 21), pattern(size, 22)
        ud = ring.submit_recv_zc(rcv.fileno(), z.id)
        snd.sendall(data1)
        r = collect(ring, z, ud, RecvResult(), until_bytes=len(data1))
        time.sleep(0.2)
        r.others += [c for c in ring.get_events() if c.user_data != ud]
        out["stats_1"] = z.stats()
        out["cqes_1"] = len(r.cqes)
        out["bytes_1"] = len(r.data)
        out["events_1"] = [c.to_dict() for c in r.others]
        out["arm_copy_errno"] = errno_of(z.arm_event, U.ZCRX_EVENT_COPY)
        out["arm_copy_again_errno"] = errno_of(z.arm_event, U.ZCRX_EVENT_COPY)
        out["arm_alloc_fail_errno"] = errno_of(z.arm_event, U.ZCRX_EVENT_ALLOC_FAIL)
        r2 = RecvResult()
        snd.sendall(data2)
        r2 = collect(ring, z, ud, r2, until_bytes=len(data2))
        time.sleep(0.2)
        r2.others += [c for c in ring.get_events() if c.user_data != ud]
        out["stats_2"] = z.stats()
        out["cqes_2"] = len(r2.cqes)
        out["bytes_2"] = len(r2.data)
        out["events_2"] = [c.to_dict() for c in r2.others]
        out["match"] = bytes(r.data) == data1 and bytes(r2.data) == data2
        snd.close()
        rcv.close()
        return out


# --------------------------------------------------------------------------------------
# teardown


def _child_receiver(mode, ready_w, area_pages, holder_sock=None):
    """Runs in a forked child: register, get into `mode`, report, wait to be killed."""
    ring = Ring(16, cq_entries=1024)
    z = ring.register_zcrx(area_len=area_pages * PAGE_SIZE, rq_entries=256)
    snd, rcv = tcp_pair()
    info = {"pid": os.getpid()}
    r, ud = RecvResult(), None
    if mode == "exported":
        fd = z.export()
        socket.send_fds(holder_sock, [b"x"], [fd])
        os.close(fd)
    if mode in ("receiving", "exported"):
        EndlessSender(snd)
        ud = ring.submit_recv_zc(rcv.fileno(), z.id)
        collect(ring, z, ud, r, until_bytes=1 << 20, timeout=30)
        info["received_before_ready"] = len(r.data)
    elif mode == "held":
        snd.sendall(pattern(area_pages * PAGE_SIZE * 2, 2))
        ud = ring.submit_recv_zc(rcv.fileno(), z.id)
        collect(ring, z, ud, r, timeout=10, refill=False)
        info["held_buffers"] = len({c.zc_off for c in r.cqes})
        info["final"] = r.final.to_dict() if r.final else None
    elif mode == "armed":
        ud = ring.submit_recv_zc(rcv.fileno(), z.id)
        info["cqes_while_armed"] = len(ring.wait_cqes(1, 0.3))
    elif mode == "queued":
        snd.sendall(pattern(200_000, 3))  # data sits in the socket, no request
    os.write(ready_w, (json.dumps(info) + "\n").encode())
    while True:  # keep going until killed
        if mode in ("receiving", "exported"):
            collect(ring, z, ud, r, timeout=1)
        else:
            time.sleep(1)


def _fd_holder(sock):
    """Forked before any ring exists: receives the exported zcrx fd and keeps it."""
    _, fds, _, _ = socket.recv_fds(sock, 16, 4)
    sock.send(
        json.dumps(
            {"fds": len(fds), "link": os.readlink(f"/proc/self/fd/{fds[0]}") if fds else None}
        ).encode()
    )
    while True:
        time.sleep(1)


def teardown_sigkill(mode="receiving", area_pages=256):
    """SIGKILL a process holding an ifq in `mode`; check pins and re-registration."""
    base = pinned_pages()
    out = {"mode": mode}
    holder_pid = hold_parent = None
    if mode == "exported":
        hold_parent, hold_child = socket.socketpair()
        holder_pid = os.fork()
        if holder_pid == 0:
            try:
                hold_parent.close()
                _fd_holder(hold_child)
            finally:
                os._exit(1)
        hold_child.close()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            _child_receiver(mode, w, area_pages, hold_parent)
        finally:
            os._exit(1)
    os.close(w)
    line = read_all_line(r, 40)
    os.close(r)
    out["ready"] = bool(line)
    out["child"] = json.loads(line) if line else None
    if holder_pid:
        hold_parent.settimeout(10)
        out["holder"] = json.loads(hold_parent.recv(4096) or b"null")
    out["pins_during"] = pinned_pages() - base
    t0 = time.monotonic()
    status = kill_and_reap(pid)
    out["child_killed_by"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    if holder_pid:
        time.sleep(1.0)
        out["pins_while_holder_alive"] = pinned_pages() - base
        kill_and_reap(holder_pid)
        hold_parent.close()
    v, waited = wait_pins(base, timeout=20)
    out["pins_after"] = v - base
    out["pins_wait_s"] = waited
    out["teardown_s"] = round(time.monotonic() - t0, 2)
    # the same registration again, and a receive through it
    again = recv_stream(size=256 * 1024, area_pages=area_pages)
    out["again"] = {k: again[k] for k in ("full_match", "bytes", "final", "pins_after_close")}
    out["pins_final"] = pinned_pages() - base
    return out


def read_all_line(fd, timeout):
    buf, deadline = b"", time.monotonic() + timeout
    while not buf.endswith(b"\n") and time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            b = os.read(fd, 4096)
            if not b:
                break
            buf += b
    return buf.decode().strip()
