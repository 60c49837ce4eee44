"""Guest-side zcrx scenarios on zcnic (nic/), the emulated zero-copy NIC.

Topology (made by ensure_env(), kept between tests):

    netns "remote": veth1 10.77.0.1/24 fd77::1/64     (the TCP sender)
         |
    veth0 ── zc0 (zcnic, 4 queues) 10.77.0.2/24 fd77::2/64   (zcrx receiver)

Each public function returns observations (errnos, byte counts, counters, netlink
attributes); the host-side tests in guest_tests/test_zcnic_*.py judge them.

Small helpers talk to the kernel directly: a raw generic netlink client for the
netdev family (queue-get, page-pool-get, qstats-get) and ethtool's rings/channels
(hds-thresh: the image's ethtool may be too old for it) and an rtnetlink IFLA_XDP
setter. Tests moved into the guest (in_guest) use guest_tests/lib/nic.py instead
(the kernel's YNL); what both need (constants, the remote sender, the receive
stream, the bpf() XDP_PASS loader) lives in guest_tests/lib/.
"""

import contextlib
import fcntl
import os
import socket
import struct
import subprocess
import time

from guest_tests.lib.flow import HW_DROPS, QFIELDS, Stream, pump, qdelta, summary
from guest_tests.lib.nic import (
    ADDR,
    DEBUGFS,
    DEF_QUEUES,
    DEF_RING,
    EV_UD,
    FLOW_TYPE,
    IFNAME,
    LOWER,
    NETNS,
    PEER,
    XDP_FLAGS_SKB_MODE,
    ethtool_stats,
    ifindex,
    link_exists,
    missing,
    qstat,
    sh,
)
from guest_tests.lib.peer import Peer, accept, listener
from guest_tests.zcrx import PAGE_SIZE, Ring, ZcrxArgs
from guest_tests.zcrx import uapi as U
from guest_tests.zcrx.util import (
    errno_of,
    give_back,
    pinned_pages,
    run_net_rx_on_every_cpu,
    wait_pins,
)

KNOBS = ("fail_queue_mem_alloc", "fail_queue_start", "fail_pp_alloc", "rx_drop")

# ---------------------------------------------------------------------------------------
# shell


def knob(name, value=None):
    path = f"{DEBUGFS}/{name}"
    if value is not None:
        with open(path, "w") as f:
            f.write(str(value))
    with open(path) as f:
        return int(f.read())


# ---------------------------------------------------------------------------------------
# netlink: a raw client, enough for generic netlink "do"/"dump" and RTM_SETLINK

NETLINK_ROUTE, NETLINK_GENERIC, SOL_NETLINK = 0, 16, 270
NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK = 11, 12
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_ACK_TLVS = 1, 4, 0x300, 0x200
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 1 << 15
GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 16, 3, 1, 2

# include/uapi/linux/netdev.h
NETDEV_CMD_PAGE_POOL_GET, NETDEV_CMD_QUEUE_GET, NETDEV_CMD_QSTATS_GET = 5, 10, 12
QUEUE_ATTRS = {1: "id", 2: "ifindex", 3: "type", 4: "napi-id", 5: "dmabuf", 6: "io-uring", 7: "xsk"}
PP_ATTRS = {1: "id", 2: "ifindex", 3: "napi-id", 4: "inflight", 5: "inflight-mem", 6: "detach-time"}
PP_ATTRS.update({7: "dmabuf", 8: "io-uring"})
IO_URING_ATTRS = {1: "rx-buf-len"}
QSTATS_ATTRS = {1: "ifindex", 2: "queue-type", 3: "queue-id", 4: "scope", 8: "rx-packets", 9: "rx-bytes"}
QSTATS_ATTRS.update({12: "rx-alloc-fail", 13: "rx-hw-drops", 14: "rx-hw-drop-overruns"})
QSTATS_ATTRS.update({16: "rx-csum-unnecessary", 17: "rx-csum-none", 18: "rx-csum-bad"})
NESTS = {"io-uring": IO_URING_ATTRS}
QUEUE_TYPE_RX, QSTATS_SCOPE_QUEUE = 0, 1

# include/uapi/linux/ethtool_netlink_generated.h
ETHTOOL_MSG_RINGS_GET, ETHTOOL_MSG_RINGS_SET, ETHTOOL_MSG_CHANNELS_SET = 15, 16, 18
ETHTOOL_A_HEADER_DEV_INDEX = 1
RINGS_HEADER, RINGS_RX, RINGS_TCP_DATA_SPLIT, RINGS_HDS_THRESH = 1, 6, 11, 17
RINGS_ATTRS = {2: "rx-max", 6: "rx", 11: "tcp-data-split", 17: "hds-thresh", 18: "hds-thresh-max"}
TCP_DATA_SPLIT = {"off": 1, "on": 2}

# include/uapi/linux/if_link.h, rtnetlink.h
RTM_SETLINK, IFLA_XDP, IFLA_XDP_FD, IFLA_XDP_FLAGS = 19, 43, 1, 3


def nla(atype, payload):
    hdr = struct.pack("=HH", 4 + len(payload), atype)
    return hdr + payload + b"\0" * (-len(payload) % 4)


def nla_u8(atype, v):
    return nla(atype, struct.pack("=B", v))


def nla_u32(atype, v):
    return nla(atype, struct.pack("=I", v))


def nla_s32(atype, v):
    return nla(atype, struct.pack("=i", v))


def nla_nest(atype, *attrs):
    return nla(atype | NLA_F_NESTED, b"".join(attrs))


def nla_parse(buf, names=None):
    """Attributes as {name or number: int | bytes | dict}; nests named in NESTS are parsed."""
    out, off = {}, 0
    while off + 4 <= len(buf):
        length, atype = struct.unpack_from("=HH", buf, off)
        if length < 4:
            break
        payload = buf[off + 4 : off + length]
        atype &= 0x3FFF
        name = (names or {}).get(atype, atype)
        if name in NESTS:
            out[name] = nla_parse(payload, NESTS[name])
        elif len(payload) in (1, 2, 4, 8) and isinstance(name, str):
            out[name] = int.from_bytes(payload, "little")
        else:
            out[name] = payload
        off += (length + 3) & ~3
    return out


class NetlinkError(OSError):
    pass


class Netlink:
    def __init__(self, proto=NETLINK_GENERIC):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        self.sock.bind((0, 0))
        self.seq = int(time.monotonic() * 1000) & 0xFFFFFF
        self.extack = ""  # the message of the last acknowledgement (a warning on success)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, mtype, payload, dump=False):
        """Send one request; returns the payloads of the answers (a dump's messages)."""
        self.seq += 1
        flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_DUMP if dump else 0)
        self.sock.send(struct.pack("=IHHII", 16 + len(payload), mtype, flags, self.seq, 0) + payload)
        out = []
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                length, t, f, seq, _ = struct.unpack_from("=IHHII", data, off)
                body = data[off + 16 : off + length]
                off += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if t in (NLMSG_ERROR, NLMSG_DONE):
                    err = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
                    self.extack = self._extack(t, f, body) if len(body) >= 4 else ""
                    if err:
                        raise NetlinkError(err, f"{os.strerror(err)}: {self.extack}")
                    if t == NLMSG_DONE or not dump:
                        return out
                    continue
                out.append(body)

    @staticmethod
    def _extack(t, flags, body):
        if not flags & NLM_F_ACK_TLVS:
            return ""
        if t == NLMSG_ERROR:  # int error + the original header (payload capped or not)
            orig_len = struct.unpack_from("=I", body, 4)[0]
            tlvs = body[4 + (16 if flags & 0x100 else orig_len) :]  # 0x100: NLM_F_CAPPED
        else:
            tlvs = body[4:]
        msg = nla_parse(tlvs).get(NLMSGERR_ATTR_MSG, b"")
        return msg.rstrip(b"\0").decode(errors="replace")


class Genl(Netlink):
    """A generic netlink family, resolved by name."""

    def __init__(self, family):
        super().__init__(NETLINK_GENERIC)
        ans = self.request(
            GENL_ID_CTRL,
            struct.pack("=BBH", CTRL_CMD_GETFAMILY, 1, 0)
            + nla(CTRL_ATTR_FAMILY_NAME, family.encode() + b"\0"),
        )
        self.family = struct.unpack("=H", nla_parse(ans[0][4:])[CTRL_ATTR_FAMILY_ID])[0]

    def do(self, cmd, attrs=b"", dump=False, names=None):
        msgs = self.request(self.family, struct.pack("=BBH", cmd, 1, 0) + attrs, dump)
        return [nla_parse(m[4:], names) for m in msgs]


def queues(ifname=IFNAME):
    """netdev queue-get dump of RX queues: {queue id: attributes}."""
    with Genl("netdev") as g:
        qs = g.do(NETDEV_CMD_QUEUE_GET, nla_u32(2, ifindex(ifname)), dump=True, names=QUEUE_ATTRS)
    return {q["id"]: q for q in qs if q.get("type") == QUEUE_TYPE_RX}


def queue_get(q, ifidx=None):
    """netdev queue-get (do) of RX queue q; raises NetlinkError."""
    ifidx = ifindex() if ifidx is None else ifidx
    attrs = nla_u32(2, ifidx) + nla_u32(3, QUEUE_TYPE_RX) + nla_u32(1, q)
    with Genl("netdev") as g:
        return g.do(NETDEV_CMD_QUEUE_GET, attrs, names=QUEUE_ATTRS)[0]


def bound_queues(ifname=IFNAME):
    return sorted(q for q, a in queues(ifname).items() if "io-uring" in a)


def page_pools(ifidx=None):
    """netdev page-pool-get dump, the pools of ifidx (all if None)."""
    with Genl("netdev") as g:
        pools = g.do(NETDEV_CMD_PAGE_POOL_GET, dump=True, names=PP_ATTRS)
    return [p for p in pools if ifidx is None or p.get("ifindex") == ifidx]


def io_uring_pools(ifidx=None):
    return [p for p in page_pools(ifidx) if "io-uring" in p]


def qstats(scope_queue=True, ifname=IFNAME):
    """netdev qstats-get: {queue id: counters} (scope queue) or the device's counters."""
    attrs = nla_u32(1, ifindex(ifname))
    if scope_queue:
        attrs += nla_u32(4, QSTATS_SCOPE_QUEUE)
    with Genl("netdev") as g:
        ans = g.do(NETDEV_CMD_QSTATS_GET, attrs, dump=True, names=QSTATS_ATTRS)
    if not scope_queue:
        return ans[0]
    return {a["queue-id"]: a for a in ans if a.get("queue-type") == QUEUE_TYPE_RX}


def _ethtool_header(ifidx):
    return nla_nest(1, nla_u32(ETHTOOL_A_HEADER_DEV_INDEX, ifidx))


def rings_get(ifname=IFNAME):
    with Genl("ethtool") as g:
        return g.do(ETHTOOL_MSG_RINGS_GET, _ethtool_header(ifindex(ifname)), names=RINGS_ATTRS)[0]


def rings_set(rx=None, split=None, hds_thresh=None, ifname=IFNAME):
    """ethtool rings-set over netlink; returns 0 or the errno (message in LAST_EXTACK)."""
    attrs = _ethtool_header(ifindex(ifname))
    if rx is not None:
        attrs += nla_u32(RINGS_RX, rx)
    if split is not None:
        attrs += nla_u8(RINGS_TCP_DATA_SPLIT, TCP_DATA_SPLIT[split])
    if hds_thresh is not None:
        attrs += nla_u32(RINGS_HDS_THRESH, hds_thresh)
    return _nl_errno(lambda g: g.do(ETHTOOL_MSG_RINGS_SET, attrs))


LAST_EXTACK = [""]


def _nl_errno(fn):
    with Genl("ethtool") as g:
        try:
            fn(g)
            LAST_EXTACK[0] = g.extack
            return 0
        except NetlinkError as e:
            LAST_EXTACK[0] = str(e)
            return e.errno


def xdp_set(fd, flags=0, ifname=IFNAME):
    """RTM_SETLINK IFLA_XDP {fd, flags}; fd -1 detaches. Returns 0 or the errno."""
    ifinfo = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, ifindex(ifname), 0, 0)
    attrs = nla_nest(IFLA_XDP, nla_s32(IFLA_XDP_FD, fd), nla_u32(IFLA_XDP_FLAGS, flags))
    return _setlink(ifinfo + attrs)


def _setlink(payload):
    with Netlink(NETLINK_ROUTE) as nl:
        try:
            nl.request(RTM_SETLINK, payload)
            LAST_EXTACK[0] = nl.extack
            return 0
        except NetlinkError as e:
            LAST_EXTACK[0] = str(e)
            return e.errno


# ---------------------------------------------------------------------------------------
# the environment


def _ensure_topology(module):
    if not os.path.exists("/sys/module/zcnic"):
        sh(f"insmod {module}")
    if not os.path.exists(f"/run/netns/{NETNS}"):
        sh(f"ip netns add {NETNS}")
    if not link_exists(LOWER):
        sh(f"ip link del {LOWER}", check=False)
        sh(f"ip -n {NETNS} link del {PEER}", check=False)
        sh(f"ip link add {LOWER} type veth peer name {PEER} netns {NETNS}")
    if link_exists(IFNAME) and not os.path.exists(f"/sys/class/net/{IFNAME}/lower_{LOWER}"):
        sh(f"ip link del {IFNAME}")  # another test's zc0 (e.g. on eth1)
    if not link_exists(IFNAME):
        sh(f"ip link add {IFNAME} link {LOWER} type zcnic")
    sh(f"ip link set {LOWER} up && ip link set {IFNAME} up")
    sh(f"ip -n {NETNS} link set lo up && ip -n {NETNS} link set {PEER} up")
    have = sh(f"ip -o addr show dev {IFNAME}").stdout
    peer_have = sh(f"ip -n {NETNS} -o addr show dev {PEER}").stdout
    for local, remote, plen in ADDR.values():
        if f" {local}/" not in have:
            sh(f"ip addr add {local}/{plen} dev {IFNAME} nodad")
        if f" {remote}/" not in peer_have:
            sh(f"ip -n {NETNS} addr add {remote}/{plen} dev {PEER} nodad")


def _reset_config():
    """Back to zcnic's defaults: knobs off, no XDP, the lower device's MTU, no ntuple rules,
    no RSS contexts, default RSS, 4 queues, ring 256, header split on with hds-thresh 0."""
    for k in KNOBS if os.path.isdir(DEBUGFS) else ():
        knob(k, 0)
    xdp_set(-1, XDP_FLAGS_SKB_MODE)
    with open(f"/sys/class/net/{LOWER}/mtu") as f:
        sh(f"ip link set {IFNAME} mtu {f.read().strip()} up")
    for line in sh(f"ethtool -n {IFNAME}").stdout.splitlines():
        if line.startswith("Filter:"):
            sh(f"ethtool -N {IFNAME} delete {line.split()[1]}")
    for c in range(1, 8):
        sh(f"ethtool -X {IFNAME} context {c} delete", check=False)
    sh(f"ethtool -X {IFNAME} default")
    r = rings_get()
    if r.get("rx") != DEF_RING:
        rings_set(rx=DEF_RING)
    sh(f"ethtool -L {IFNAME} combined {DEF_QUEUES}", check=False)
    err = rings_set(split="on", hds_thresh=0)
    if err:
        raise RuntimeError(f"header split on {IFNAME}: {LAST_EXTACK[0]}")


def wait_unbound(timeout=20.0, ifname=IFNAME):
    """io_uring tears an ifq down from a workqueue after its ring closes: wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        b = bound_queues(ifname) if link_exists(ifname) else []
        if not b or time.monotonic() > deadline:
            return b
        time.sleep(0.1)


def ensure_env(module, reset=True):
    """Idempotent: the topology exists, no queue is bound, zc0 is in its default config."""
    t0 = time.monotonic()
    why = missing()
    if why:
        return {"skip": why}
    _ensure_topology(module)
    left = wait_unbound()
    if reset:
        _reset_config()
    return {
        "ifindex": ifindex(),
        "lower_ifindex": ifindex(LOWER),
        "release": os.uname().release,
        "bound_left": left,
        "pins": pinned_pages(),
        "ethtool": sh("ethtool --version").stdout.strip(),
        "secs": round(time.monotonic() - t0, 2),
    }


# ---------------------------------------------------------------------------------------
# traffic: a sender in the remote netns, a zcrx receiver here


def ntuple(family, port, queue):
    """ethtool -N: TCP to local port -> queue; returns the rule id."""
    out = sh(f"ethtool -N {IFNAME} flow-type {FLOW_TYPE[family]} dst-port {port} action {queue}").stdout
    return int(out.split()[-1]) if "rule with ID" in out else None


def rss_weights(weights):
    sh(f"ethtool -X {IFNAME} weight {' '.join(map(str, weights))}")


class Rx:
    """A ring with a zcrx on zc0's queue (or NODEV when queue is None)."""

    def __init__(self, queue, area_pages=1024, rq_entries=1024, event_mask=0, cq_entries=4096, **kw):
        self.ring = Ring(64, cq_entries=cq_entries)
        self.args = ZcrxArgs(
            rq_entries=rq_entries,
            area_len=area_pages * PAGE_SIZE,
            nodev=queue is None,
            if_idx=0 if queue is None else ifindex(),
            if_rxq=queue or 0,
            event_mask=event_mask,
            event_user_data=EV_UD,
            **kw,
        )
        try:
            self.z = self.ring.register_zcrx(self.args)
        except OSError:
            self.close()
            raise

    def close(self):
        if self.ring:
            self.ring.close()
            self.ring = None
        self.args.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def register_errno(queue, ifidx=None, **kw):
    """Register a zcrx on (ifidx, queue), close it again; 0 or the errno."""
    ring = Ring(8)
    args = ZcrxArgs(
        rq_entries=64,
        area_len=64 * PAGE_SIZE,
        nodev=False,
        if_idx=ifindex() if ifidx is None else ifidx,
        if_rxq=queue,
        **kw,
    )
    try:
        ring.register_zcrx(args)
        return 0
    except OSError as e:
        return e.errno
    finally:
        ring.close()
        args.close()


def _port(seed):
    return 20000 + (os.getpid() * 7 + seed) % 20000


def transfer(
    family="ipv4",
    bind=1,
    steer=1,
    size=1 << 20,
    rss=None,
    area_pages=1024,
    event_mask=0,
    knobs=None,
    probe=False,
):
    """Bind a zcrx to queue `bind`, steer one TCP flow to queue `steer` (ntuple, or RSS weights),
    receive `size` bytes with RECV_ZC. Observations: payload, zcrx stats, per-queue counters
    (ethtool -S deltas), netlink queue/page-pool state while bound, pins."""
    pins0 = pinned_pages()
    port = _port(size & 0xFFFF)
    lst = listener(family, port)
    peer = Peer(family, port, size, seed=port)
    out = {"port": port}
    try:
        if rss is not None:
            rss_weights(rss)
        else:
            out["rule"] = ntuple(family, port, steer)
        for k, v in (knobs or {}).items():
            knob(k, v)
        with Rx(bind, area_pages=area_pages, event_mask=event_mask) as rx:
            s0 = ethtool_stats()  # after the bind: it restarts the queue, which resets its counters
            qs0 = qstats() if probe else None
            if probe:
                out["queue_get"] = queue_get(bind)
                out["bound"] = bound_queues()
                out["pools"] = [_pp(p) for p in io_uring_pools(ifindex())]
                out["pins_bound"] = pinned_pages() - pins0
            peer.start()
            conn = accept(lst, peer)
            st = Stream()
            t0 = time.monotonic()
            ud = rx.ring.submit_recv_zc(conn.fileno(), rx.z.id)
            pump(rx, conn.fileno(), st, ud, timeout=120)
            out["secs"] = round(time.monotonic() - t0, 2)
            conn.close()
            out.update(summary(st, peer.data, rx))
            s1 = ethtool_stats()
            out["qdelta"] = qdelta(s0, s1)
            if probe:  # per-queue growth during the transfer
                out["qstats"] = {q: _grown(qs0.get(q, {}), a) for q, a in qstats().items()}
        out["peer"] = peer.result()
    finally:
        peer.kill()
        lst.close()
        for k in knobs or {}:
            knob(k, 0)
        if out.get("rule") is not None:
            sh(f"ethtool -N {IFNAME} delete {out['rule']}", check=False)
        if rss is not None:
            sh(f"ethtool -X {IFNAME} default", check=False)
    out["bound_after"] = wait_unbound()
    out["pins_after"] = wait_pins(pins0)[0] - pins0
    out["pools_after"] = wait_no_pools()
    return out


def wait_no_pools(timeout=15.0):
    """zc0's io_uring page pools left once the ring is gone (a pool with buffers in flight
    outlives its queue until they come back)."""
    deadline = time.monotonic() + timeout
    while True:
        left = len(io_uring_pools(ifindex()))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _grown(before, after):
    return {k: v - before.get(k, 0) for k, v in after.items() if k.startswith("rx-")}


def _pp(p):
    return {k: (v if isinstance(v, (int, dict)) else v.hex()) for k, v in p.items()}


# ---------------------------------------------------------------------------------------
# the refill ring runs dry: buffers held by the user


def refill_dry(family="ipv4", size=1 << 20, area_pages=128, ring=64, idle=1.0, queue=1):
    """Hold every buffer: the NIC runs out of posted buffers and drops (no_buf_drops), the
    io_uring provider fails allocations (ZCRX_EVENT_ALLOC_FAIL, armed at registration).
    Then return them all: TCP retransmits and the stream completes intact."""
    pins0 = pinned_pages()
    assert rings_set(rx=ring) == 0, LAST_EXTACK[0]
    port = _port(size & 0xFFFF)
    lst = listener(family, port)
    peer = Peer(family, port, size, seed=port)
    out = {}
    try:
        rule = ntuple(family, port, queue)
        with Rx(queue, area_pages=area_pages, rq_entries=256, event_mask=1 << U.ZCRX_EVENT_ALLOC_FAIL) as rx:
            z = rx.z
            out["arm_before_fired"] = errno_of(z.arm_event, U.ZCRX_EVENT_ALLOC_FAIL)
            s0, d0 = ethtool_stats(), qstats()[queue]
            peer.start()
            conn = accept(lst, peer)
            fd = conn.fileno()
            st = Stream()
            ud = rx.ring.submit_recv_zc(fd, z.id)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # hold everything until the NIC drops
                ud = pump(rx, fd, st, ud, refill=False, idle=idle, timeout=10)
                s1 = ethtool_stats()
                if qstat(s1, queue, "no_buf_drops") > qstat(s0, queue, "no_buf_drops") and st.events:
                    break
            # TCP keeps retransmitting into the dry ring, so the drop counters move while
            # they are read: qstats (netlink) between two ethtool -S reads of the same
            # counters, so each bound holds whatever arrives in between.
            s1, d1, s2 = ethtool_stats(), qstats()[queue], ethtool_stats()
            out["held_bytes"] = len(st.data)
            out["held_buffers"] = len(st.held)
            out["events_while_dry"] = list(st.events)
            out["dry"] = {f: qstat(s1, queue, f) - qstat(s0, queue, f) for f in QFIELDS + HW_DROPS}
            out["dry"]["posted"] = qstat(s1, queue, "posted")
            out["dry_later"] = {f: qstat(s2, queue, f) - qstat(s0, queue, f) for f in HW_DROPS}
            out["dry_qstats"] = {k: d1[k] - d0.get(k, 0) for k in ("rx-hw-drops", "rx-alloc-fail")}
            out["arm_after_fired"] = errno_of(z.arm_event, U.ZCRX_EVENT_ALLOC_FAIL)
            give_back(z, st.held)
            st.held = []
            t0 = time.monotonic()
            pump(rx, fd, st, ud, timeout=120)
            out["recovery_secs"] = round(time.monotonic() - t0, 2)
            conn.close()
            out.update(summary(st, peer.data, rx))
        out["peer"] = peer.result()
        sh(f"ethtool -N {IFNAME} delete {rule}", check=False)
    finally:
        peer.kill()
        lst.close()
        rings_set(rx=DEF_RING)
    out["bound_after"] = wait_unbound()
    out["pins_after"] = wait_pins(pins0)[0] - pins0
    return out


# ---------------------------------------------------------------------------------------
# a socket whose data lands on a queue bound to another ifq


def foreign_ifq(family="ipv4", size=256 << 10):
    """zcrx A on queue 1, zcrx B on queue 2 (same ring); the flow goes to queue 2 but
    RECV_ZC names A: its net_iovs belong to B's pool, so A must refuse (EFAULT)."""
    port = _port(size & 0xFFFF)
    lst = listener(family, port)
    peer = Peer(family, port, size, seed=port)
    out = {}
    try:
        rule = ntuple(family, port, 2)
        with Rx(1, area_pages=512) as rx:
            args_b = ZcrxArgs(
                rq_entries=1024, area_len=512 * PAGE_SIZE, nodev=False, if_idx=ifindex(), if_rxq=2
            )
            zb = rx.ring.register_zcrx(args_b)
            out["bound"] = bound_queues()
            peer.start()
            conn = accept(lst, peer)
            fd = conn.fileno()
            st = Stream()
            ud = rx.ring.submit_recv_zc(fd, rx.z.id)
            pump(rx, fd, st, ud, timeout=10, idle=3)
            out["wrong_ifq"] = {"final": st.final, "bytes": len(st.data), "stats": rx.z.stats()}
            # the right ifq takes the same socket's data, zero copy
            rx_b = _View(rx.ring, zb)
            st_b = Stream()
            ud = rx.ring.submit_recv_zc(fd, zb.id)
            pump(rx_b, fd, st_b, ud, timeout=60)
            conn.close()
            out["right_ifq"] = summary(st_b, peer.data, rx_b)
            args_b.close()
        out["peer"] = peer.result()
        sh(f"ethtool -N {IFNAME} delete {rule}", check=False)
    finally:
        peer.kill()
        lst.close()
    out["bound_after"] = wait_unbound()
    return out


class _View:
    def __init__(self, ring, z):
        self.ring, self.z = ring, z


# ---------------------------------------------------------------------------------------
# removal: link delete / module unload while a zcrx is bound and data flows


def teardown(what="link_del", bound=True, hold=True, family="ipv4", queue=1):
    """An endless sender steered to `queue` (bound by a zcrx when `bound`); the receiver has
    some data (and holds its buffers when `hold`); then `what` removes the device."""
    pins0 = pinned_pages()
    port = _port(0x7E)
    lst = listener(family, port)
    peer = Peer(family, port, 0, seed=port, endless=True)
    out = {"ifindex": ifindex()}
    rx = conn = None
    try:
        ntuple(family, port, queue)
        if bound:
            rx = Rx(queue, area_pages=1024, event_mask=1 << U.ZCRX_EVENT_ALLOC_FAIL)
            out["pins_bound"] = pinned_pages() - pins0
            # by id: once the device goes, its pools that live on are re-homed to loopback
            # and page-pool-get no longer names the old ifindex
            out["pool_ids"] = sorted(p["id"] for p in io_uring_pools(out["ifindex"]))
        peer.start()
        conn = accept(lst, peer)
        fd = conn.fileno()
        st = Stream()
        if bound:
            ud = rx.ring.submit_recv_zc(fd, rx.z.id)
            pump(rx, fd, st, ud, refill=not hold, until=512 << 10, timeout=30)
            out["received_before"] = len(st.data)
            out["held"] = len(st.held)
            # Removal restarts the queue without the provider first: frames
            # arriving in that window legitimately take the copy path.
            out["stats_before"] = rx.z.stats()
        else:
            conn.settimeout(30)
            got = 0
            while got < 512 << 10:
                got += len(conn.recv(1 << 16))
            out["received_before"] = got
        cmd = {
            "link_del": f"ip link del {IFNAME}",
            "lower_del": f"ip link del {LOWER}",
            "rmmod": "rmmod zcnic",
        }[what]
        t0 = time.monotonic()
        p = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120)
        out["cmd"] = {"rc": p.returncode, "stderr": p.stderr.strip(), "secs": round(time.monotonic() - t0, 2)}
        out["link_gone"] = not link_exists(IFNAME)
        out["module_loaded"] = os.path.exists("/sys/module/zcnic")
        out["register_again"] = register_errno(queue, ifidx=out["ifindex"])
        try:
            queue_get(queue, out["ifindex"])
            out["queue_get"] = 0
        except NetlinkError as e:
            out["queue_get"] = e.errno
        if bound:
            z = rx.z
            more = Stream()
            pump(rx, fd, more, ud, idle=1.0, timeout=5)
            out["after"] = {"cqes": more.cqes, "final": more.final, "events": more.events}
            out["add_area"] = errno_of(z.add_area, 4 * PAGE_SIZE)
            give_back(z, st.held, flush=False)
            out["flush"] = errno_of(z.flush)
            out["stats"] = z.stats()
            out["pools_left"] = [_pp(pp) for pp in page_pools() if pp["id"] in out["pool_ids"]]
            rx.close()
            rx = None
        # abortive close: an orphaned FIN-WAIT socket would keep out-of-order skbs (and so
        # net_iovs, the page pool, the ifq and its pinned area) until its FIN times out
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        conn = None
    finally:
        if rx:
            rx.close()
        if conn:
            conn.close()
        peer.kill()
        lst.close()
    out["pins_after"], out["pins_wait_s"] = wait_pins(pins0)
    out["pins_after"] -= pins0
    out["io_uring_pools_after"] = [_pp(pp) for pp in io_uring_pools()]
    out["pools_after"] = [_pp(pp) for pp in page_pools() if pp["id"] in out.get("pool_ids", ())]
    return out


def _irqs(match):
    """IRQ numbers whose /proc/interrupts line names MATCH."""
    with open("/proc/interrupts") as f:
        return [int(ln.split(":")[0]) for ln in f if match in ln and ln.split(":")[0].strip().isdigit()]


def _set_irq_cpus(irqs, cpus):
    """Point IRQS at CPUS; returns their previous smp_affinity_list, for putting back."""
    old = {}
    for irq in irqs:
        path = f"/proc/irq/{irq}/smp_affinity_list"
        try:
            with open(path) as f:
                old[irq] = f.read().strip()
            with open(path, "w") as f:
                f.write(cpus)
        except OSError:  # some interrupts cannot move (per-CPU, managed)
            old.pop(irq, None)
    return old


def _irq_counts(cpu):
    """{interrupt: count on CPU} from /proc/interrupts."""
    out = {}
    with open("/proc/interrupts") as f:
        ncpu = len(f.readline().split())
        for line in f:
            fields = line.split()
            if len(fields) > ncpu and fields[cpu + 1].isdigit():
                out[" ".join([fields[0]] + fields[ncpu + 1 :])] = int(fields[cpu + 1])
    return out


def _net_rx_counts():
    """NET_RX softirqs run so far, per CPU (/proc/softirqs)."""
    with open("/proc/softirqs") as f:
        for line in f:
            if line.split(":")[0].strip() == "NET_RX":
                return [int(v) for v in line.split()[1:]]
    return []


WQ_CPUMASK = "/sys/devices/virtual/workqueue/cpumask"
TCP_CLOSE_WAIT, SO_RCVBUFFORCE, SIOCINQ = 8, 33, 0x541B


def _tcp_state(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def _set_affinity(pid, cpus):
    try:
        os.sched_setaffinity(pid, cpus)
        return True
    except OSError:  # gone, or a per-CPU kernel thread
        return False


def _pin_tasks(cpus):
    """Every task that may move (not this one) onto CPUS; returns {pid: old affinity}."""
    old = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
        try:
            was = os.sched_getaffinity(pid)
        except OSError:
            continue
        if _set_affinity(pid, cpus):
            old[pid] = was
    return old


def _sysctl_set(name, value):
    """Write /proc/sys/NAME; returns the old value (None where there is no such knob)."""
    try:
        with open(f"/proc/sys/{name}") as f:
            old = f.read().strip()
        with open(f"/proc/sys/{name}", "w") as f:
            f.write(value)
    except OSError:
        return None
    return old


def _router_solicitations(value):
    """net.ipv6.conf.*.router_solicitations of every device here and in netns `remote`
    set to VALUE (an int, or the {(netns, dev): old} this returned); returns the old ones."""
    old = {}
    for ns in ("", NETNS):
        prefix = f"ip netns exec {ns} " if ns else ""
        listing = sh(f"{prefix}sysctl -a -r 'net.ipv6.conf.*.router_solicitations'", check=False).stdout
        for line in listing.splitlines():
            key, _, val = line.partition(" = ")
            new = value.get((ns, key), int(val)) if isinstance(value, dict) else value
            old[(ns, key)] = int(val)
            sh(f"{prefix}sysctl -q -w {key}={new}", check=False)
    return old


def deferred_free(family="ipv4", queue=1, size=256 << 10, window=3.0, attempts=3):
    """Receive on one CPU what zc0's NAPI allocated on another, then close everything and
    leave the allocating CPU without NET_RX: are the area's pages still pinned?

    The peer (netns `remote`) runs on tx_cpu, so veth and zc0's NAPI run there and every
    skb is allocated there. The receiver, the guest's virtio interrupts and all unbound
    workqueues (io_uring's ring exit, which restarts the queue) run on rx_cpu. The whole
    stream and its FIN are queued on the socket before RECV_ZC reads a byte, so every skb
    is consumed on rx_cpu after tx_cpu's last NET_RX of the transfer, and TCP hands it to
    tx_cpu's defer list (skb_attempt_defer_free) with its net_iovs. The socket is reset
    (nothing more for tx_cpu to receive), the ring closed, the peer reaped; then the pins
    and the NET_RX softirqs per CPU are watched for `window` seconds (and when they came
    back unaided), then every CPU is made to run NET_RX.

    An attempt in which tx_cpu ran NET_RX anyway (from the first read to the window's end)
    is repeated, up to `attempts` times: the outcome is only determined while it did not."""
    cpus = set(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return {"skip": "needs two CPUs"}
    rx_cpu, tx_cpu = sorted(cpus)[:2]
    out = {"rx_cpu": rx_cpu, "tx_cpu": tx_cpu, "size": size, "window_s": window, "attempts": []}
    out["skb_defer_max"] = int(sh("sysctl -n net.core.skb_defer_max").stdout)
    with contextlib.ExitStack() as undo:
        _quiet_cpu(undo, rx_cpu)
        for i in range(attempts):
            a = _deferred_free_once(family, queue, size, window, rx_cpu, tx_cpu, _port(0x7F + i))
            out["attempts"].append(a)
            if a["tx_net_rx"] == 0:
                break
    out.update(out["attempts"][-1])
    return out


def _quiet_cpu(undo, cpu):
    """Leave every other CPU to the test: nothing else of ours may make them run NET_RX.
    SSH to this guest arrives over virtio (its interrupts) and leaves from sshd (virtio's
    TX NAPI runs on the sending CPU); IPv6 router solicitations are sent from timers; an
    idle CPU expires other CPUs' timers (timer migration: the SSH socket's delayed ACK
    went out on the other CPU); unbound workqueues (io_uring's ring exit, which restarts
    the queue and so runs its NAPI) run anywhere. Each step registers its undo."""
    irqs = _set_irq_cpus(_irqs("virtio"), str(cpu))
    undo.callback(lambda: [_set_irq_cpus([irq], old) for irq, old in irqs.items()])
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    undo.callback(os.sched_setaffinity, 0, cpus)
    tasks = _pin_tasks({cpu})
    undo.callback(lambda: [_set_affinity(pid, old) for pid, old in tasks.items()])
    old = _sysctl_set("kernel/timer_migration", "0")
    if old is not None:
        undo.callback(_sysctl_set, "kernel/timer_migration", old)
    with open(WQ_CPUMASK) as f:
        wq_mask = f.read().strip()
    undo.callback(_write, WQ_CPUMASK, wq_mask)
    _write(WQ_CPUMASK, f"{1 << cpu:x}")  # a hex mask
    rs = _router_solicitations(0)
    undo.callback(_router_solicitations, rs)
    # x86 moves an interrupt when it next fires, still on the old CPU: make the SSH
    # interface receive something now (the host's ACK of this line), not later
    print("deferred_free: interrupts, tasks and unbound work moved to CPU", cpu, flush=True)
    time.sleep(0.5)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _delta(a, b):
    return [y - x for x, y in zip(a, b, strict=True)]


def _deferred_free_once(family, queue, size, window, rx_cpu, tx_cpu, port):
    pins0 = pinned_pages()
    lst = listener(family, port)
    lst.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 * size)  # the whole stream queues unread
    peer = Peer(family, port, size, seed=port)
    out = {}
    rx = conn = rule = None
    try:
        os.sched_setaffinity(peer.pid, {tx_cpu})
        rule = ntuple(family, port, queue)
        rx = Rx(queue, area_pages=1024)
        pool_ids = sorted(p["id"] for p in io_uring_pools(ifindex()))
        out["pool_ids"] = pool_ids
        peer.start()
        conn = accept(lst, peer)
        deadline = time.monotonic() + 60
        while _tcp_state(conn) != TCP_CLOSE_WAIT and time.monotonic() < deadline:
            time.sleep(0.05)
        out["fin_before_read"] = _tcp_state(conn) == TCP_CLOSE_WAIT
        # the ACK of the FIN waits for the delayed-ACK timer, armed on tx_cpu: send it now,
        # from here (rx_cpu), and give timers armed during the transfer time to run out
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        time.sleep(0.5)
        out["queued_before_read"] = struct.unpack("i", fcntl.ioctl(conn, SIOCINQ, b"\0" * 4))[0]
        net_rx0 = _net_rx_counts()
        irq0 = _irq_counts(tx_cpu)
        st = Stream()
        ud = rx.ring.submit_recv_zc(conn.fileno(), rx.z.id)
        pump(rx, conn.fileno(), st, ud, timeout=60)
        out["received"], out["final"] = len(st.data), st.final
        out["match"] = bytes(st.data) == peer.data
        out["copy_count"] = rx.z.stats()["copy_count"]
        net_rx_read = _net_rx_counts()
        # RST, not FIN: nothing more crosses the wire, so the peer's CPU gets no NET_RX
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        conn = None
        rx.close()
        rx = None
        out["peer"] = peer.result(30)
        net_rx_closed = _net_rx_counts()
        t0 = time.monotonic()
        out["pins_idle_wait_s"] = None  # seconds until the area was unpinned unaided, if it was
        while time.monotonic() - t0 < window:
            if pinned_pages() == pins0:
                out["pins_idle_wait_s"] = round(time.monotonic() - t0, 2)
                break
            time.sleep(0.1)
        net_rx = _delta(net_rx0, _net_rx_counts())
        irq1 = _irq_counts(tx_cpu)
        out["irqs_on_tx_cpu"] = {k: v - irq0.get(k, 0) for k, v in irq1.items() if v != irq0.get(k, 0)}
        out["net_rx_since_read"] = net_rx  # per CPU, from the first read to the window's end
        out["net_rx_phases"] = [_delta(net_rx0, net_rx_read), _delta(net_rx_read, net_rx_closed)]
        out["tx_net_rx"] = net_rx[tx_cpu]
        out["pins_idle"] = pinned_pages() - pins0
        out["pools_idle"] = [_pp(p) for p in page_pools() if p["id"] in pool_ids]
        out["cpus_kicked"] = run_net_rx_on_every_cpu()
        out["pins_after_kick"], out["pins_kick_wait_s"] = wait_pins(pins0, timeout=15, kick_after=None)
        out["pins_after_kick"] -= pins0
        out["pools_after_kick"] = [_pp(p) for p in page_pools() if p["id"] in pool_ids]
    finally:
        if rx:
            rx.close()
        if conn:
            conn.close()
        peer.kill()
        lst.close()
        if rule is not None:
            sh(f"ethtool -N {IFNAME} delete {rule}", check=False)
    return out


#
