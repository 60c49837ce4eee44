"""Removing zcnic while it works: `ip link del zc0`, `ip link del veth0` (its lower device)
and `rmmod zcnic` with an endless TCP flow, with and without a zcrx bound to the flow's
queue (holding its buffers). No splat (the harness checks), the command does not hang on
references, and the zcrx owner sees a detached ifq: the device is gone (ENODEV), adding an
area fails (EFAULT), its pages are unpinned once the ring closes. Then the deferred free
of a closed ring's area: it waits for NET_RX on the CPU that allocated the last skbs.
Runs in the guest (guest_tests/agent.py) on guest_tests/lib/nic.py's NicEnv; a removed
zc0 (or zcnic) is built again by the next test's NicEnv.
"""

import errno
import fcntl
import json
import os
import socket
import struct
import subprocess
import time

import pytest

from guest_tests.contract import RESULTS
from guest_tests.lib import cpus, sysctl
from guest_tests.lib.defer import defer
from guest_tests.lib.flow import Stream, pump
from guest_tests.lib.nic import IFNAME, LOWER, link_exists, port_for
from guest_tests.lib.peer import Peer, accept, listener
from guest_tests.zcrx import PAGE_SIZE, Mem
from guest_tests.zcrx import uapi as U
from guest_tests.zcrx.util import errno_of, give_back, pinned_pages, run_net_rx_on_every_cpu, wait_pins

pytestmark = [pytest.mark.zcnic, pytest.mark.teardown, pytest.mark.in_guest]

REMOVE = {"link_del": f"ip link del {IFNAME}", "lower_del": f"ip link del {LOWER}", "rmmod": "rmmod zcnic"}
FAMILY, QUEUE = "ipv4", 1


def endless_flow(nic, seed):
    """A listener and an endless sender (not yet started) whose flow is steered to QUEUE."""
    port = port_for(seed)
    lst = listener(FAMILY, port)
    defer(lst.close)
    peer = Peer(FAMILY, port, 0, seed=port, endless=True)
    defer(peer.kill)
    nic.ntuple(FAMILY, port, action=QUEUE)
    return lst, peer


def remove(what):
    """Run the removal command: (exit status, stderr, seconds it took)."""
    t0 = time.monotonic()
    p = subprocess.run(REMOVE[what], shell=True, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stderr.strip(), time.monotonic() - t0


def pools_by_id(nic, ids):
    """The page pools with these ids, wherever they are now: a removed device's pools that
    live on are re-homed to loopback, so page-pool-get no longer names its ifindex."""
    return [p for p in nic.nl.netdev.page_pool_get({}, dump=True) if p["id"] in ids]


def abort(conn):
    """Close with RST: an orphaned FIN-WAIT socket would keep out-of-order skbs (and so
    net_iovs, the page pool, the ifq and its pinned area) until its FIN times out."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@pytest.mark.parametrize("what", ["link_del", "rmmod", "lower_del"])
def test_remove_while_bound(nic, what):
    """The device goes while its queue is bound and the owner holds buffers: the removal
    completes, the detached ifq refuses what needs the device, its pools detach, and
    closing the ring unpins the area and frees the pools."""
    pins0 = pinned_pages()
    lst, peer = endless_flow(nic, 0x7E)
    rx = nic.rx(QUEUE, area_pages=1024, event_mask=1 << U.ZCRX_EVENT_ALLOC_FAIL)
    pool_ids = {p["id"] for p in nic.io_uring_pools()}  # by id: see pools_by_id
    peer.start()
    conn = accept(lst, peer)
    defer(conn.close)
    st = Stream()
    ud = rx.ring.submit_recv_zc(conn.fileno(), rx.z.id)
    pump(rx, conn.fileno(), st, ud, refill=False, until=512 << 10, timeout=30)
    # read before the removal: it restarts the queue without the provider first, and
    # frames arriving in that window legitimately take the copy path
    stats_before = rx.z.stats()
    rc, stderr, secs = remove(what)
    register_again = nic.register_errno(QUEUE)  # on the old ifindex
    queue = {"ifindex": nic.ifindex, "type": "rx", "id": QUEUE}
    queue_get = nic.nl.outcome(nic.nl.netdev.queue_get, queue)[0]
    # the owner goes on receiving on the detached ifq (returning what it gets); what
    # arrives is not judged, the kernel log is (by the harness)
    pump(rx, conn.fileno(), Stream(), ud, idle=1.0, timeout=5)
    area = Mem(4 * PAGE_SIZE)
    defer(area.close)
    add_area = errno_of(rx.z.add_area, mem=area)
    give_back(rx.z, st.held, flush=False)
    flush = errno_of(rx.z.flush)
    pools_left = pools_by_id(nic, pool_ids)
    rx.close()
    abort(conn)
    assert len(st.data) >= 512 << 10 and st.held, (len(st.data), len(st.held))
    assert rc == 0 and secs < 30, (rc, stderr, secs)
    assert not link_exists(IFNAME) and os.path.exists("/sys/module/zcnic") == (what != "rmmod")
    assert register_again == errno.ENODEV and queue_get == errno.ENODEV, (register_again, queue_get)
    assert add_area == errno.EFAULT, "ADD_AREA on an ifq whose device is gone"
    assert flush == 0, "returning buffers to a detached ifq still works"
    assert stats_before["copy_count"] == 0, "data on the bound queue was copied before removal"
    assert pool_ids, "no io_uring page pool on zc0 while bound"
    # the bound queue's pools that outlive the device: detached, no longer on its ifindex
    for pool in pools_left:
        assert "detach-time" in pool and pool.get("ifindex") != nic.ifindex, pools_left
    assert wait_pins(pins0)[0] == pins0, "pinned pages leaked after ring close"
    assert pools_by_id(nic, pool_ids) == [], "a page pool of the closed ring is still listed"


@pytest.mark.parametrize("what", ["link_del", "rmmod"])
def test_remove_with_traffic(nic, what):
    """The device goes while a plain TCP flow runs on an unbound queue: the removal
    completes at once, and the device's ifindex is gone for zcrx too (ENODEV)."""
    lst, peer = endless_flow(nic, 0x7D)
    peer.start()
    conn = accept(lst, peer)
    defer(conn.close)
    conn.settimeout(30)
    received = 0
    while received < 512 << 10:
        received += len(conn.recv(1 << 16))
    rc, stderr, secs = remove(what)
    assert rc == 0 and secs < 30, (rc, stderr, secs)
    assert not link_exists(IFNAME)
    assert nic.register_errno(QUEUE) == errno.ENODEV


DEFERRED_FREE_ANALYSIS = (
    "A closed ring's area stays pinned until the CPU that allocated its last skbs runs "
    "NET_RX, with no bound: TCP frees a consumed skb with skb_attempt_defer_free() onto the "
    "defer list of the CPU that allocated it (skb->alloc_cpu, here zc0's NAPI on the peer's "
    "CPU), and only that CPU's net_rx_action() (or a half-full list's IPI) frees the list. "
    "Until then the skbs hold net_iovs, the page pool keeps them in flight, the pool holds "
    "the ifq and the ifq the pinned area; an idle CPU may hold it for ever. "
    "Measured under TCG (7.3.4): with that CPU kept free of NET_RX (interrupts, other tasks, "
    "unbound work and timer migration moved off it), all 1030 pages stay pinned through the "
    "window in every run; earlier, with stray NET_RX there, 1-4 s (0.1 s with "
    "net.core.skb_defer_max=0), and over 15 s once on the debug kernel."
)

TCP_CLOSE_WAIT, SO_RCVBUFFORCE, SIOCINQ = 8, 33, 0x541B
DEFER_SIZE, WINDOW_S = 256 << 10, 3.0


class StillPinned(AssertionError):
    """The area of a closed ring is still pinned."""


def two_cpus():
    """(rx_cpu, tx_cpu): the receiver's CPU and the peer's (where zc0's NAPI allocates)."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs two CPUs")
    return allowed[0], allowed[1]


def _delta(a, b):
    return [y - x for x, y in zip(a, b, strict=True)]


def _tcp_state(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def consume_elsewhere_then_close(nic, rx_cpu, tx_cpu, seed):
    """Receive on rx_cpu what zc0's NAPI allocated on tx_cpu, then close everything and
    watch the area's pins for WINDOW_S seconds with nothing run on tx_cpu; then make every
    CPU run NET_RX. Call with every CPU but tx_cpu quieted (cpus.quiet_all_but(rx_cpu)).

    The peer (netns `remote`) runs on tx_cpu, so veth runs there; the queue's interrupt
    is pointed there, so zc0's NAPI runs there and every skb is allocated there. The whole
    stream and its FIN are queued on the socket before RECV_ZC reads a byte, so every skb
    is consumed on rx_cpu after tx_cpu's last NET_RX of the transfer, and TCP hands it to
    tx_cpu's defer list (skb_attempt_defer_free) with its net_iovs. The socket is reset
    (nothing more for tx_cpu to receive), the ring closed,
    the peer reaped. Returns the observations."""
    pins0 = pinned_pages()
    port = port_for(seed)
    lst = listener(FAMILY, port)
    defer(lst.close)
    lst.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 * DEFER_SIZE)  # the whole stream queues unread
    peer = Peer(FAMILY, port, DEFER_SIZE, seed=port)
    defer(peer.kill)
    os.sched_setaffinity(peer.pid, {tx_cpu})
    nic.ntuple(FAMILY, port, action=QUEUE)
    cpus.pin_irq(nic.irq(QUEUE), tx_cpu)  # zc0's queue interrupt, so its NAPI, there too
    rx = nic.rx(QUEUE, area_pages=1024)
    out = {"pool_ids": sorted(p["id"] for p in nic.io_uring_pools())}
    peer.start()
    conn = accept(lst, peer)
    defer(conn.close)
    deadline = time.monotonic() + 60
    while _tcp_state(conn) != TCP_CLOSE_WAIT and time.monotonic() < deadline:
        time.sleep(0.05)
    out["fin_before_read"] = _tcp_state(conn) == TCP_CLOSE_WAIT
    # the ACK of the FIN waits for the delayed-ACK timer, armed on tx_cpu: send it now,
    # from here (rx_cpu), and give timers armed during the transfer time to run out
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    time.sleep(0.5)
    out["queued_before_read"] = struct.unpack("i", fcntl.ioctl(conn, SIOCINQ, b"\0" * 4))[0]
    net_rx0, irq0 = cpus.net_rx_counts(), cpus.irq_counts(tx_cpu)
    st = Stream()
    ud = rx.ring.submit_recv_zc(conn.fileno(), rx.z.id)
    pump(rx, conn.fileno(), st, ud, timeout=60)
    out.update(received=len(st.data), final=st.final, match=bytes(st.data) == peer.data)
    out["copy_count"] = rx.z.stats()["copy_count"]
    net_rx_read = cpus.net_rx_counts()
    abort(conn)  # RST, not FIN: nothing more crosses the wire, so tx_cpu gets no NET_RX
    rx.close()
    out["peer"] = peer.result(30)
    net_rx_closed = cpus.net_rx_counts()
    t0 = time.monotonic()
    out["pins_idle_wait_s"] = None  # seconds until the area was unpinned unaided, if it was
    while time.monotonic() - t0 < WINDOW_S:
        if pinned_pages() == pins0:
            out["pins_idle_wait_s"] = round(time.monotonic() - t0, 2)
            break
        time.sleep(0.1)
    net_rx = _delta(net_rx0, cpus.net_rx_counts())
    irq1 = cpus.irq_counts(tx_cpu)
    out["irqs_on_tx_cpu"] = {k: v - irq0.get(k, 0) for k, v in irq1.items() if v != irq0.get(k, 0)}
    out["net_rx_since_read"] = net_rx  # per CPU, from the first read to the window's end
    out["net_rx_phases"] = [_delta(net_rx0, net_rx_read), _delta(net_rx_read, net_rx_closed)]
    out["tx_net_rx"] = net_rx[tx_cpu]
    out["pins_idle"] = pinned_pages() - pins0
    out["pools_idle"] = pools_by_id(nic, out["pool_ids"])
    out["cpus_kicked"] = run_net_rx_on_every_cpu()
    pins, out["pins_kick_wait_s"] = wait_pins(pins0, timeout=15, kick_after=None)
    out["pins_after_kick"] = pins - pins0
    out["pools_after_kick"] = pools_by_id(nic, out["pool_ids"])
    return out


def test_closed_ring_area_unpinned_once_every_cpu_ran_net_rx(nic):
    """Received on CPU 0, allocated on CPU 1 (the peer's), the stream and its FIN queued before
    the first read; the socket reset and the ring closed: once every CPU has run NET_RX,
    the area is unpinned and the ring's page pools are gone. How long it stayed pinned
    without that help is recorded (deferred-free.json in the results), not judged: the kernel
    gives no bound (see test_closed_ring_unpins_area_without_net_rx_on_the_allocating_cpu)."""
    rx_cpu, tx_cpu = two_cpus()
    cpus.quiet_all_but(rx_cpu)
    res = consume_elsewhere_then_close(nic, rx_cpu, tx_cpu, 0x7F)
    res.update(rx_cpu=rx_cpu, tx_cpu=tx_cpu, size=DEFER_SIZE, window_s=WINDOW_S)
    res["skb_defer_max"] = int(sysctl.read("net.core.skb_defer_max"))
    with open(f"{RESULTS}/deferred-free.json", "w") as f:
        f.write(json.dumps(res, indent=1) + "\n")
    assert res["fin_before_read"] and res["queued_before_read"] == DEFER_SIZE, res
    assert res["received"] == DEFER_SIZE and res["final"] == 0 and res["match"], res
    assert res["copy_count"] == 0, "not zero copy"
    assert res["pool_ids"], "no io_uring page pool on zc0 while bound"
    assert res["cpus_kicked"] >= 2
    assert res["pins_after_kick"] == 0, f"area still pinned after every CPU ran NET_RX: {res}"
    assert res["pools_after_kick"] == [], res


@pytest.mark.xfail(strict=True, raises=StillPinned, reason=DEFERRED_FREE_ANALYSIS)
def test_closed_ring_unpins_area_without_net_rx_on_the_allocating_cpu(nic):
    """While the allocating CPU runs no NET_RX, the closed ring's area should be unpinned
    within the window (3 s). It is not, deterministically: the outcome is judged only on an
    attempt in which that CPU ran no NET_RX (up to 3 attempts)."""
    if int(sysctl.read("net.core.skb_defer_max")) == 0:
        pytest.skip("net.core.skb_defer_max = 0: consumed skbs are not deferred")
    rx_cpu, tx_cpu = two_cpus()
    cpus.quiet_all_but(rx_cpu)
    attempts = []
    for seed in (0x80, 0x81, 0x82):
        res = consume_elsewhere_then_close(nic, rx_cpu, tx_cpu, seed)
        attempts.append(res["net_rx_since_read"])
        assert res["fin_before_read"] and res["received"] == DEFER_SIZE and res["pool_ids"], res
        if res["tx_net_rx"] == 0:
            break
    else:
        pytest.skip(f"CPU {tx_cpu} ran NET_RX in each of {len(attempts)} attempts: {attempts}")
    if res["pins_idle"]:
        raise StillPinned(
            f"{res['pins_idle']} pages pinned {WINDOW_S} s after close, CPU "
            f"{tx_cpu} ran no NET_RX; pools {res['pools_idle']}"
        )
