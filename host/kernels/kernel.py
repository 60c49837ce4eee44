"""Kernel providers: which kernel image, config and modules a run boots.

`--kernel` takes `default` (Debian's prebuilt kernel inside the guest image),
`debug` (Debian's linux-source of the same version, built with kconfigs/
base+zcrx+debug: KASAN, kmemleak, lockdep, fault injection),
a built kernel tree (its arch/x86/boot/bzImage and .config) or a bzImage path
(its config beside it as `config-RELEASE` or `.config`, or embedded with
CONFIG_IKCONFIG). Every kernel is checked for the options the lab needs before
anything boots, so a bad kernel costs a one-line error, not a hung VM.
"""

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from host.errors import LabError
from host.kernels.kconfig import parse_config

# Options the lab needs, and why. Modules are fine where the kernel comes with
# its modules directory (they go into the initramfs); otherwise built-in.
REQUIRED = {
    "IO_URING": "io_uring itself",
    "IO_URING_ZCRX": "zero-copy receive",
    "PAGE_POOL": "zcrx buffers come from page pools",
    "INET": "TCP",
    "IPV6": "upstream's iou-zcrx test runs over IPv6",
    "NET_RX_BUSY_POLL": "a dependency of IO_URING_ZCRX",
    "VIRTIO_PCI": "the VM's devices",
    "VIRTIO_NET": "control and test NICs",
    "NET_9P": "the root filesystem over 9p",
    "NET_9P_VIRTIO": "the root filesystem over 9p",
    "9P_FS": "the root filesystem over 9p",
    "OVERLAY_FS": "a writable layer over the read-only image",
    "TMPFS": "the writable layer",
    "DEVTMPFS": "/dev in the guest",
    "BLK_DEV_INITRD": "the initramfs that mounts the root",
    "SERIAL_8250_CONSOLE": "the console log the splat scanner reads",
    "UNIX": "the SSH server",
    "MAGIC_SYSRQ": "the harness's crash self-test",
}
# Options that must be built in even when modules are available.
BUILTIN = {
    "BLK_DEV_INITRD",
    "SERIAL_8250_CONSOLE",
    "DEVTMPFS",
    "TMPFS",
    "INET",
    "UNIX",
    "IO_URING",
    "IO_URING_ZCRX",
    "PAGE_POOL",
    "NET_RX_BUSY_POLL",
    "MAGIC_SYSRQ",
}


@dataclass
class Kernel:
    spec: str  # what the user asked for
    image: Path  # the bzImage QEMU boots
    release: str  # uname -r
    config: dict[str, str]  # CONFIG_X -> value ("y", "m", "64", '"str"')
    modules: Path | None  # lib/modules/RELEASE, when the kernel has one
    tree: Path | None  # source/build tree, for from-source kernels

    def describe(self) -> str:
        return f"{self.spec} ({self.release})"

    @property
    def uapi_headers(self) -> Path | None:
        """The tree's installed uapi headers (`make headers`: usr/include), if any."""
        if self.tree and (self.tree / "usr/include/linux/io_uring/zcrx.h").exists():
            return self.tree / "usr/include"
        return None


def bzimage_release(path: Path) -> str:
    """The release string of a bzImage, or a LabError if it is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(0x10000)
    except OSError as exc:
        raise LabError(f"kernel {path}: {exc.strerror}") from None
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        raise LabError(f"kernel {path}: not a kernel image (no x86 bzImage header)")
    (offset,) = struct.unpack_from("<H", head, 0x20E)
    start = offset + 0x200
    text = head[start : start + 256].split(b"\0")[0].decode(errors="replace")
    return text.split()[0] if text else "unknown"


def embedded_config(path: Path) -> str | None:
    """The config CONFIG_IKCONFIG embedded in a kernel image, if any.

    It sits gzip-compressed between the IKCFG_ST/IKCFG_ED markers of the
    decompressed kernel; a bzImage compresses the kernel again, so only the
    gzip-compressed bzImage case can be read without a decompressor for the
    outer layer. The common case (config next to the image) does not need it.
    """
    data = path.read_bytes()
    for blob in _gzip_members(data):
        start = blob.find(b"IKCFG_ST")
        if start >= 0:
            end = blob.find(b"IKCFG_ED", start)
            return gzip.decompress(blob[start + 8 : end]).decode(errors="replace")
    return None


def _gzip_members(data: bytes):
    yield data
    pos = data.find(b"\x1f\x8b\x08")
    while pos >= 0:
        try:
            yield gzip.decompress(data[pos:])
        except (OSError, EOFError, gzip.BadGzipFile):
            pass
        pos = data.find(b"\x1f\x8b\x08", pos + 1)
        if pos > 4 << 20:
            break


def provision(spec: str):
    """(Kernel, GuestImage) for a --kernel value; a bad path fails before the image is built."""
    from host.guestimage import image

    if spec not in ("default", "debug"):
        resolve(spec, None)
    img = image.guest_image()
    return resolve(spec, img), img


def resolve(spec: str, image, coverage: bool = False, build: bool = True) -> Kernel:
    """Turn a --kernel value into a checked Kernel. IMAGE is the GuestImage.

    COVERAGE asks for a kernel with gcov data to collect: `debug` is then
    built with kconfigs/coverage added; any other kernel must be a tree built
    with CONFIG_GCOV_KERNEL (its .gcno files are needed for the report).
    A source tree without a build of its own as new as its sources is built out
    of tree (tree_build), unless BUILD is False (--no-build): then it is refused.
    """
    if spec == "default" and coverage:
        raise LabError(
            "--coverage: Debian's prebuilt kernel has no gcov (CONFIG_GCOV_KERNEL); use --kernel=debug "
            "or a tree built with `python3 -m host build-kernel TREE --coverage`"
        )
    if spec == "default":
        kernel = Kernel(
            spec="default",
            image=image.vmlinuz,
            release=image.kernel_version,
            config=parse_config(image.kernel_config.read_text()),
            modules=image.modules,
            tree=None,
        )
    else:
        path = Path(spec).expanduser()
        if spec == "debug":  # Debian's linux-source with base+zcrx+debug, built once
            from host.kernels.build import build

            path = build("debug", coverage=coverage)
        elif path.is_dir() and _is_source_tree(path):
            path = tree_build(path, build, coverage)
        kernel = _from_path(path)
        kernel.spec = spec
        if coverage and (kernel.tree is None or kernel.config.get("GCOV_KERNEL") != "y"):
            raise LabError(
                f"--coverage: kernel {kernel.describe()} is not a tree built with "
                "CONFIG_GCOV_KERNEL=y (python3 -m host build-kernel TREE --coverage)"
            )
        if (
            kernel.modules is None
            and image is not None
            and (image.root / "lib/modules" / kernel.release).is_dir()
        ):
            kernel.modules = image.root / "lib/modules" / kernel.release
    # Without the image (a fail-fast check before building it), modules it
    # may carry for this release are given the benefit of the doubt.
    check(kernel, modules_may_exist=image is None)
    return kernel


def _is_source_tree(path: Path) -> bool:
    return (path / "Makefile").exists() and (path / "Kconfig").exists()


SOURCE_SUFFIXES = {".c", ".h", ".S", ".lds", ".rs"}


def newest_source(tree: Path) -> float:
    """The newest modification time of TREE's sources and Kconfig/Makefiles (build
    outputs, .git and hidden directories left out)."""
    newest = 0.0
    for root, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if Path(name).suffix in SOURCE_SUFFIXES or name.startswith(("Kconfig", "Makefile", "Kbuild")):
                try:
                    newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
                except OSError:
                    continue
    return newest


def _fresh(build_dir: Path, sources: float) -> bool:
    bz = build_dir / "arch/x86/boot/bzImage"
    return bz.exists() and (build_dir / ".config").exists() and bz.stat().st_mtime >= sources


def tree_build(tree: Path, build: bool = True, coverage: bool = False) -> Path:
    """The build of source TREE to boot: its own in-tree build if it is as new as the
    sources; else the lab's out-of-tree build (`build-kernel TREE`, the kconfigs
    fragments), made or brought up to date here unless BUILD is False."""
    from host.kernels import build as kbuild

    sources = newest_source(tree)
    if not coverage and _fresh(tree, sources):
        return tree
    fragments = kbuild.fragment_list(str(tree), coverage=coverage)
    out = kbuild.build_dir(str(tree), fragments)
    if _fresh(out, sources):
        return out
    if not build:
        state = "is older than its sources" if (out / "vmlinux").exists() else "does not exist"
        raise LabError(
            f"kernel tree {tree}: its build {state} and --no-build was given; "
            f"build it with: python3 -m host build-kernel {tree}"
        )
    return kbuild.build(str(tree), fragments=fragments, coverage=coverage)


def _from_path(path: Path) -> Kernel:
    if not path.exists():
        raise LabError(f"kernel {path}: no such file or directory")
    if path.is_dir():
        bz = path / "arch/x86/boot/bzImage"
        if not bz.exists():
            raise LabError(f"kernel tree {path}: no arch/x86/boot/bzImage (build it first)")
        config_file = path / ".config"
        if not config_file.exists():
            raise LabError(f"kernel tree {path}: no .config")
        release_file = path / "include/config/kernel.release"
        release = release_file.read_text().strip() if release_file.exists() else bzimage_release(bz)
        return Kernel(
            str(path), bz, release, parse_config(config_file.read_text()), _modules_dir(path, release), path
        )
    release = bzimage_release(path)
    for candidate in (
        path.with_name(f"config-{release}"),
        path.parent / ".config",
        path.parents[3] / ".config" if len(path.parents) > 3 else None,
    ):
        if candidate and candidate.exists():
            text = candidate.read_text()
            break
    else:
        text = embedded_config(path)
        if text is None:
            raise LabError(
                f"kernel {path}: no config found (put it beside the image as "
                f"config-{release} or build with CONFIG_IKCONFIG=y)"
            )
    modules = _modules_dir(path.parent, release)
    return Kernel(str(path), path, release, parse_config(text), modules, None)


def _modules_dir(base: Path, release: str) -> Path | None:
    for candidate in (
        base / "lib/modules" / release,
        base / ".zcrx-lab-modules/lib/modules" / release,
    ):
        if (candidate / "modules.dep").exists():
            return candidate
    return None


def missing_options(kernel: Kernel, modules_may_exist: bool = False) -> list[str]:
    missing = []
    for option in REQUIRED:
        value = kernel.config.get(option)
        if value == "y":
            continue
        if value == "m" and (kernel.modules or modules_may_exist) and option not in BUILTIN:
            continue
        need = "=y" if value == "m" else ""
        missing.append(f"CONFIG_{option}{need}")
    return missing


def check(kernel: Kernel, modules_may_exist: bool = False) -> None:
    missing = missing_options(kernel, modules_may_exist)
    if not missing:
        return
    text = f"kernel {kernel.describe()} lacks required options: {', '.join(missing)}"
    if kernel.tree is not None:  # a tree the user configured (virtme-ng's minimal config...)
        items = " ".join(f"--configitem {opt.partition('=')[0]}=y" for opt in missing)
        text += (
            f"; with virtme-ng: vng --build {items}; or let the lab build it out of tree "
            f"with its fragments: python3 -m host build-kernel {kernel.tree}"
        )
    raise LabError(text)
