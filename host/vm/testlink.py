"""The test NIC's host end: a tap in a network namespace of its own, no root needed.

`unshare --user --map-root-user --net` starts a small server (this module's main)
in a new user and network namespace, where it is root: it creates the multi-queue
tap there, brings it up, and hands its queue descriptors to the lab over a unix
socket (SCM_RIGHTS). QEMU gets those (`-netdev tap,fds=...`); the host's traffic
peer asks the server for packet sockets bound to the tap. The same way as root and
as a normal user, and nothing of it shows in the host's own network: parallel VMs
cannot clash on names, host daemons never talk on the tap, and the namespace, the
tap and the server end when the lab closes its socket (or dies).
"""

import array
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from host.errors import LabError

TAP_NAME = "zctest"
# Larger than any frame the host peer sends: a packet socket refuses a frame longer
# than its device's MTU, and jumbo-MSS flows need 9000-byte frames.
TAP_MTU = 9000
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_MULTI_QUEUE = 0x0002, 0x1000, 0x4000, 0x0100
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFMTU, IFF_UP = 0x8913, 0x8914, 0x8922, 0x1
ETH_P_ALL = 0x0003
UNSHARE = ["unshare", "--user", "--map-root-user", "--net"]


def _send_fds(sock: socket.socket, fds: list[int]) -> None:
    sock.sendmsg([b"f"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


def recv_fds(sock: socket.socket, most: int) -> list[int]:
    fds = array.array("i")
    msg, ancillary, _flags, _addr = sock.recvmsg(1, socket.CMSG_SPACE(most * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if not msg or not fds:
        raise LabError("the test NIC's namespace server ended without an answer")
    return list(fds)


class TestLink:
    """The tap's queue descriptors (for QEMU) and packet sockets on it (for the peer)."""

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, queues: int, owner: str = ""):
        """QUEUES tap queues; OWNER (the VM's results directory) names the server in the
        process list, so a check for leftovers can tell whose it is."""
        if not shutil.which("unshare"):
            raise LabError("the test NIC needs unshare (apt-get install util-linux)")
        if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
            raise LabError(
                "the test NIC needs /dev/net/tun readable and writable by you: as root, "
                "chmod 0666 /dev/net/tun (udev's default mode)"
            )
        self.queues = queues
        self.tap_fds: list[int] = []
        self.offer_dir: str | None = None
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server = subprocess.Popen(
            [*UNSHARE, sys.executable, "-m", "host.vm.testlink", str(theirs.fileno()), str(queues), owner],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        )
        theirs.close()
        try:
            self.tap_fds = recv_fds(self._sock, queues)
        except LabError:
            self.close()
            said = self.server.stderr.read().decode(errors="replace").strip().splitlines()
            raise LabError(
                "cannot create the test NIC's tap in a user and network namespace"
                + (f" ({said[-1]})" if said else "")
                + "; if unprivileged user namespaces are disabled, as root run: "
                "sysctl -w kernel.unprivileged_userns_clone=1 (Ubuntu: "
                "kernel.apparmor_restrict_unprivileged_userns=0)"
            ) from None

    def packet_socket(self) -> socket.socket:
        """A new AF_PACKET socket bound to the tap: it sees every frame the guest sends."""
        self._sock.sendall(b"s")
        (fd,) = recv_fds(self._sock, 1)
        return socket.socket(fileno=fd)

    def offer_tap_fds(self) -> Path:
        """For a QEMU that another program starts (vng, which closes what the lab would
        pass on): the first to connect to the returned unix socket gets the tap's queue
        descriptors (qemu/qemu_with_tap.py asks for them)."""
        self.offer_dir = tempfile.mkdtemp(prefix="zcrx-lab-tap-")
        path = Path(self.offer_dir) / "fds"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        fds = [os.dup(fd) for fd in self.tap_fds]  # the lab closes its own once QEMU runs

        def hand_over() -> None:
            try:
                with listener:
                    conn, _ = listener.accept()
                    with conn:
                        _send_fds(conn, fds)
            except OSError:  # shut down: the VM ended before its QEMU asked
                pass
            finally:
                for fd in fds:
                    os.close(fd)

        self._offer = listener
        threading.Thread(target=hand_over, name="tap-fds", daemon=True).start()
        return path

    def close_tap_fds(self) -> None:
        """QEMU holds its own copies once started: the lab's are not needed any more."""
        for fd in self.tap_fds:
            os.close(fd)
        self.tap_fds = []

    def close(self) -> None:
        if self.offer_dir:
            try:  # wakes the thread still waiting in accept(); done when it was asked
                self._offer.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            shutil.rmtree(self.offer_dir, ignore_errors=True)
            self.offer_dir = None
        self.close_tap_fds()
        self._sock.close()  # the server sees EOF and exits; the namespace goes with the tap
        try:
            self.server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        if self.server.stderr:
            self.server.stderr.close()


# -- the server, in its own namespaces ------------------------------------------------
def _ifreq(name: str, value: int, fmt: str = "H") -> bytes:
    return struct.pack(f"16s{fmt}", name.encode(), value).ljust(40, b"\0")


def _create_tap(queues: int) -> list[int]:
    fds = []
    for _ in range(queues):
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, _ifreq(TAP_NAME, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE))
        fds.append(fd)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ctl:
        fcntl.ioctl(ctl, SIOCSIFMTU, _ifreq(TAP_NAME, TAP_MTU, "i"))
        flags = struct.unpack_from("16sH", fcntl.ioctl(ctl, SIOCGIFFLAGS, _ifreq(TAP_NAME, 0)))[1]
        fcntl.ioctl(ctl, SIOCSIFFLAGS, _ifreq(TAP_NAME, flags | IFF_UP))
    return fds


def serve(control: socket.socket, queues: int) -> None:
    # The host side has no IP stack on the tap (host/traffic.py is the peer): no
    # IPv6 link-local address, router or multicast-listener chatter on it.
    with open("/proc/sys/net/ipv6/conf/default/disable_ipv6", "w") as f:
        f.write("1")
    fds = _create_tap(queues)
    _send_fds(control, fds)
    for fd in fds:
        os.close(fd)
    while control.recv(1) == b"s":
        packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        packet.bind((TAP_NAME, 0))
        _send_fds(control, [packet.fileno()])
        packet.close()


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])), int(sys.argv[2]))
