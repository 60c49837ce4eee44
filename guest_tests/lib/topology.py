"""zc0's topology, built once per agent process and checked before every test
(lib/nic.py NicEnv): what zc0 is stacked on, and where its remote end is.

    veth: veth0, its peer veth1 in netns "remote" (10.77.0.1, fd77::1): the sender is a
          guest process there (lib/peer.py); like NetDrvEpEnv's REMOTE_TYPE=netns.
    tap:  the test NIC (the multi-queue virtio-net with contract.TEST_MAC); the remote end
          is the host, scapy on the tap (host/traffic.py), at contract.TEST_PEER_IP.

Each kind says how to build its part (before zc0 is added on top, and after), how to
see that it is still there, and zc0's addresses: family -> (local, remote, prefix).
Topology builds zc0 on one kind with its own undo list; found missing or changed (a
test deleted zc0, zc0 is not in its default configuration), it is undone and built
again.
"""

import atexit
import errno
import os
import socket
import subprocess
import sys

from guest_tests.contract import (
    TEST_IP,
    TEST_IP6,
    TEST_MAC,
    TEST_PEER_IP,
    TEST_PEER_IP6,
    TEST_PREFIX,
    TEST_PREFIX6,
)
from guest_tests.lib.ynl import Ynl
from guest_tests.zcrx import PAGE_SIZE, Ring

IFNAME = "zc0"
DEF_QUEUES, DEF_RING = 4, 256  # zcnic's defaults, what every test finds

LOWER, PEER, NETNS = "veth0", "veth1", "remote"
ADDR = {"ipv4": ("10.77.0.2", "10.77.0.1", 24), "ipv6": ("fd77::2", "fd77::1", 64)}


def _sh(cmd, check=True):
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and p.returncode:
        raise RuntimeError(f"{cmd!r} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


class Veth:
    kind = "veth"
    name, peer, netns = LOWER, PEER, NETNS
    addr = ADDR

    def missing(self):
        # Creating a pair works for built-in veth and loads a modular one.
        probe = "ip link add zcl-vprobe0 type veth peer name zcl-vprobe1 && ip link del zcl-vprobe0"
        return "no veth (CONFIG_VETH)" if _sh(probe, check=False).returncode else None

    def present(self) -> bool:
        return os.path.exists(f"/run/netns/{NETNS}") and os.path.exists(f"/sys/class/net/{LOWER}")

    def build(self, do):
        """Before zc0: DO(command, undo command) registers each step's undo."""
        _sh(f"ip link del {LOWER}; ip netns del {NETNS}; true", check=False)  # an older fixture's
        do(f"ip netns add {NETNS}", f"ip netns del {NETNS}")
        do(f"ip link add {LOWER} type veth peer name {PEER} netns {NETNS}", f"ip link del {LOWER}")
        _sh(f"ip link set {LOWER} up")

    def finish(self):
        """After zc0: the remote end's link and addresses."""
        _sh(f"ip -n {NETNS} link set lo up && ip -n {NETNS} link set {PEER} up")
        for _, remote, plen in ADDR.values():
            _sh(f"ip -n {NETNS} addr add {remote}/{plen} dev {PEER} nodad")


class Tap:
    kind = "tap"
    addr = {"ipv4": (TEST_IP, TEST_PEER_IP, TEST_PREFIX), "ipv6": (TEST_IP6, TEST_PEER_IP6, TEST_PREFIX6)}

    def __init__(self):
        self.name = test_nic()

    def missing(self):
        return None if self.name else f"no test NIC (MAC {TEST_MAC}): the host has no tap"

    def present(self) -> bool:
        return os.path.exists(f"/sys/class/net/{self.name}")

    def build(self, do):
        _sh(f"ip link set {self.name} up")  # the machine's own NIC: stays, and stays up

    def finish(self):
        pass


def test_nic():
    """The guest's name of the test NIC (eth1 today), found by its MAC; None without one."""
    for name in sorted(os.listdir("/sys/class/net")):
        if not os.path.exists(f"/sys/class/net/{name}/device"):  # zc0 on it may share its MAC
            continue
        try:
            with open(f"/sys/class/net/{name}/address") as f:
                if f.read().strip() == TEST_MAC:
                    return name
        except OSError:
            continue
    return None


KINDS = {"veth": Veth, "tap": Tap}


def missing(lower=None):
    """Why this kernel cannot run the zcnic tests (None if it can), in kernel terms."""
    if not os.path.exists("/proc/self/ns/net"):
        return "no network namespaces (CONFIG_NET_NS)"
    why = (lower or Veth()).missing()
    if why:
        return why
    if not os.path.exists("/proc/sys/net/ipv6"):
        return "no IPv6 (CONFIG_IPV6)"
    with Ring(8) as ring:  # a NODEV zcrx registers on any kernel with CONFIG_IO_URING_ZCRX
        try:
            ring.register_zcrx(rq_entries=8, area_len=PAGE_SIZE)
        except OSError as e:
            err = errno.errorcode.get(e.errno)
            return f"IORING_REGISTER_ZCRX_IFQ fails with {err} (CONFIG_IO_URING_ZCRX?)"
    return None


class Topology:
    """zc0 on its lower (veth0, veth1 in netns remote; or the test NIC), addresses: built
    once, checked per test; asked for the other lower, it is built again on that one."""

    def __init__(self):
        self.undo: list = []  # commands, run last first by teardown()
        self.ifindex = None
        self.lower = None  # a lib/lowers.py kind, while built
        self.checked = set()  # lower kinds whose kernel support was checked

    def _do(self, cmd, undo=None):
        _sh(cmd)
        if undo:
            self.undo.append(undo)

    def changed(self, nl: Ynl, kind: str) -> str:
        """What is not as built ("" if it is all ours, on that kind of lower, present and in
        zcnic's default configuration): what tests, or upstream's selftest, left behind."""
        lower = self.lower
        if self.ifindex is None or lower is None or lower.kind != kind:
            return "first" if self.ifindex is None else f"was on {lower.name}"
        if not lower.present() or not os.path.exists(f"/sys/class/net/{IFNAME}/lower_{lower.name}"):
            return f"{IFNAME} on {lower.name} gone"
        if socket.if_nametoindex(IFNAME) != self.ifindex:
            return f"someone else's {IFNAME}"
        if "ipv6" in lower.addr:
            v6 = socket.inet_pton(socket.AF_INET6, lower.addr["ipv6"][0]).hex()  # as if_inet6 has it
            with open("/proc/net/if_inet6") as f:  # IPv6 addresses go with a link down
                if not any(line.split()[0] == v6 and line.split()[-1] == IFNAME for line in f):
                    return "IPv6 address gone"
        header = {"header": {"dev-index": self.ifindex}}
        rings = nl.ethtool.rings_get(header)
        have = {k: rings.get(k) for k in ("rx", "tcp-data-split", "hds-thresh")}
        have["combined-count"] = nl.ethtool.channels_get(header).get("combined-count")
        with open(f"/sys/class/net/{IFNAME}/mtu") as a, open(f"/sys/class/net/{lower.name}/mtu") as b:
            have["mtu"], want_mtu = int(a.read()), int(b.read())
        want = {"rx": DEF_RING, "tcp-data-split": "enabled", "hds-thresh": 0}
        want.update({"combined-count": DEF_QUEUES, "mtu": want_mtu})
        return ", ".join(f"{k} {have[k]}" for k in want if have[k] != want[k])

    def ensure(self, module, nl: Ynl, lower):
        why = self.changed(nl, lower.kind)
        if not why:
            return
        print(f"nic: building {IFNAME} on {lower.name} ({why})", file=sys.stderr)
        self.teardown()
        _sh(f"ip link del {IFNAME}; true", check=False)  # whatever an older fixture or test left
        if not os.path.exists("/sys/module/zcnic"):
            _sh(f"insmod {module}")  # stays loaded: other tests stack their own zcnic
        self.lower = lower
        lower.build(self._do)
        self._do(f"ip link add {IFNAME} link {lower.name} type zcnic", f"ip link del {IFNAME}")
        # a test's link down/up must not take the IPv6 address with it
        _sh(f"sysctl -qw net.ipv6.conf.{IFNAME}.keep_addr_on_down=1")
        _sh(f"ip link set {IFNAME} up")
        lower.finish()
        for local, _, plen in lower.addr.values():
            _sh(f"ip addr add {local}/{plen} dev {IFNAME} nodad")
        self.ifindex = socket.if_nametoindex(IFNAME)
        header = {"header": {"dev-index": self.ifindex}}
        err, extack = nl.outcome(
            nl.ethtool.rings_set, {**header, "rx": DEF_RING, "tcp-data-split": "enabled", "hds-thresh": 0}
        )
        if err:
            raise RuntimeError(f"header split on {IFNAME}: {os.strerror(err)}: {extack}")

    def teardown(self):
        while self.undo:
            _sh(self.undo.pop(), check=False)
        self.ifindex = self.lower = None


TOPOLOGY = Topology()  # one per agent process
atexit.register(TOPOLOGY.teardown)
