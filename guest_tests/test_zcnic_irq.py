"""zcnic's per-queue interrupts, as a NIC's MSI-X vectors: each RX queue's NAPI reports
its IRQ (netdev napi-get `irq`), the IRQ is in /proc/interrupts under the queue's name and
takes an affinity (/proc/irq/N/smp_affinity_list), and the queue's NAPI runs where that
affinity points: the CPU that counted the interrupt is the CPU TCP processed the flow on
(SO_INCOMING_CPU). Zero-copy receive works with the queue's NAPI on the receiving task's
CPU and on another one (page pool refills from the refill ring across CPUs).
Runs in the guest (guest_tests/agent.py) on guest_tests/lib/nic.py's NicEnv.
"""

import os

import pytest

from guest_tests.lib import cpus
from guest_tests.lib.flow import zc_transfer

pytestmark = [pytest.mark.zcnic, pytest.mark.in_guest]

MiB = 1 << 20


def _interrupt_names() -> dict:
    """{irq: the name request_irq() gave it} from /proc/interrupts."""
    with open("/proc/interrupts") as f:
        ncpu = len(f.readline().split())
        lines = [ln.split() for ln in f]
    return {int(x[0][:-1]): x[-1] for x in lines if x[0][:-1].isdigit() and len(x) > ncpu + 1}


def test_every_rx_queue_has_its_own_irq(nic):
    """napi-get reports an IRQ for each of the 4 RX queues' NAPIs, 4 distinct ones; each is in
    /proc/interrupts as zcnic<N>-rx-<queue> and affine to one CPU; -L 8 gives the new queues
    theirs, and an affinity written to queue 3's IRQ stays through -L 1 and back."""
    irqs = [nic.irq(q) for q in range(4)]
    names = _interrupt_names()
    assert len(set(irqs)) == 4, irqs
    assert [names.get(i, "").rsplit("-rx-", 1)[-1] for i in irqs] == ["0", "1", "2", "3"], names
    online = sorted(os.sched_getaffinity(0))
    for irq in irqs:
        with open(f"/proc/irq/{irq}/smp_affinity_list") as f:
            assert int(f.read()) in online, irq
    assert nic.channels(8)[0] == 0
    more = [nic.irq(q) for q in range(8)]
    assert more[:4] == irqs and len(set(more)) == 8, more
    cpu = online[-1]
    cpus.pin_irq(irqs[3], cpu)
    assert nic.channels(1)[0] == 0 and nic.channels(4)[0] == 0
    with open(f"/proc/irq/{irqs[3]}/smp_affinity_list") as f:
        assert int(f.read()) == cpu
    assert nic.irq(3) == irqs[3]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_zero_copy_napi_runs_on_the_queue_irq_cpu(nic, family):
    """The receiving task and the peer pinned to the first CPU; queue 1's IRQ pointed at
    each CPU in turn: 1 MiB arrives zero copy and intact both times, TCP processed it on
    the IRQ's CPU (SO_INCOMING_CPU), and the interrupt ran on that CPU only."""
    online = sorted(os.sched_getaffinity(0))
    if len(online) < 2:
        pytest.skip("needs two CPUs: one for the receiving task, another for the queue's NAPI")
    cpus.pin_self({online[0]})  # the peer, forked later, too
    irq = nic.irq(1)
    for cpu in online[:2]:
        cpus.pin_irq(irq, cpu)
        before = cpus.irq_per_cpu(irq)
        res = zc_transfer(nic, family, bind=1, steer=1, size=MiB)
        ran = [b - a for a, b in zip(before, cpus.irq_per_cpu(irq), strict=True)]
        assert res["final"] == 0 and res["bytes"] == MiB and res["match"], (cpu, res)
        assert res["stats"] == {"copy_count": 0, "copy_bytes": 0}, (cpu, res["stats"])
        assert res["incoming_cpu"] == cpu, (cpu, res["incoming_cpu"])
        assert ran[cpu] > 0 and sum(ran) == ran[cpu], (cpu, ran)
        assert res["bound_after"] == [] and res["pins_after"] == 0 and res["pools_after"] == 0, res
