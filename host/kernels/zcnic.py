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

from host.cache import cache_root, locked
from host.errors import LabError, first_error
from host.guestimage.image import build_in_image

NIC = Path(__file__).resolve().parents[2] / "nic"


def _sources() -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(NIC.iterdir())
        if p.suffix in (".c", ".h") or p.name in ("Makefile", "Kbuild")
    }


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
    with locked(out.parent / "lock"):  # parallel workers: one builds, the others wait for it
        if not out.exists():
            _build(kernel, image, out)
    return out


def _build(kernel, image, out: Path) -> None:
    log = out.parent / "build.log"
    tmp_out = out.with_name("zcnic.ko.tmp")
    if kernel.tree:
        with tempfile.TemporaryDirectory(prefix="zcrx-lab-zcnic-") as tmp:
            for name, data in _sources().items():
                (Path(tmp) / name).write_bytes(data)
            proc = subprocess.run(
                ["make", "-C", str(kernel.tree), f"M={tmp}", "modules"], capture_output=True, text=True
            )
            log.write_text(proc.stdout + proc.stderr)
            built = Path(tmp) / "zcnic.ko"
            if proc.returncode != 0 or not built.exists():
                error = first_error(proc.stdout + proc.stderr)
                raise LabError(f"zcnic does not build for {kernel.describe()}: {error or 'see ' + str(log)}")
            shutil.copy(built, tmp_out)
        tmp_out.rename(out)  # never a half-written module where a reader looks
        return
    ko = build_in_image(
        image,
        {f"nic/{name}": data for name, data in _sources().items()},
        f"make -C /lib/modules/{kernel.release}/build M=/nic modules",
        "nic/zcnic.ko",
        f"zcnic for {kernel.describe()}",
        log,
    )
    tmp_out.write_bytes(ko)
    tmp_out.rename(out)
