"""Removing zcnic while it works: `ip link del zc0`, `ip link del veth0` (its lower device)
and `rmmod zcnic` with an endless TCP flow, with and without a zcrx bound to the flow's
queue (holding its buffers). No splat (the harness checks), the command does not hang on
references, and the zcrx owner sees a detached ifq: the device is gone (ENODEV), adding an
area fails (EFAULT), its pages are unpinned once the ring closes.
"""

import errno
import json

import pytest

pytestmark = [pytest.mark.zcnic, pytest.mark.teardown]


@pytest.mark.parametrize("what", ["link_del", "rmmod", "lower_del"])
def test_remove_while_bound(nic, what):
    res = nic.call("teardown", what=what, bound=True, hold=True, timeout=300)
    assert res["received_before"] >= 512 << 10 and res["held"] > 0, res
    assert res["cmd"]["rc"] == 0 and res["cmd"]["secs"] < 30, res["cmd"]
    assert res["link_gone"] and res["module_loaded"] == (what != "rmmod")
    assert res["register_again"] == errno.ENODEV and res["queue_get"] == errno.ENODEV
    assert res["add_area"] == errno.EFAULT, "ADD_AREA on an ifq whose device is gone"
    assert res["flush"] == 0, "returning buffers to a detached ifq still works"
    assert res["stats_before"]["copy_count"] == 0, "data on the bound queue was copied before removal"
    assert res["pool_ids"], "no io_uring page pool on zc0 while bound"
    # the bound queue's pools (by id) that outlive the device: detached, no longer on its ifindex
    for pool in res["pools_left"]:
        assert "detach-time" in pool and pool.get("ifindex") != res["ifindex"], res["pools_left"]
    assert res["pins_after"] == 0, f"pinned pages leaked after ring close: {res}"
    assert res["pools_after"] == [], "a page pool of the closed ring is still listed"


@pytest.mark.parametrize("what", ["link_del", "rmmod"])
def test_remove_with_traffic(nic, what):
    res = nic.call("teardown", what=what, bound=False, timeout=300)
    assert res["received_before"] >= 512 << 10
    assert res["cmd"]["rc"] == 0 and res["cmd"]["secs"] < 30, res["cmd"]
    assert res["link_gone"] and res["register_again"] == errno.ENODEV


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


class StillPinned(AssertionError):
    """The area of a closed ring is still pinned."""


def _deferred(nic, nic_cached, lab):
    """The deferred_free run (once per session); its measurement goes to deferred-free.json
    in the results directory."""
    res = nic_cached(nic, "deferred_free", timeout=300)
    if res.get("skip"):
        pytest.skip(res["skip"])
    (lab.results / "deferred-free.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def test_closed_ring_area_unpinned_once_every_cpu_ran_net_rx(nic, nic_cached, lab):
    """Received on CPU 0, allocated on CPU 1 (the peer's), the stream and its FIN queued before
    the first read; the socket reset and the ring closed: once every CPU has run NET_RX,
    the area is unpinned and the ring's page pools are gone. How long it stayed pinned
    without that help is recorded (deferred-free.json in the results), not judged: the kernel gives no bound
    (see test_closed_ring_unpins_area_without_net_rx_on_the_allocating_cpu)."""
    res = _deferred(nic, nic_cached, lab)
    assert res["fin_before_read"] and res["queued_before_read"] == res["size"], res
    assert res["received"] == res["size"] and res["final"] == 0 and res["match"], res
    assert res["copy_count"] == 0, "not zero copy"
    assert res["pool_ids"], "no io_uring page pool on zc0 while bound"
    assert res["cpus_kicked"] >= 2
    assert res["pins_after_kick"] == 0, f"area still pinned after every CPU ran NET_RX: {res}"
    assert res["pools_after_kick"] == [], res


@pytest.mark.xfail(strict=True, raises=StillPinned, reason=DEFERRED_FREE_ANALYSIS)
def test_closed_ring_unpins_area_without_net_rx_on_the_allocating_cpu(nic, nic_cached, lab):
    """The same run: while the allocating CPU runs no NET_RX, the closed ring's area should be
    unpinned within the window (3 s). It is not, deterministically: the outcome is judged
    only on an attempt in which that CPU ran no NET_RX (the scenario retries otherwise)."""
    res = _deferred(nic, nic_cached, lab)
    if res["skb_defer_max"] == 0:
        pytest.skip("net.core.skb_defer_max = 0: consumed skbs are not deferred")
    assert res["fin_before_read"] and res["received"] == res["size"] and res["pool_ids"], res
    if res["tx_net_rx"]:
        pytest.skip(
            f"CPU {res['tx_cpu']} ran NET_RX in each of {len(res['attempts'])} attempts: "
            f"{[a['net_rx_since_read'] for a in res['attempts']]}"
        )
    if res["pins_idle"]:
        raise StillPinned(
            f"{res['pins_idle']} pages pinned {res['window_s']} s after close, CPU "
            f"{res['tx_cpu']} ran no NET_RX; pools {res['pools_idle']}"
        )
