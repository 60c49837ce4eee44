"""Build zcnic (nic/) against the kernel under test, with that kernel's compiler.

`default`: inside the guest image (its gcc-14 and the kernel's headers), in a
private mount namespace with a throwaway overlay over the read-only image.
A source tree: `make -C TREE M=...` with the host compiler that built it.
The module is cached by its sources and the kernel, so a run builds it once.
"""

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from host.cache import cache_root
from host.errors import LabError

NIC = Path(__file__).resolve().parent.parent / "nic"


def _sources() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(NIC.iterdir())
            if p.suffix in (".c", ".h") or p.name in ("Makefile", "Kbuild")}  # fmt: skip


def _key(kernel, image) -> str:
    digest = hashlib.sha256(kernel.release.encode())
    for name, data in _sources().items():
        digest.update(name.encode() + hashlib.sha256(data).digest())
    if kernel.tree:
        digest.update(str(kernel.image.stat().st_mtime_ns).encode())
    else:
        digest.update(str(image.root.parent).encode())
    return digest.hexdigest()[:16]


def build(kernel, image) -> Path:
    """Path of zcnic.ko for KERNEL (built if not cached)."""
    out = cache_root() / "zcnic" / _key(kernel, image) / "zcnic.ko"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-zcnic-") as tmp:
        tmp = Path(tmp)
        if kernel.tree:
            src = tmp / "nic"
            src.mkdir()
            for name, data in _sources().items():
                (src / name).write_bytes(data)
            cmd = ["make", "-C", str(kernel.tree), f"M={src}", "modules"]
            built = src / "zcnic.ko"
        else:
            cmd, built = _chroot_build(tmp, kernel, image)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not built.exists():
            log = out.parent / "build.log"
            log.write_text(proc.stdout + proc.stderr)
            errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "error" in ln]
            raise LabError(f"zcnic does not build for {kernel.describe()}: "
                           f"{errors[0] if errors else 'see ' + str(log)}")  # fmt: skip
        shutil.copy(built, out)
    return out


def _chroot_build(tmp: Path, kernel, image) -> tuple[list[str], Path]:
    upper, work, merged = tmp / "upper", tmp / "work", tmp / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    src = upper / "nic"
    src.mkdir()
    for name, data in _sources().items():
        (src / name).write_bytes(data)
    script = (
        f"mount -t overlay overlay -o lowerdir={image.root},upperdir={upper},workdir={work} {merged}"
        f" && mount -t proc proc {merged}/proc"  # objtool reads /proc
        f" && chroot {merged} make -C /lib/modules/{kernel.release}/build M=/nic modules"
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script], src / "zcnic.ko"
