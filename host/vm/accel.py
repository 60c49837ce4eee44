"""KVM where it works, TCG elsewhere; the TSC rate a TCG guest sees.

Some machines (these CI hosts among them) have a /dev/kvm that cannot run a
normal guest: QEMU aborts, or the guest dies with "KVM internal error" or
crawls. A probe boots the kernel under test to its "no init" panic with KVM:
a working KVM gets there in a second or two. The verdict is cached per host
kernel and QEMU version.
"""

import ctypes
import functools
import json
import mmap
import os
import platform
import pwd
import subprocess
import tempfile
import time
from pathlib import Path

from host.cache import cache_root

PROBE_SECONDS = 20


def kvm_openable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def probe_kvm(qemu: str, kernel: Path) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-kvm-") as tmp:
        log = Path(tmp) / "console.log"
        cmd = [
            qemu,
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-nographic",
            "-nodefaults",
            "-no-reboot",
            "-kernel",
            str(kernel),
            "-serial",
            f"file:{log}",
            "-append",
            "console=ttyS0 panic=-1 loglevel=3 rdinit=/nonexistent",
        ]
        start = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_SECONDS)
        except subprocess.TimeoutExpired:
            return False, f"a KVM guest did not reach its first panic in {PROBE_SECONDS} s"
        console = log.read_text(errors="replace") if log.exists() else ""
        if "Kernel panic" in console and "KVM internal error" not in proc.stderr:
            return True, f"KVM boots a guest in {time.monotonic() - start:.1f} s"
        why = (proc.stderr.strip().splitlines() or ["no panic reached"])[0]
        return False, f"KVM is present but cannot run a guest: {why}"


def pick_accel(qemu: str, kernel: Path) -> tuple[str, str]:
    """("kvm" or "tcg", why). ZCRX_LAB_ACCEL=kvm|tcg overrides the probe."""
    forced = os.environ.get("ZCRX_LAB_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced, "ZCRX_LAB_ACCEL"
    if not kvm_openable():
        if os.path.exists("/dev/kvm"):
            user = pwd.getpwuid(os.getuid()).pw_name
            return "tcg", f"/dev/kvm is not accessible to {user}; as root run: usermod -aG kvm {user}"
        return "tcg", "/dev/kvm is missing"
    key = f"{platform.release()}|{_qemu_version(qemu)}"
    verdicts_file = cache_root() / "kvm-probe.json"
    verdicts = json.loads(verdicts_file.read_text()) if verdicts_file.exists() else {}
    if key not in verdicts:
        verdicts[key] = probe_kvm(qemu, kernel)
        verdicts_file.write_text(json.dumps(verdicts, indent=1))
    works, why = verdicts[key]
    return ("kvm" if works else "tcg"), why


def _qemu_version(qemu: str) -> str:
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


# rdtsc; shl rdx, 32; or rax, rdx; ret: the host's time stamp counter as one u64
RDTSC = bytes.fromhex("0f31 48c1e220 4809d0 c3")


@functools.cache
def host_tsc_khz() -> int | None:
    """The host's TSC rate in kHz, which is a TCG guest's: QEMU's TCG answers the
    guest's rdtsc with the host's. None where it cannot be read (not an x86-64 host,
    or one that forbids executable memory).

    The guest is told it (tsc_early_khz) rather than left to calibrate: its kernel
    times the TSC against the emulated PIT, and on a busy host that loop lands far
    off (95 MHz for 2246 MHz, seen in a CI run beside a build) and wins over the
    right HPET figure. The guest's clock and timers then run 23 times fast: every
    guest timeout, RCU stall and hung task timer fires 23 times too soon. The
    kernel still refines the figure against the HPET a second after boot."""
    if platform.machine() != "x86_64":
        return None
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        return None
    page.write(RDTSC)
    rdtsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(page)))

    def reading() -> tuple[int, int]:
        """(ns, TSC) read together: the pair with the shortest bracket of 20, the
        ns its bracket's middle (the host may preempt us between the reads)."""
        brackets = []
        for _ in range(20):
            before = time.monotonic_ns()
            tsc = rdtsc()
            after = time.monotonic_ns()
            brackets.append((after - before, (before + after) // 2, tsc))
        _, ns, tsc = min(brackets)
        return ns, tsc

    ns0, tsc0 = reading()
    time.sleep(0.05)  # a bracket of a microsecond in 50 ms: 20 ppm
    ns1, tsc1 = reading()
    return round((tsc1 - tsc0) * 1_000_000 / (ns1 - ns0))
