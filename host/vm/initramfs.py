"""The initramfs: static busybox, the transport modules, qemu/init.

Built per kernel and cached by its inputs (kernel release, module files,
init scripts, busybox), so a boot never waits for it twice.
"""

import gzip
import hashlib
import lzma
import os
import subprocess
from pathlib import Path

from host.cache import StatMemo, cache_root, input_key
from host.errors import LabError
from host.kernels.kernel import Kernel

QEMU_DIR = Path(__file__).resolve().parents[2] / "qemu"
# Config option -> module name, for the options stage 1 needs before the root
# filesystem is there. Only the ones a kernel builds as modules are packed.
EARLY_MODULES = {
    "VIRTIO_PCI": "virtio_pci",
    "NET_9P": "9pnet",
    "NET_9P_VIRTIO": "9pnet_virtio",
    "9P_FS": "9p",
    "OVERLAY_FS": "overlay",
    "VIRTIO_NET": "virtio_net",  # the control NIC, before sshd
}


BUSYBOX_PATHS = (Path("/bin/busybox"), Path("/usr/bin/busybox"))


def find_busybox() -> Path:
    for path in BUSYBOX_PATHS:
        if not path.exists():
            continue
        with path.open("rb") as binary:
            if b"ld-linux" not in binary.read(4096):
                return path
    raise LabError("a static busybox is needed for the initramfs (apt-get install busybox-static)")


def _module_order(kernel: Kernel) -> list[Path]:
    """Module files to load, dependencies first."""
    wanted = [m for opt, m in EARLY_MODULES.items() if kernel.config.get(opt) == "m"]
    if not wanted:
        return []
    deps = {}
    for line in (kernel.modules / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        deps[target] = rest.split()
    by_name = {}
    for target in deps:
        name = os.path.basename(target).split(".ko")[0].replace("-", "_")
        by_name[name] = target
    order: list[str] = []

    def visit(target: str) -> None:
        for dep in reversed(deps.get(target, [])):
            visit(dep)
        if target not in order:
            order.append(target)

    for name in wanted:
        if name not in by_name:
            raise LabError(f"kernel {kernel.describe()}: module {name} not in {kernel.modules}")
        visit(by_name[name])
    return [kernel.modules / t for t in order]


def _read_module(path: Path, keep_signature: bool) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        data = lzma.decompress(data)
    elif path.suffix == ".gz":
        data = gzip.decompress(data)
    elif path.suffix == ".zst":
        data = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return data if keep_signature else unsigned(data)


SIG_MAGIC = b"~Module signature appended~\n"


def unsigned(module: bytes) -> bytes:
    """MODULE without its appended signature (struct module_signature, whose last
    field is the big-endian signature length, then the magic string).

    Checking a distribution kernel's signature costs 30-40 ms of TCG per module, most
    of the initramfs's module loading. The kernel loads an unsigned module and marks
    itself tainted 'E' (unsigned module), which zcnic, out of tree, does anyway. A
    kernel that refuses unsigned modules (CONFIG_MODULE_SIG_FORCE) keeps them."""
    if not module.endswith(SIG_MAGIC):
        return module
    trailer = len(module) - len(SIG_MAGIC) - 12  # sizeof(struct module_signature)
    sig_len = int.from_bytes(module[trailer + 8 : trailer + 12], "big")
    return module[: trailer - sig_len]


def applets(busybox: Path) -> list[str]:
    """The applets BUSYBOX offers, linked in the archive: no `--install` at every boot."""
    out = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout
    return [name for name in out.split() if name != "busybox"]


def _cpio_entry(name: str, data: bytes, mode: int, ino: int, rdev=(0, 0)) -> bytes:
    namez = name.encode() + b"\0"
    header = "070701" + "".join(
        f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(namez), 0)
    )
    out = header.encode() + namez
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def initramfs(kernel: Kernel) -> Path:
    """The kernel's initramfs, from the cache when its files are as they were."""
    options = {opt: kernel.config.get(opt) for opt in [*EARLY_MODULES, "MODULE_SIG_FORCE"]}
    # per checkout too: another's qemu/init is another file
    key = input_key([str(QEMU_DIR), str(kernel.modules), options])
    memo = StatMemo(cache_root() / "initramfs" / f"{kernel.release}-{key}.stat")
    made = memo.get()
    if made:
        return made
    depmod = [kernel.modules / "modules.dep"] if kernel.modules else []
    stats = memo.stats([QEMU_DIR / "init", *BUSYBOX_PATHS, *depmod])
    modules = _module_order(kernel)
    stats |= memo.stats(modules)
    out = _build(kernel, modules, find_busybox())
    memo.put(out, stats)
    return out


def _build(kernel: Kernel, modules: list[Path], busybox: Path) -> Path:
    """The archive of init, BUSYBOX and MODULES, cached by their content."""
    # One busybox modprobe loads them all (a process each costs milliseconds of TCG):
    # their modules.dep lists them uncompressed, dependencies first, and none has
    # dependencies of its own there, so modprobe -a loads them in the order given
    directory = f"lib/modules/{kernel.release}"
    names = [p.name.split(".ko")[0] for p in modules]
    files = {
        "init": ((QEMU_DIR / "init").read_bytes(), 0o100755),
        "bin/busybox": (busybox.read_bytes(), 0o100755),
        f"{directory}/modules.dep": ("".join(f"{n}.ko:\n" for n in names).encode(), 0o100644),
    }
    for name in applets(busybox):
        files[f"bin/{name}"] = (b"busybox", 0o120777)
    for name, path in zip(names, modules, strict=True):
        keep = kernel.config.get("MODULE_SIG_FORCE") == "y"
        files[f"{directory}/{name}.ko"] = (_read_module(path, keep), 0o100644)
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + hashlib.sha256(files[name][0]).digest())
    out = cache_root() / "initramfs" / f"{kernel.release}-{digest.hexdigest()[:12]}.cpio"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    directories = ("bin", "lib", "lib/modules", directory, "dev", "proc", "sys", "ro", "rw", "newroot")
    blob = archive(directories, files)
    # a name of its own: parallel workers may write the same archive at once
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    tmp.rename(out)
    return out


def archive(directories, files: dict[str, tuple[bytes, int]]) -> bytes:
    """A newc cpio: DIRECTORIES, /dev/console and FILES (name -> (data, mode))."""
    blob = b""
    ino = 1
    for directory in directories:
        blob += _cpio_entry(directory, b"", 0o040755, ino)
        ino += 1
    # The kernel opens /dev/console for init before anything is mounted.
    blob += _cpio_entry("dev/console", b"", 0o020600, ino, rdev=(5, 1))
    ino += 1
    for name, (data, mode) in sorted(files.items()):
        blob += _cpio_entry(name, data, mode, ino)
        ino += 1
    blob += _cpio_entry("TRAILER!!!", b"", 0, 0)
    # Not compressed: the kernel's inflate of the archive costs a tenth of a
    # second of TCG before init, reading 4 MB more from the host's cache does not.
    return blob
