"""Install what the lab needs on the host. Standard library only: this runs
before the virtual environment exists.

Debian packages (as root, through the host's own apt configuration), a
virtual environment with requirements.txt in .venv, kept until the
requirements change.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from host.errors import LabError

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
# Debian package -> a file that proves it is installed.
DEBIAN_PACKAGES = {
    "qemu-system-x86": "/usr/bin/qemu-system-x86_64",
    "mmdebstrap": "/usr/bin/mmdebstrap",
    "uidmap": "/usr/bin/newuidmap",  # mmdebstrap's unshare mode: the image built without root
    "busybox-static": "/bin/busybox",
    "openssh-client": "/usr/bin/ssh-keygen",
    "iproute2": "/sbin/ip",
    "xz-utils": "/usr/bin/xz",
    "zstd": "/usr/bin/zstd",
    "kmod": "/usr/bin/kmod",  # --vm=vng: virtme-ng finds the initramfs's modules with modprobe
    "ca-certificates": "/etc/ssl/certs",
}


def _log(msg: str) -> None:
    print(f"[setup] {msg}", file=sys.stderr, flush=True)


# What building a kernel from source needs on top (build-kernel, --kernel=debug).
KERNEL_BUILD_PACKAGES = {
    "build-essential": "/usr/bin/gcc",
    "flex": "/usr/bin/flex",
    "bison": "/usr/bin/bison",
    "bc": "/usr/bin/bc",
    "libelf-dev": "/usr/include/libelf.h",
    "libssl-dev": "/usr/include/openssl/ssl.h",
    "ccache": "/usr/bin/ccache",
    "lcov": "/usr/bin/lcov",
}


def debian_packages(packages: dict[str, str] = DEBIAN_PACKAGES) -> None:
    missing = [pkg for pkg, proof in packages.items() if not os.path.exists(proof)]
    busybox = Path("/bin/busybox")
    if packages is DEBIAN_PACKAGES and busybox.exists() and b"ld-linux" in busybox.read_bytes()[:4096]:
        missing.append("busybox-static")  # a dynamic busybox cannot run in the initramfs
    if not missing:
        return
    if os.geteuid() != 0:
        raise LabError(f"missing Debian packages; as root run: apt-get install {' '.join(missing)}")
    _log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "-q", "update"], check=False, stdout=subprocess.DEVNULL, env=env)
    proc = subprocess.run(
        ["apt-get", "-q", "-y", "install", *missing],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise LabError(f"apt-get install {' '.join(missing)} failed: {proc.stderr.strip()[-300:]}")


def venv() -> Path:
    python = VENV / "bin" / "python"
    requirements = (REPO / "requirements.txt").read_bytes()
    stamp = VENV / ".requirements.sha256"
    digest = hashlib.sha256(requirements).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    _log("creating the virtual environment .venv")
    if not python.exists():
        proc = subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"python3 -m venv failed (apt-get install python3-venv?): {proc.stderr.strip()}")
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(REPO / "requirements.txt")],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise LabError(f"pip install -r requirements.txt failed: {proc.stderr.strip()[-500:]}")
    stamp.write_text(digest)
    return python


def setup() -> Path:
    """Everything but the guest image; returns the venv's python."""
    if not shutil.which("apt-get"):
        raise LabError("zcrx-lab runs on Debian (12 or 13): apt-get not found")
    debian_packages()
    return venv()
