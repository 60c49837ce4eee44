"""Real TCP from the host (scapy, host/traffic.py) into zc0 stacked on the
multi-queue virtio-net: zero copy on a bound queue, copy fallback elsewhere."""

import hashlib
import random
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from guest_tests.contract import TEST_MAC
from host.traffic import TcpFlow

pytestmark = [pytest.mark.traffic, pytest.mark.zcnic]

GUEST_IP = "192.0.2.2"
SIZE = 1 << 20


@pytest.fixture
def zc_on_eth1(guest, lab, zcnic_module):
    """zc0 on the test NIC, header split on; the host's tap is the peer."""
    if not lab.vm.tap:
        pytest.skip("no test NIC: creating its tap needs root (CAP_NET_ADMIN) on the host")
    guest.sh(f"lsmod | grep -q '^zcnic ' || insmod {zcnic_module}", check=True)
    guest.sh(
        "ip link set eth1 up && (ip link show zc0 >/dev/null 2>&1 || "
        "ip link add zc0 link eth1 type zcnic) && "
        f"ip addr replace {GUEST_IP}/24 dev zc0 && ip link set zc0 up && "
        "ethtool -G zc0 tcp-data-split on",
        check=True,
    )
    return lab.vm.tap


def steer(guest, port: int, queue: int) -> int:
    out = guest.sh(f"ethtool -N zc0 flow-type tcp4 dst-port {port} action {queue}", check=True).stdout
    return int(re.search(r"ID (\d+)", out).group(1))


def send_while(guest, tap, port, data, target, **kwargs):
    """Run guest scenario TARGET in the background and send DATA from the host."""
    with ThreadPoolExecutor(1) as pool:
        receiver = pool.submit(guest.call, target, port=port, **kwargs)
        flow = TcpFlow(tap, TEST_MAC, GUEST_IP, port)
        flow.connect()
        flow.send(data)
        flow.close()
        return receiver.result(timeout=300), flow


def queue_packets(guest, queue: int) -> int:
    stats = guest.sh("ethtool -S zc0", check=True).stdout
    return int(re.search(rf"rx{queue}_packets: (\d+)", stats).group(1))


def test_zero_copy_on_bound_queue(guest, zc_on_eth1):
    port, queue = random.randint(20000, 30000), 1
    rule = steer(guest, port, queue)
    data = random.randbytes(SIZE)
    try:
        got, flow = send_while(
            guest, zc_on_eth1, port, data, "scenarios.traffic:zc_receive", ifname="zc0", queue=queue
        )
    finally:
        guest.sh(f"ethtool -N zc0 delete {rule}")
    assert got["bytes"] == SIZE
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert got["stats"]["copy_count"] == 0, "data on the bound queue was copied, not zero-copy"
    assert got["outside_area"] == 0
    assert got["final"]["res"] == 0  # EOF ends the multishot request


def test_copy_fallback_on_unbound_queue(guest, zc_on_eth1):
    port = random.randint(30001, 40000)
    rule = steer(guest, port, 2)  # the zcrx is bound to queue 1
    data = random.randbytes(SIZE // 4)
    try:
        got, _ = send_while(
            guest, zc_on_eth1, port, data, "scenarios.traffic:zc_receive", ifname="zc0", queue=1
        )
    finally:
        guest.sh(f"ethtool -N zc0 delete {rule}")
    size = len(data)
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert got["stats"]["copy_count"] > 0
    # Payload the kernel copies out of an skb's linear part is not counted in
    # zcrx_stats (io_zcrx_recv_skb's headlen path), so copy_bytes can fall a
    # segment short of what arrived; it never exceeds it.
    assert 0 < got["stats"]["copy_bytes"] <= size


def test_ntuple_rule_picks_the_queue(guest, zc_on_eth1):
    port, queue = random.randint(40001, 50000), 3
    rule = steer(guest, port, queue)
    before = queue_packets(guest, queue)
    data = random.randbytes(200_000)
    try:
        got, flow = send_while(guest, zc_on_eth1, port, data, "scenarios.traffic:plain_receive")
    finally:
        guest.sh(f"ethtool -N zc0 delete {rule}")
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert queue_packets(guest, queue) - before >= flow.segments
