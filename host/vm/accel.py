"""KVM where it works, TCG elsewhere.

Some machines (these CI hosts among them) have a /dev/kvm that cannot run a
normal guest: QEMU aborts, or the guest dies with "KVM internal error" or
crawls. A probe boots the kernel under test to its "no init" panic with KVM:
a working KVM gets there in a second or two. The verdict is cached per host
kernel and QEMU version.
"""

import json
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
