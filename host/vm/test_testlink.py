"""TestLink against the real kernel: a tap made in a user and network namespace of its
own (as root and as a normal user alike), whose queue descriptors and packet sockets
reach the lab, and which is gone with the lab's socket."""

import fcntl
import os
import socket
import struct
import subprocess
from pathlib import Path

from host.vm.testlink import TAP_MTU, TestLink, recv_fds

TUNGETIFF = 0x800454D2

VNET_HDR = bytes(10)  # struct virtio_net_hdr, no offloads: how QEMU writes a frame


def test_frame_written_to_a_queue_reaches_the_packet_socket():
    link = TestLink(queues=4)
    try:
        assert len(link.tap_fds) == 4
        peer = link.packet_socket()
        peer.settimeout(10)
        frame = bytes.fromhex("ffffffffffff020000000001") + struct.pack("!H", 0x88B5) + b"zcrx" * 20
        os.write(link.tap_fds[2], VNET_HDR + frame)
        assert peer.recv(65536) == frame
        # the namespace's tap, not one in the host's network
        assert peer.getsockname()[0] == "zctest" and "zctest" not in os.listdir("/sys/class/net")
        jumbo = frame[:14] + bytes(TAP_MTU)
        assert peer.send(jumbo) == len(jumbo), "the tap's MTU refuses a jumbo frame"
        peer.close()
    finally:
        link.close()
    assert link.server.returncode == 0


def test_server_ends_with_the_lab_socket():
    link = TestLink(queues=1)
    link.close()
    assert link.server.poll() is not None
    try:
        link.packet_socket()
    except OSError:
        pass
    else:
        raise AssertionError("a closed TestLink handed out a packet socket")


def test_offered_tap_fds_go_to_the_first_who_asks():
    """What qemu/qemu_with_tap.py does for vng's QEMU: the queue descriptors through the
    offered unix socket are the tap's (TUNGETIFF names it)."""
    link = TestLink(queues=2)
    try:
        path = link.offer_tap_fds()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as asker:
            asker.connect(str(path))
            fds = recv_fds(asker, 8)
        assert len(fds) == 2
        for fd in fds:
            name = fcntl.ioctl(fd, TUNGETIFF, bytes(40))[:16].rstrip(b"\0").decode()
            assert name == "zctest"
            os.close(fd)
    finally:
        link.close()
    assert not path.exists(), "the offer's socket outlived the link"


def test_qemu_with_tap_is_qemu_when_asked_its_version():
    wrapper = Path(__file__).resolve().parents[2] / "qemu" / "qemu_with_tap.py"
    out = subprocess.run([str(wrapper), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("QEMU emulator version"), out
