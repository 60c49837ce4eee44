"""Keeping CPUs free of NET_RX for a test, and counting where NET_RX ran.

quiet_all_but(cpu) moves everything of ours that could make another CPU run NET_RX onto
`cpu`: interrupts, tasks, unbound workqueues, timers, IPv6 router solicitations. Each
change registers its undo with `defer`, so the guest is as before when the test ends.
"""

import os
import time

from guest_tests.lib import sysctl
from guest_tests.lib.defer import defer
from guest_tests.lib.nic import NETNS, sh

WQ_CPUMASK = "/sys/devices/virtual/workqueue/cpumask"


def net_rx_counts() -> list:
    """NET_RX softirqs run so far, per CPU (/proc/softirqs)."""
    with open("/proc/softirqs") as f:
        for line in f:
            if line.split(":")[0].strip() == "NET_RX":
                return [int(v) for v in line.split()[1:]]
    return []


def irq_counts(cpu: int) -> dict:
    """{interrupt: count on CPU} from /proc/interrupts."""
    out = {}
    with open("/proc/interrupts") as f:
        ncpu = len(f.readline().split())
        for line in f:
            fields = line.split()
            if len(fields) > ncpu and fields[cpu + 1].isdigit():
                out[" ".join([fields[0]] + fields[ncpu + 1 :])] = int(fields[cpu + 1])
    return out


def irq_per_cpu(irq: int) -> list:
    """How often interrupt IRQ ran on each CPU (its /proc/interrupts line)."""
    with open("/proc/interrupts") as f:
        ncpu = len(f.readline().split())
        for line in f:
            fields = line.split()
            if fields[0] == f"{irq}:":
                return [int(v) for v in fields[1 : ncpu + 1]]
    raise LookupError(f"no interrupt {irq} in /proc/interrupts")


def move_irqs(match: str, cpu: int):
    """Point the interrupts whose /proc/interrupts line names MATCH at CPU."""
    with open("/proc/interrupts") as f:
        irqs = [ln.split(":")[0].strip() for ln in f if match in ln]
    for irq in (int(i) for i in irqs if i.isdigit()):
        try:
            pin_irq(irq, cpu)
        except OSError:  # some interrupts cannot move (per-CPU, managed)
            continue


def pin_irq(irq: int, cpu: int):
    """Interrupt IRQ onto CPU (/proc/irq/IRQ/smp_affinity_list) for the test."""
    path = f"/proc/irq/{irq}/smp_affinity_list"
    with open(path) as f:
        old = f.read().strip()
    _write(path, str(cpu))
    defer(_write, path, old)


def pin_self(cpus: set):
    """This process onto CPUS (its children inherit it)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    defer(os.sched_setaffinity, 0, old)


def pin_tasks(cpus: set):
    """Every other task that may move onto CPUS (per-CPU kernel threads cannot)."""
    old = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
        try:
            was = os.sched_getaffinity(pid)
        except OSError:
            continue
        if _set_affinity(pid, cpus):
            old[pid] = was
    defer(lambda: [_set_affinity(pid, was) for pid, was in old.items()])


def _set_affinity(pid, cpus):
    try:
        os.sched_setaffinity(pid, cpus)
        return True
    except OSError:  # gone, or a per-CPU kernel thread
        return False


def unbound_work_on(cpu: int):
    """Unbound workqueues (io_uring's ring exit, which restarts a queue) onto CPU only."""
    with open(WQ_CPUMASK) as f:
        old = f.read().strip()
    _write(WQ_CPUMASK, f"{1 << cpu:x}")  # a hex mask
    defer(_write, WQ_CPUMASK, old)


def no_router_solicitations():
    """net.ipv6.conf.*.router_solicitations = 0 here and in netns `remote`."""
    for ns in ("", NETNS):
        prefix = f"ip netns exec {ns} " if ns else ""
        listing = sh(f"{prefix}sysctl -a -r 'net.ipv6.conf.*.router_solicitations'", check=False).stdout
        for line in listing.splitlines():
            key, _, old = line.partition(" = ")
            sh(f"{prefix}sysctl -q -w {key}=0", check=False)
            defer(sh, f"{prefix}sysctl -q -w {key}={old}", check=False)


def quiet_all_but(cpu: int):
    """Leave every other CPU to the test: nothing else of ours may make them run NET_RX.
    SSH to this guest arrives over virtio (its interrupts) and leaves from dropbear (virtio's
    TX NAPI runs on the sending CPU); IPv6 router solicitations are sent from timers; an
    idle CPU expires other CPUs' timers (timer migration: the SSH socket's delayed ACK
    went out on the other CPU); unbound workqueues run anywhere."""
    move_irqs("virtio", cpu)
    pin_self({cpu})
    pin_tasks({cpu})
    if sysctl.exists("kernel.timer_migration"):
        sysctl.set_for_test("kernel.timer_migration", 0)
    unbound_work_on(cpu)
    no_router_solicitations()
    # x86 moves an interrupt when it next fires, still on the old CPU: make the SSH
    # interface receive something now (the host's ACK of this line), not later
    print("cpus: interrupts, tasks and unbound work moved to CPU", cpu, flush=True)
    time.sleep(0.5)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
