"""What zc0 (lib/nic.py) is stacked on, and where its remote end is.

    veth: veth0, its peer veth1 in netns "remote" (10.77.0.1, fd77::1): the sender is a
          guest process there (lib/peer.py); like NetDrvEpEnv's REMOTE_TYPE=netns.
    tap:  the test NIC (the multi-queue virtio-net with contract.TEST_MAC); the remote end
          is the host, scapy on the tap (host/traffic.py), at contract.TEST_PEER_IP.

Each kind says how to build its part (before zc0 is added on top, and after), how to
see that it is still there, and zc0's addresses: family -> (local, remote, prefix).
"""

import os
import subprocess

from guest_tests.contract import TEST_IP, TEST_MAC, TEST_PEER_IP, TEST_PREFIX

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
    addr = {"ipv4": (TEST_IP, TEST_PEER_IP, TEST_PREFIX)}

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
