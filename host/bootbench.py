"""Boot benchmark: the lab's boot to SSH against a bare boot of the same kernel.

    python3 -m host bench-boot [--kernel K] [--rounds N]

The bare boot is the lab's own QEMU command for the kernel (same machine, firmware,
accelerator, memory, CPUs and kernel arguments) with nothing of the lab's: no shares,
no NICs, and an initramfs whose init (static busybox) powers off at once. It is what
the kernel alone costs. The lab's boot is host/vm/qemu.py VM.start() until SSH answers.
Both are timed in wall and CPU seconds (QEMU's, plus the lab's own process and its
helpers for the lab), alternately, ROUNDS times each, and their ratios printed. Where
the lab's time goes comes from the guest: its kernel log's "init done" (the
initramfs's work: modules, 9p, overlay), the SSH server's start, our connection's
and the first SSH command, all
on the guest's clock.
"""

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from host.kernels.kernel import provision
from host.vm.initramfs import archive, find_busybox
from host.vm.qemu import VM
from host.vm.vmlinux import boot_image
from qemu.machine import MachineSpec

# the guest's clock when init starts, on the console, then power off
BARE_INIT = (
    b"#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n"
    b"echo bare init at $(/bin/busybox cut -d' ' -f1 /proc/uptime) >/dev/console\n"
    b"/bin/busybox poweroff -f\n"
)


def bare_initramfs(directory: Path) -> Path:
    """An initramfs whose init powers the machine off: the kernel's boot and nothing else."""
    files = {"init": (BARE_INIT, 0o100755), "bin/busybox": (find_busybox().read_bytes(), 0o100755)}
    path = directory / "bare.cpio"
    path.write_bytes(archive(("bin", "dev", "proc"), files))
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _qemu_cpu(pid: int) -> float:
    """CPU seconds of a running process (utime + stime from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_boot(vm: VM, initrd: Path, console: Path) -> tuple[float, float, float]:
    """(wall, CPU) seconds of the kernel booting to an init that powers off, and the
    guest's clock when that init started."""
    spec = MachineSpec(
        kernel=boot_image(vm.kernel, vm.accel),
        initrd=initrd,
        rootfs=vm.image.root,
        console_log=console,
        ssh_port=0,
        accel=vm.accel,
        tsc_khz=vm.tsc_khz,
        cmdline_extra=vm.cmdline,
    )
    cmd = [str(a) for a in vm.machine.command(spec)]
    # the lab's machine without the lab: no 9p shares, no NICs (the control NIC too)
    keep, skip = [], 0
    for i, arg in enumerate(cmd):
        if skip:
            skip -= 1
            continue
        lab_device = arg == "-device" and cmd[i + 1].startswith(("virtio-9p", "virtio-net"))
        if arg in ("-fsdev", "-netdev") or lab_device:
            skip = 1
            continue
        keep.append(arg)
    before = _children_cpu()
    start = time.monotonic()
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(keep, timeout=600, **quiet)
    wall, cpu = time.monotonic() - start, _children_cpu() - before
    said = console.read_text(errors="replace").split("bare init at ")
    return wall, cpu, float(said[1].split()[0]) if len(said) > 1 else float("nan")


def lab_boot(vm: VM) -> tuple[float, float, dict[str, float]]:
    """(wall, CPU, guest milestones) of VM.start() to SSH."""
    before = _self_cpu() + _children_cpu()
    start = time.monotonic()
    vm.start()
    wall = time.monotonic() - start
    cpu = _qemu_cpu(vm.proc.pid) + _self_cpu() + _children_cpu() - before
    # the guest's clock: the kernel log's mark, and the start times (field 22 of
    # /proc/PID/stat, clock ticks since boot) of sshd and of our session's processes
    ready = time.monotonic()
    out = vm.run(
        "cat /proc/uptime; getconf CLK_TCK; dmesg | grep -m1 'zcrx-lab: init started'; "
        "dmesg | grep 'zcrx-lab: init done'; "
        "s() { cut -d' ' -f22 /proc/$1/stat; }; d=$(pgrep -o -x dropbear); s $d; p=$PPID; "
        "while [ $p -gt 1 ] && [ $p != $d ]; do s $p; p=$(cut -d' ' -f4 /proc/$p/stat); done",
        timeout=60,
    ).stdout.split()
    command_seconds = time.monotonic() - ready
    uptime, tick = float(out[0]), int(out[2])
    text = " ".join(out)

    def stamp(mark: str) -> float:  # "[   4.04] zcrx-lab: MARK" -> 4.04
        return float(text.split(f"] zcrx-lab: {mark}")[0].rsplit("[", 1)[1])

    starts = [int(t) / tick for t in out[out.index("done") + 1 :]]
    vm.stop()
    return (
        wall,
        cpu,
        {
            "init started": stamp("init started"),
            "init done": stamp("init done"),
            "dropbear (SSH) started": starts[0],
            "our connection's process started": min(starts[1:]),
            # the host's connect() returned: the first command's round trip before its uptime
            "SSH ready (about)": uptime - command_seconds / 2,
            "first SSH command": uptime,
        },
    )


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m host bench-boot")
    parser.add_argument("--kernel", default="default")
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args(args)
    kernel, image = provision(opts.kernel)
    bare: list[tuple[float, float, float]] = []
    lab: list[tuple[float, float]] = []
    steps: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-bootbench-") as tmp:
        vm = VM(kernel, image, Path(tmp))
        initrd = bare_initramfs(Path(tmp))
        for r in range(opts.rounds):
            bare.append(bare_boot(vm, initrd, Path(tmp) / f"bare-{r}.log"))
            wall, cpu, marks = lab_boot(vm)
            lab.append((wall, cpu))
            steps.append(marks)
            print(
                f"round {r + 1}: bare {bare[-1][0]:.2f} s wall {bare[-1][1]:.2f} s CPU; "
                f"lab {wall:.2f} s wall {cpu:.2f} s CPU",
                flush=True,
            )

    def med(values) -> float:
        return statistics.median(values)

    bare_wall, bare_cpu = med(b[0] for b in bare), med(b[1] for b in bare)
    lab_wall, lab_cpu = med(w for w, _ in lab), med(c for _, c in lab)
    print(f"bare boot (kernel to an init that powers off): {bare_wall:.2f} s wall, {bare_cpu:.2f} s CPU")
    print(f"lab boot (to SSH): {lab_wall:.2f} s wall, {lab_cpu:.2f} s CPU (medians)")
    guest = "; ".join(f"{name} at {med(s[name] for s in steps):.2f} s" for name in steps[0])
    print(f"in the guest (its clock, median): bare init at {med(b[2] for b in bare):.2f} s; lab {guest}")
    print(
        f"{kernel.describe()} ({vm.accel}): lab/bare wall = {lab_wall / bare_wall:.2f}, "
        f"lab/bare CPU = {lab_cpu / bare_cpu:.2f}"
    )
    return 0
