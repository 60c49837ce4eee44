"""TestLink against the real kernel: a tap made in a user and network namespace of its
own (as root and as a normal user alike), whose queue descriptors and packet sockets
reach the lab, and which is gone with the lab's socket."""

import os
import struct

from host.vm.testlink import TAP_MTU, TestLink

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
