"""Upstream's own zcrx selftest, unmodified: drivers/net/hw/iou-zcrx.{py,c}.

The test and the Python libraries it imports come from the kernel under test:
- `default`: Debian's `linux-source-X.Y` package of the very version the guest
  image boots (trixie-backports, through the lab's private apt configuration).
  Only the subtrees the test needs are taken out of it, once per version, into
  cache_root()/selftests/<version>/tree.
- a kernel tree (`kernel.tree`): the tree itself.

The C helpers (HELPERS: iou-zcrx.c, napi_id_helper.c, xdp_helper.c) are built the way
upstream's Makefiles build them (`$(CC) -D_GNU_SOURCE= -I<selftests> X.c
LDLIBS`: lib.mk's CFLAGS, no kernel headers), inside the guest image (its
gcc-14, glibc and liburing: the binaries run there), in a private mount
namespace with a throwaway overlay over the read-only image, each cached by its
sources and the image.

`stage()` lays the result out in a directory the guest sees (the results
directory), keeping the kernel tree's layout, which the test's libraries rely
on (in-tree mode: KSRC/tools/net/ynl, KSRC/Documentation/netlink/specs).
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import partial
from pathlib import Path

from host.cache import cache_root, made_once
from host.errors import LabError
from host.guestimage.apt import PrivateApt, host_mirror
from host.guestimage.image import build_in_image

SELFTESTS = "tools/testing/selftests"
DRV = f"{SELFTESTS}/drivers/net"
HW = f"{DRV}/hw"
TEST = f"{HW}/iou-zcrx.py"
# C helper -> (what it includes besides libc, relative to its directory; LDLIBS)
HELPERS = {
    f"{HW}/iou-zcrx.c": ((), "-luring"),
    f"{DRV}/napi_id_helper.c": (("../../net/lib/ksft.h",), ""),
    f"{SELFTESTS}/net/lib/xdp_helper.c": (("ksft.h",), ""),
}
# The driver selftests (drivers/net/*.py, hw/*.py with iou-zcrx.py, their lib/py
# shims) and what they import: the net selftest library, YNL and its specs.
SUBTREES = [
    "tools/testing/selftests/drivers/net",
    "tools/testing/selftests/net/lib/py",
    "tools/testing/selftests/net/lib/ksft.h",
    "tools/testing/selftests/net/lib/xdp_helper.c",
    "tools/net/ynl/pyynl",
    "Documentation/netlink/specs",
]
SUITES = ["trixie", "trixie-backports"]


def source_package(kernel, image) -> tuple[str, str]:
    """(package, version) of the Debian source package of the default kernel."""
    major_minor = ".".join(kernel.release.split(".")[:2])
    return f"linux-source-{major_minor}", image.package_version


def source_tree(kernel, image) -> Path:
    """The root of a kernel source tree holding the selftest (fetched if needed)."""
    if kernel.tree:
        root = Path(kernel.tree)
        if (root / "source").is_dir():  # an O= build directory points at its source
            root = (root / "source").resolve()
        if not (root / TEST).exists():
            raise LabError(f"kernel tree {root}: no {TEST} (upstream's zcrx selftest)")
        return root
    if kernel.spec != "default":
        raise LabError(
            f"kernel {kernel.describe()}: no source tree to take upstream's "
            "selftest from (use 'default' or a kernel tree)"
        )
    package, version = source_package(kernel, image)
    full = cache_root() / "sources" / version / "tree"  # a debug build's whole source
    if (full / "Makefile").exists() and _complete(full):
        return full
    base = cache_root() / "selftests" / version
    tree = base / "tree"
    made_once(lambda: _complete(tree), base / "lock", partial(_fetch, package, version, tree))
    return tree


def _complete(tree: Path) -> bool:
    """TREE has the selftest and every subtree staged from it (SUBTREES grows)."""
    return (tree / TEST).exists() and all((tree / sub).exists() for sub in SUBTREES)


def full_source_tree(image) -> Path:
    """The whole Debian linux-source tree of the default kernel (for kernel builds)."""
    major_minor = ".".join(image.kernel_version.split(".")[:2])
    package, version = f"linux-source-{major_minor}", image.package_version
    base = cache_root() / "sources" / version
    tree = base / "tree"
    made_once(
        (tree / "Makefile").exists, base / "lock", lambda: _fetch(package, version, tree, subtrees=None)
    )
    return tree


def _fetch(package: str, version: str, tree: Path, subtrees=tuple(SUBTREES)) -> None:
    apt = PrivateApt(cache_root() / "apt", host_mirror(), SUITES)
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-src-", dir=tree.parent) as tmp:
        tmp = Path(tmp)
        deb = _download(apt, package, version, tmp)
        staging = tmp / "tree"
        staging.mkdir()
        # linux-source-X.Y ships usr/src/linux-source-X.Y.tar.xz; stream it out
        # of the .deb and keep only the subtrees the test needs.
        inner = f"./usr/src/{package}.tar.xz"
        top = package
        script = (
            'dpkg-deb --fsys-tarfile "$1" | tar -xOf - "$2" | '
            'tar -xJf - -C "$3" --strip-components=1 ' + " ".join(f"{top}/{sub}" for sub in subtrees or ())
        )
        proc = subprocess.run(
            ["bash", "-ec", "set -o pipefail; " + script, "bash", str(deb), inner, str(staging)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not (staging / (TEST if subtrees else "Makefile")).exists():
            raise LabError(
                f"cannot extract upstream's selftest from {deb.name}: "
                f"{proc.stderr.strip()[-300:] or 'no ' + TEST}"
            )
        (staging / "VERSION").write_text(f"{package} {version}\n")
        if tree.exists():
            shutil.rmtree(tree)
        staging.rename(tree)


def _download(apt: PrivateApt, package: str, version: str, where: Path) -> Path:
    """apt-get download PACKAGE=VERSION into WHERE; update the lists once if needed."""
    for attempt in range(2):
        proc = subprocess.run(
            ["apt-get", *apt.options(), "-q", "download", f"{package}={version}"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        debs = sorted(where.glob(f"{package}_*.deb"))
        if proc.returncode == 0 and debs:
            return debs[0]
        if attempt == 0:
            apt.update()
    detail = (proc.stderr.strip().splitlines() or ["?"])[-1]
    raise LabError(f"cannot download {package}={version} from {apt.mirror}: {detail}")


def _helper_key(sources: dict[str, bytes], image) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + hashlib.sha256(sources[name]).digest())
    digest.update(str(image.root.parent).encode())
    meta = image.root.parent / "image.json"
    if meta.exists():
        digest.update(meta.read_bytes())
    return digest.hexdigest()[:16]


def helpers(kernel, image) -> dict[str, Path]:
    """Each of HELPERS built from KERNEL's source inside IMAGE (cached): tree path of
    the binary -> the cached binary."""
    tree = source_tree(kernel, image)
    built = {}
    for source, (includes, libs) in HELPERS.items():
        directory = Path(source).parent
        sources = {source: (tree / source).read_bytes()}
        for include in includes:
            path = (directory / include).as_posix()
            sources[path] = (tree / directory / include).read_bytes()
        name = Path(source).stem
        out = cache_root() / "selftests" / "bin" / _helper_key(sources, image) / name
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            build = partial(_build_helper, image, source, sources, libs, out)
            made_once(out.exists, out.parent / "lock", build)
        built[f"{directory}/{name}"] = out
    return built


def _build_helper(image, source: str, sources: dict[str, bytes], libs: str, out: Path) -> None:
    if "-luring" in libs and not (image.root / "usr/include/liburing.h").exists():
        raise LabError(
            f"guest image {image.root.parent.name} has no liburing-dev: "
            "rebuild it (host/guestimage/image.py SID_PACKAGES)"
        )
    # upstream: lib.mk CFLAGS (-D_GNU_SOURCE= -I<selftests>) and the Makefile's LDLIBS;
    # the image has gcc-14 without the `gcc` alternative.
    directory, name = Path(source).parent, Path(source).stem
    files = {f"src/{path}": data for path, data in sources.items()}
    binary = build_in_image(
        image,
        {os.path.normpath(path): data for path, data in files.items()},
        f"cd /src/{directory} && gcc-14 -D_GNU_SOURCE= -I/src/{SELFTESTS} {name}.c -o {name} {libs}",
        f"src/{directory}/{name}",
        f"upstream's {name}.c (in the guest image)",
        out.parent / "build.log",
    )
    tmp_out = out.with_name(f"{name}.tmp")
    tmp_out.write_bytes(binary)
    tmp_out.chmod(0o755)
    tmp_out.rename(out)


YNL = ["tools/net/ynl/pyynl", "Documentation/netlink/specs"]


def stage_ynl(kernel, image, dest: Path) -> Path:
    """Copy the kernel's YNL library and netlink specs under DEST (mirroring the tree:
    DEST/tools/net/ynl/pyynl, DEST/Documentation/netlink/specs); return DEST."""
    tree = source_tree(kernel, image)
    if dest.exists():
        shutil.rmtree(dest)
    for sub in YNL:
        if not (tree / sub).is_dir():
            raise LabError(f"kernel tree {tree}: no {sub} (the kernel's YNL)")
        shutil.copytree(tree / sub, dest / sub, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def stage(kernel, image, dest: Path) -> Path:
    """Copy the selftest subtrees and the built helper under DEST; return DEST.

    DEST mirrors the kernel tree: DEST/tools/testing/selftests/drivers/net/hw/
    holds iou-zcrx.py and the iou-zcrx binary, each helper lies beside its source.
    """
    tree = source_tree(kernel, image)
    binaries = helpers(kernel, image)
    if dest.exists():
        shutil.rmtree(dest)
    for sub in SUBTREES:
        if (tree / sub).is_file():
            (dest / sub).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tree / sub, dest / sub)
        elif (tree / sub).exists():
            shutil.copytree(
                tree / sub,
                dest / sub,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.pyc"),
            )
    for path, binary in binaries.items():
        shutil.copy(binary, dest / path)
        (dest / path).chmod(0o755)
    version = tree / "VERSION"
    (dest / "VERSION").write_text(version.read_text() if version.exists() else f"tree {tree}\n")
    return dest
