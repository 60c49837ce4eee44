"""The zcnic environment of in_guest tests (like net/lib/py's NetDrvEpEnv).

    netns "remote": veth1 10.77.0.1/24 fd77::1/64  (the sender)
         |
    veth0 ── zc0 (zcnic, 4 queues, tcp-data-split on, hds-thresh 0) 10.77.0.2/24 fd77::2/64

or, for the `tapnic` environment, zc0 192.0.2.2/24 on the test NIC (eth1), the host's
scapy on the tap as the remote end.

Two lifetimes. The topology above is built once per agent process and checked before
every test (lib/topology.py). Everything a test changes on top of it
(channels, rings, ntuple rules, RSS, XDP, fault knobs, link state, MTU) goes through a
NicEnv method that registers its undo with `defer`, so the next test finds the default
configuration without a reset sweep.

Netlink goes through the kernel's own YNL (guest_tests/lib/ynl.py); a request's outcome
is (errno, extack message).
"""

import itertools
import os
import re
import socket
import subprocess
import time

import pytest

from guest_tests.lib.bpf import xdp_pass_prog
from guest_tests.lib.defer import defer
from guest_tests.lib.topology import (  # noqa: F401 - the veth kind's names
    ADDR,
    DEF_QUEUES,
    DEF_RING,
    IFNAME,
    KINDS,
    LOWER,
    NETNS,
    PEER,
    TOPOLOGY,
    missing,
)
from guest_tests.lib.ynl import load_ynl
from guest_tests.zcrx import PAGE_SIZE, Ring, ZcrxArgs
from guest_tests.zcrx.util import pinned_pages, wait_pins

FAMILY = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
FLOW_TYPE = {"ipv4": "tcp4", "ipv6": "tcp6"}
DEBUGFS = f"/sys/kernel/debug/zcnic/{IFNAME}"
XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE = 1 << 1, 1 << 2
IFF_UP = 1
EV_UD = 0xE7E7  # user_data of zcrx event CQEs

# zcnic's buffer modes (debugfs knobs; NicEnv.mode): how a queue lays frames out in the
# buffers of its page pool, each a different path through the page pool and zcrx
MODES = {
    "whole": {},  # one frame per buffer, split headers copied into a fresh skb head
    "frags2": {"frags_per_buffer": 2},  # fbnic-like: 2 frames per buffer (offsets 0, 2 KiB)
    "frags4": {"frags_per_buffer": 4},  # 4 frames per buffer, 1 KiB each
    "header_pool": {"header_pool": 1},  # bnxt-like: headers in pages of a second page pool
}


def frame_share(mode, buf=PAGE_SIZE) -> int:
    """The most payload one frame can put in one buffer of `buf` bytes in `mode`."""
    return buf // MODES[mode].get("frags_per_buffer", 1)


def sh(cmd, check=True):
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and p.returncode:
        raise RuntimeError(f"{cmd!r} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def ifindex(name=IFNAME):
    return socket.if_nametoindex(name)


def link_exists(name=IFNAME):
    return os.path.exists(f"/sys/class/net/{name}")


def ethtool_stats(dev=IFNAME):
    """`ethtool -S` as {name: int}."""
    out = {}
    for line in sh(f"ethtool -S {dev}").stdout.splitlines()[1:]:
        k, _, v = line.strip().partition(":")
        if v.strip().lstrip("-").isdigit():
            out[k.strip()] = int(v)
    return out


def qstat(stats, q, name):
    return stats.get(f"rx{q}_{name}", 0)


_PORTS = itertools.count()


def port_for(seed):
    """A TCP port for one flow: different for every call in this process."""
    return 20000 + (os.getpid() * 7 + seed + 101 * next(_PORTS)) % 20000


# ---------------------------------------------------------------------------------------
# the environment


class NicEnv:
    """zc0 with its remote end (netns `remote`, or the host over the tap: lower="tap");
    per-test changes undone by defer."""

    ifname = IFNAME
    queues_default, ring_default = DEF_QUEUES, DEF_RING

    def __init__(self, module: str, ynl: str, lower: str = "veth"):
        kind = KINDS[lower]()
        if lower not in TOPOLOGY.checked:  # once per agent: the kernel does not change under it
            why = missing(kind)
            if why:
                pytest.skip(f"kernel {os.uname().release}: {why}")
            TOPOLOGY.checked.add(lower)
        try:
            self.nl = load_ynl(ynl)
        except ImportError as e:
            pytest.skip(f"the kernel's YNL does not load: {e}")
        TOPOLOGY.ensure(module, self.nl, kind)
        self.lower, self.addr = kind.name, kind.addr  # addr: family -> (local, remote, prefix)
        self.netns = getattr(kind, "netns", None)
        self.ifindex = TOPOLOGY.ifindex
        self.lower_ifindex = ifindex(kind.name)
        left = self.wait_unbound()
        if left:
            pytest.fail(f"queues {left} of zc0 still bound by an earlier test's ring", pytrace=False)

    # -- observations --------------------------------------------------------------------

    def _header(self):
        return {"header": {"dev-index": self.ifindex}}

    def rings_get(self) -> dict:
        return self.nl.ethtool.rings_get(self._header())

    def channels_get(self) -> dict:
        return self.nl.ethtool.channels_get(self._header())

    def queues(self) -> dict:
        """netdev queue-get dump of zc0's RX queues: {queue id: attributes}."""
        qs = self.nl.netdev.queue_get({"ifindex": self.ifindex}, dump=True)
        return {q["id"]: q for q in qs if q.get("type") == "rx"}

    def irq(self, queue: int) -> int:
        """The interrupt of RX queue QUEUE: its NAPI's `irq` (netdev napi-get)."""
        napi = self.nl.netdev.napi_get({"id": self.queues()[queue]["napi-id"]})
        return napi["irq"]

    def bound_queues(self) -> list:
        return sorted(q for q, a in self.queues().items() if "io-uring" in a)

    def qstats(self) -> dict:
        """netdev qstats-get, scope queue: {RX queue id: counters}."""
        ans = self.nl.netdev.qstats_get({"ifindex": self.ifindex, "scope": "queue"}, dump=True)
        return {a["queue-id"]: a for a in ans if a.get("queue-type") == "rx"}

    def io_uring_pools(self) -> list:
        pools = self.nl.netdev.page_pool_get({}, dump=True)
        return [p for p in pools if p.get("ifindex") == self.ifindex and "io-uring" in p]

    def dmabuf_queues(self) -> dict:
        """RX queues of zc0 with a devmem binding: {queue id: the binding's dmabuf id}."""
        return {q: a["dmabuf"] for q, a in self.queues().items() if "dmabuf" in a}

    def dmabuf_pools(self) -> list:
        """page-pool-get: zc0's page pools that take their buffers from a dma-buf binding."""
        pools = self.nl.netdev.page_pool_get({}, dump=True)
        return [p for p in pools if p.get("ifindex") == self.ifindex and "dmabuf" in p]

    def wait_no_dmabuf(self, timeout=15.0) -> tuple:
        """(queues, pools) of zc0 still on a dma-buf binding once it is closed: the queue is
        restarted at once, a pool with buffers in flight outlives it until they come back."""
        deadline = time.monotonic() + timeout
        while True:
            left = (self.dmabuf_queues(), self.dmabuf_pools())
            if left == ({}, []) or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def dev_qstats(self) -> dict:
        """netdev qstats-get of the whole device."""
        return self.nl.netdev.qstats_get({"ifindex": self.ifindex}, dump=True)[0]

    def wait_no_pools(self, timeout=15.0) -> int:
        """zc0's io_uring page pools left once the ring is gone (a pool with buffers in
        flight outlives its queue until they come back)."""
        deadline = time.monotonic() + timeout
        while True:
            left = len(self.io_uring_pools())
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def stats(self) -> dict:
        return ethtool_stats(IFNAME)

    def wait_stats(self, done, timeout=10.0) -> dict:
        """`ethtool -S` once done(stats) holds (NAPI posts a new queue's buffers after
        the change that created it), or the last read after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.stats()
            if done(st) or time.monotonic() > deadline:
                return st
            time.sleep(0.05)

    def indir_table(self) -> list:
        """`ethtool -x zc0`: the indirection table as a list."""
        out = []
        for line in sh(f"ethtool -x {IFNAME}").stdout.splitlines():
            m = re.fullmatch(r"\s*\d+:((?:\s+\d+)+)\s*", line)
            if m:
                out += [int(x) for x in m.group(1).split()]
        return out

    @staticmethod
    def ntuple_list() -> str:
        return sh(f"ethtool -n {IFNAME}").stdout

    def wait_unbound(self, timeout=20.0) -> list:
        """io_uring tears an ifq down from a workqueue after its ring closes: wait for it."""
        deadline = time.monotonic() + timeout
        while True:
            b = self.bound_queues() if link_exists(IFNAME) else []
            if not b or time.monotonic() > deadline:
                return b
            time.sleep(0.1)

    # -- changes, each undone by defer ---------------------------------------------------

    def _undo(self, fn, *args, **kwargs):
        """defer(fn, ...) of a change to zc0, skipped if this zc0 is gone by then (a test
        deleted it or unloaded zcnic: the next test builds the topology again)."""

        def on_this_link():
            if link_exists(IFNAME) and ifindex() == self.ifindex:
                fn(*args, **kwargs)

        return defer(on_this_link)

    def channels(self, combined: int) -> tuple:
        """ethtool -L combined N: (errno, extack); undone when the test ends."""
        before = self.channels_get()["combined-count"]
        res = self.nl.outcome(self.nl.ethtool.channels_set, {**self._header(), "combined-count": combined})
        if res[0] == 0 and combined != before:
            self._undo(self.nl.ethtool.channels_set, {**self._header(), "combined-count": before})
        return res

    def rings(self, rx=None, split=None, hds_thresh=None) -> tuple:
        """ethtool -G rx / tcp-data-split ("on", "off") / hds-thresh: (errno, extack)."""
        want = {"rx": rx, "tcp-data-split": {"on": "enabled", "off": "disabled", None: None}[split]}
        want = {k: v for k, v in {**want, "hds-thresh": hds_thresh}.items() if v is not None}
        before = self.rings_get()
        res = self.nl.outcome(self.nl.ethtool.rings_set, {**self._header(), **want})
        if res[0] == 0:
            old = {k: before[k] for k in want}
            self._undo(self.nl.ethtool.rings_set, {**self._header(), **old})
        return res

    def keep_rings(self):
        """The ring settings as they are now, written back after the test: for changes made
        behind NicEnv's back (upstream's selftest restores tcp-data-split as "unknown",
        which zcnic takes as off)."""
        before = self.rings_get()
        keep = {k: before[k] for k in ("rx", "tcp-data-split", "hds-thresh")}
        defer(self.nl.ethtool.rings_set, {**self._header(), **keep})

    def xdp(self, fd: int, flags: int) -> tuple:
        """Attach XDP program fd (RTM_SETLINK IFLA_XDP): (errno, extack); detached after."""
        res = self._setxdp(fd, flags)
        if res[0] == 0:
            self._undo(self._setxdp, -1, flags)
        return res

    def _setxdp(self, fd, flags):
        return self.nl.outcome(
            self.nl.rtnl.setlink, {"ifi-index": self.ifindex, "xdp": {"fd": fd, "flags": flags}}
        )

    def link_state(self) -> dict:
        """{"up": IFF_UP set, "mtu": the MTU} of zc0, from sysfs."""
        with open(f"/sys/class/net/{IFNAME}/flags") as f:
            up = bool(int(f.read(), 16) & IFF_UP)
        with open(f"/sys/class/net/{IFNAME}/mtu") as f:
            return {"up": up, "mtu": int(f.read())}

    def setlink(self, up=None, mtu=None) -> tuple:
        """RTM_SETLINK: IFF_UP on or off, IFLA_MTU: (errno, extack). A link taken down is
        brought up and a changed MTU restored when the test ends."""
        mtu_before = self.link_state()["mtu"]
        res = self._setlink(up, mtu)
        if res[0] == 0 and up is False:
            self._undo(self._setlink, True, None)
        if res[0] == 0 and mtu is not None and mtu != mtu_before:
            self._undo(self._setlink, None, mtu_before)
        return res

    def jumbo(self, mtu: int) -> tuple:
        """The lower device's MTU, then zc0's (zcnic takes no MTU above its lower's), set
        to `mtu`: zc0's (errno, extack). Both back after the test, zc0's first."""
        self.lower_mtu(mtu)
        return self.setlink(mtu=mtu)

    def lower_mtu(self, mtu: int) -> None:
        """The lower device (the wire port) takes frames up to `mtu`, so zc0's MTU may be
        raised that far, as a NIC's up to its max_mtu; back after the test."""
        with open(f"/sys/class/net/{self.lower}/mtu") as f:
            lower_before = int(f.read())
        sh(f"ip link set {self.lower} mtu {mtu}")
        defer(sh, f"ip link set {self.lower} mtu {lower_before}", check=False)

    def _setlink(self, up, mtu):
        req = {"ifi-index": self.ifindex}
        if up is not None:
            req.update({"ifi-flags": IFF_UP if up else 0, "ifi-change": IFF_UP})
        if mtu is not None:
            req["mtu"] = mtu
        return self.nl.outcome(self.nl.rtnl.setlink, req)

    def add_zcnic(self, name: str, lower: str, index: int = 0) -> tuple:
        """`ip link add NAME [index INDEX] link LOWER type zcnic` as RTM_NEWLINK: (errno,
        extack); the link is deleted after the test."""
        req = {"ifname": name, "link": ifindex(lower), "linkinfo": {"kind": "zcnic"}}
        if index:
            req["ifi-index"] = index
        res = self.nl.outcome(self.nl.rtnl.newlink, req, flags=list(self.nl.create))
        if res[0] == 0:
            defer(sh, f"ip link del {name}", check=False)
        return res

    @staticmethod
    def veth_pair(name: str, peer: str):
        """A veth pair in the init netns, deleted after the test."""
        sh(f"ip link add {name} type veth peer name {peer}")
        defer(sh, f"ip link del {name}", check=False)

    def link_down(self):
        sh(f"ip link set {IFNAME} down")
        self._undo(sh, f"ip link set {IFNAME} up")

    @staticmethod
    def link_up():
        sh(f"ip link set {IFNAME} up")

    def ntuple(self, family: str, port: int, action=None, context=None) -> int:
        """ethtool -N: TCP to local `port` -> queue `action` (-1: drop) or RSS `context`;
        deleted after the test unless the device is gone (a test may remove it)."""
        target = f"context {context}" if context is not None else f"action {action}"
        out = sh(f"ethtool -N {IFNAME} flow-type {FLOW_TYPE[family]} dst-port {port} {target}").stdout
        rule = int(out.split()[-1])
        self._undo(sh, f"ethtool -N {IFNAME} delete {rule}")
        return rule

    def rss_weights(self, weights):
        sh(f"ethtool -X {IFNAME} weight {' '.join(map(str, weights))}")
        self._undo(sh, f"ethtool -X {IFNAME} default")

    def rss_context(self, start: int, equal: int) -> int:
        ctx = int(sh(f"ethtool -X {IFNAME} context new start {start} equal {equal}").stdout.split()[-1])
        self._undo(sh, f"ethtool -X {IFNAME} context {ctx} delete")
        return ctx

    @staticmethod
    def require_knobs():
        """The fault tests need zcnic's debugfs directory."""
        if not os.path.isdir(DEBUGFS):
            pytest.skip(f"no {DEBUGFS} (CONFIG_DEBUG_FS, debugfs not mounted?)")

    def knob(self, name: str) -> int:
        """A fault knob of /sys/kernel/debug/zcnic/zc0, read."""
        self.require_knobs()
        with open(f"{DEBUGFS}/{name}") as f:
            return int(f.read())

    def arm(self, name: str, value: int):
        """Arm a fault knob; disarmed when the test ends, or earlier by the handle's .exec()
        (a knob must not stay armed while a bound queue is restarted)."""
        self.require_knobs()
        _write(f"{DEBUGFS}/{name}", str(value))
        return self._undo(_write, f"{DEBUGFS}/{name}", "0")

    def _set_knob(self, knob: str, value: int):
        """One of zcnic's mode knobs (debugfs), used by every queue memory allocated from
        now on; undone after the test, every queue rebuilt in the default mode."""
        self.require_knobs()
        _write(f"{DEBUGFS}/{knob}", str(value))
        self._undo(self._default_mode, knob)

    def _default_mode(self, knob):
        _write(f"{DEBUGFS}/{knob}", "0")
        self._rebuild_queues()

    def _rebuild_queues(self):
        for rx in (self.ring_default // 2, self.ring_default):  # -G twice: every queue anew
            self.nl.ethtool.rings_set({**self._header(), "rx": rx})

    def mode(self, name: str):
        """zcnic's buffer mode `name` (MODES) on every queue: its knobs set and every queue
        rebuilt in it now (a binding's restart keeps it); the default mode back after the
        test. In header_pool mode, page-pool-get must then list two pools on each queue's
        NAPI (the knob took effect)."""
        for knob, value in MODES[name].items():
            self._set_knob(knob, value)
        if MODES[name]:
            self._rebuild_queues()
        if name == "header_pool":
            pools = self.nl.netdev.page_pool_get({}, dump=True)
            per_napi = {}
            for p in pools:
                if p.get("ifindex") == self.ifindex and "detach-time" not in p:
                    per_napi[p.get("napi-id")] = per_napi.get(p.get("napi-id"), 0) + 1
            napis = {q["napi-id"] for q in self.queues().values()}
            assert all(per_napi.get(n) == 2 for n in napis), f"not two page pools per NAPI: {per_napi}"

    @staticmethod
    def module_param(name: str) -> str:
        with open(f"/sys/module/zcnic/parameters/{name}") as f:
            return f.read().strip()

    def set_module_param(self, name: str, value):
        """A zcnic module parameter (for links not created yet); its old value is written
        back after the test."""
        path = f"/sys/module/zcnic/parameters/{name}"
        with open(path) as f:
            old = f.read().strip()
        _write(path, str(value))
        defer(_write, path, old)

    # -- zcrx ----------------------------------------------------------------------------

    def register_errno(self, queue: int, ifidx=None, **kw) -> int:
        """Register a zcrx on (ifidx, queue), close it again; 0 or the errno."""
        kw.setdefault("area_len", 64 * PAGE_SIZE)
        with Ring(8) as ring:
            args = ZcrxArgs(
                rq_entries=64,
                nodev=False,
                if_idx=self.ifindex if ifidx is None else ifidx,
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

    def rx(self, queue: int, area_pages=1024, rq_entries=1024, cq_entries=4096, **kw) -> "Rx":
        """A ring with a zcrx on zc0's `queue`, closed after the test (or by .close()).
        After the test its area is also waited for until unpinned: the skbs that hold
        its buffers may be freed late (see zcrx.util.wait_pins), and the next test
        counts pinned pages from a settled start."""
        pins = pinned_pages()
        rx = Rx(self.ifindex, queue, area_pages, rq_entries, cq_entries, **kw)
        defer(_release, rx, pins)
        return rx

    def bind_rx(self, fd: int, queues, page_size=None) -> "Binding":
        """netdev bind-rx of dma-buf `fd` to zc0's RX `queues` (devmem TCP), on a netlink
        socket of its own: the binding lives as long as that socket, closed after the test
        (or by .close()). Its .err/.extack say how the request went, .id is the dmabuf id."""
        binding = Binding(self.nl, self.ifindex, fd, queues, page_size)
        defer(binding.close)
        return binding

    def bind_tx(self, fd: int, ifindex=None) -> "Binding":
        """netdev bind-tx of dma-buf `fd` to zc0 (or `ifindex`), as bind_rx() does: the
        binding's .id goes into sendmsg()'s SCM_DEVMEM_DMABUF cmsg."""
        binding = Binding(self.nl, self.ifindex if ifindex is None else ifindex, fd, None)
        defer(binding.close)
        return binding

    def xdp_prog(self, frags=True) -> int:
        """`return XDP_PASS` loaded with bpf(); its fd, closed after the test."""
        fd = xdp_pass_prog(frags)
        defer(os.close, fd)
        return fd


def _release(rx, pins):
    rx.close()
    wait_pins(pins, at_most=True)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


class Rx:
    """A ring with a zcrx on one queue of a zcnic device."""

    def __init__(self, ifidx, queue, area_pages, rq_entries, cq_entries, **kw):
        self.ring = Ring(64, cq_entries=cq_entries)
        self.args = ZcrxArgs(
            rq_entries=rq_entries,
            area_len=area_pages * PAGE_SIZE,
            nodev=False,
            if_idx=ifidx,
            if_rxq=queue,
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


class Binding:
    """A devmem binding held by its own netlink socket: bind-rx to `queues`, or bind-tx
    (queues None); the kernel unbinds when that socket closes. A refused request closes
    it at once."""

    def __init__(self, nl, ifidx, fd, queues, page_size=None):
        self.sock = nl.socket("netdev")
        req = {"ifindex": ifidx, "fd": fd}
        if queues is not None:
            req["queues"] = [{"type": "rx", "id": q} for q in queues]
        if page_size is not None:
            req["rx-page-size"] = page_size
        self.err, self.extack, self.id = 0, {}, None
        try:
            bind = self.sock.bind_tx if queues is None else self.sock.bind_rx
            self.id = bind(req)["id"]
        except nl.NlError as e:
            self.err, self.extack = e.error, dict(e.nl_msg.extack or {})
            self.close()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
