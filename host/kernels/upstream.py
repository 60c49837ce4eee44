"""Upstream's own zcrx selftest, unmodified: drivers/net/hw/iou-zcrx.{py,c}.

The test and the Python libraries it imports come from the kernel under test:
- `default`: Debian's `linux-source-X.Y` package of the very version the guest
  image boots (trixie-backports, through the lab's private apt configuration).
  Only the subtrees the test needs are taken out of it, once per version, into
  cache_root()/selftests/<version>/tree.
- a kernel tree (`kernel.tree`): the tree itself.

The C helpers (HELPERS) are built the way upstream's Makefiles build them
(`$(CC) -D_GNU_SOURCE= -I<selftests> X.c LDLIBS`: lib.mk's CFLAGS), against the
kernel under test's uapi headers (KHDR_INCLUDES: Debian's linux-libc-dev of the
same version, or the tree's `make headers`), inside the guest image (its gcc-14,
glibc and liburing: the binaries run there), in a private mount namespace with
a throwaway overlay over the read-only image, each cached by its sources and the
image. Helpers that speak netlink through YNL's C library (toeplitz, ncdevmem)
link libynl.a, made by upstream's tools/net/ynl Makefile there (net/ynl.mk);
its family code is generated on the host (ynl_gen_c.py validates the specs with
jsonschema, which the image lacks).

`stage()` lays the result out in a directory the guest sees (the results
directory), keeping the kernel tree's layout, which the test's libraries rely
on (in-tree mode: KSRC/tools/net/ynl, KSRC/Documentation/netlink/specs).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
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
YNL_DIR = "tools/net/ynl"


@dataclass(frozen=True)
class Helper:
    """An upstream C helper or BPF object and what its Makefile builds it with."""

    source: str  # its path in the tree
    includes: tuple[str, ...] = ()  # what it includes besides libc, relative to its directory
    libs: str = ""  # LDLIBS
    ynl: tuple[str, ...] = ()  # the YNL families it links (the Makefile's YNL_GENS)

    @property
    def bpf(self) -> bool:
        return self.source.endswith(".bpf.c")

    @property
    def product(self) -> str:
        """What the build makes: X from X.c, X.bpf.o from X.bpf.c (a BPF object)."""
        stem = Path(self.source).stem
        return f"{stem}.o" if self.bpf else stem


HW_YNL_GENS = ("ethtool", "netdev")  # drivers/net/hw/Makefile's YNL_GENS
HELPERS = [
    Helper(f"{HW}/iou-zcrx.c", libs="-luring"),
    Helper(f"{DRV}/napi_id_helper.c", ("../../net/lib/ksft.h",)),
    Helper(f"{SELFTESTS}/net/lib/xdp_helper.c", ("ksft.h",)),
    Helper(f"{SELFTESTS}/net/lib/gro.c", ("ksft.h", "../../kselftest.h")),
    Helper(f"{HW}/toeplitz.c", ("../../../kselftest.h", "../../../net/lib/ksft.h"), ynl=HW_YNL_GENS),
    Helper(f"{HW}/ncdevmem.c", ynl=HW_YNL_GENS),
    Helper(f"{SELFTESTS}/net/lib/xdp_dummy.bpf.c"),
    Helper(f"{HW}/nk_forward.bpf.c"),
    Helper(f"{HW}/nk_primary_rx_redirect.bpf.c"),
]
# net/bpf.mk's CLANG_SYS_INCLUDES: clang's own search list, after --target=bpf's (its
# empty input from echo: the build's chroot has no /dev/null)
BPF_SYS_INCLUDES = (
    "$(echo | clang -v -E - 2>&1 | "
    "sed -n '/<...> search starts here:/,/End of search list./{ s| \\(/.*\\)|-idirafter \\1|p }')"
)
# What libynl.a is made from (net/ynl.mk: make -C tools/net/ynl GENS=... libynl.a)
YNL_BUILD = [
    f"{YNL_DIR}/Makefile",
    f"{YNL_DIR}/Makefile.deps",
    f"{YNL_DIR}/lib",
    f"{YNL_DIR}/generated/Makefile",
    "tools/scripts/Makefile.arch",
    "include/uapi/linux",  # Makefile.deps -includes each family's uapi header from here
]
# The driver selftests (drivers/net/*.py, hw/*.py with iou-zcrx.py, their lib/py
# shims) and what they import: the net selftest library, YNL and its specs.
SUBTREES = [
    "tools/testing/selftests/drivers/net",
    "tools/testing/selftests/net/lib/py",
    "tools/testing/selftests/net/lib/ksft.h",
    "tools/testing/selftests/net/lib/xdp_helper.c",
    "tools/testing/selftests/net/lib/gro.c",
    "tools/testing/selftests/net/lib/xdp_dummy.bpf.c",
    "tools/testing/selftests/kselftest.h",
    "tools/net/ynl/pyynl",
    "Documentation/netlink/specs",
]
# What only the helpers' build reads (not staged for the guest)
BUILD_ONLY = [
    "Documentation/netlink",  # the specs' schemas
    "MAINTAINERS",  # ynl_gen_c.py finds the tree's root by it
    *YNL_BUILD,
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
    return (tree / TEST).exists() and all((tree / sub).exists() for sub in SUBTREES + BUILD_ONLY)


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


def _fetch(package: str, version: str, tree: Path, subtrees=(*SUBTREES, *BUILD_ONLY)) -> None:
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


def _helper_key(sources: dict[str, bytes], image, headers: str) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + hashlib.sha256(sources[name]).digest())
    digest.update(headers.encode())
    digest.update(str(image.root.parent).encode())
    meta = image.root.parent / "image.json"
    if meta.exists():
        digest.update(meta.read_bytes())
    return digest.hexdigest()[:16]


def _files(root: Path, sub: str) -> dict[str, bytes]:
    """SUB of ROOT (a file, or every file under a directory): tree path -> bytes."""
    path = root / sub
    if path.is_file():
        return {sub: path.read_bytes()}
    return {
        f.relative_to(root).as_posix(): f.read_bytes()
        for f in sorted(path.rglob("*"))
        if f.is_file() and "__pycache__" not in f.parts
    }


def _ynl_sources(tree: Path, families: tuple[str, ...]) -> dict[str, bytes]:
    """What libynl.a with FAMILIES is generated and built from."""
    sources = {}
    for sub in (*YNL_BUILD, f"{YNL_DIR}/pyynl", "MAINTAINERS"):
        sources.update(_files(tree, sub))
    for f in (tree / "Documentation/netlink").glob("*.yaml"):  # the specs' schemas
        sources[f.relative_to(tree).as_posix()] = f.read_bytes()
    for family in families:
        sources.update(_files(tree, f"Documentation/netlink/specs/{family}.yaml"))
    return sources


def kernel_headers(kernel, image) -> dict[str, Path]:
    """The kernel under test's uapi headers, where upstream's builds find them
    (KHDR_INCLUDES) laid over the image's /usr/include: overlay path -> file. For
    `default`, Debian's linux-libc-dev of the kernel's version (cached); for a tree,
    its `make headers` (usr/include)."""
    if kernel.tree:
        root = kernel.uapi_headers
        if root is None:
            raise LabError(f"kernel tree {kernel.tree}: no uapi headers (run `make headers` in it)")
        arch = "usr/include/x86_64-linux-gnu"  # where the image's glibc looks for asm/
        return {
            (f"{arch}/{rel}" if rel.startswith("asm/") else f"usr/include/{rel}"): root / rel
            for rel in (f.relative_to(root).as_posix() for f in root.rglob("*.h"))
        }
    version = image.package_version
    base = cache_root() / "selftests" / version
    root = base / "linux-libc-dev"
    made_once((root / "usr/include/linux").is_dir, base / "lock", partial(_fetch_libc_dev, version, root))
    return {f.relative_to(root).as_posix(): f for f in sorted((root / "usr/include").rglob("*.h"))}


def _fetch_libc_dev(version: str, root: Path) -> None:
    apt = PrivateApt(cache_root() / "apt", host_mirror(), SUITES)
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-libc-dev-", dir=root.parent) as tmp:
        deb = _download(apt, "linux-libc-dev", version, Path(tmp))
        staging = Path(tmp) / "root"
        proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], capture_output=True, text=True)
        if proc.returncode != 0 or not (staging / "usr/include/linux").is_dir():
            raise LabError(
                f"cannot extract {deb.name}: {proc.stderr.strip()[-300:] or 'no usr/include/linux'}"
            )
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)


def helpers(kernel, image) -> dict[str, Path]:
    """Each of HELPERS built from KERNEL's source inside IMAGE (cached): tree path of
    the binary -> the cached binary."""
    tree = source_tree(kernel, image)
    headers = kernel_headers(kernel, image)
    headers_digest = hashlib.sha256()
    for name, path in sorted(headers.items()):
        headers_digest.update(name.encode() + hashlib.sha256(path.read_bytes()).digest())
    built = {}
    for helper in HELPERS:
        directory = Path(helper.source).parent
        sources = {helper.source: (tree / helper.source).read_bytes()}
        for include in helper.includes:
            path = os.path.normpath(directory / include)
            sources[path] = (tree / path).read_bytes()
        if helper.ynl:
            sources.update(_ynl_sources(tree, helper.ynl))
        name = helper.product
        key = _helper_key(sources, image, headers_digest.hexdigest())
        out = cache_root() / "selftests" / "bin" / key / name
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            build = partial(_build_helper, image, helper, sources, headers, out)
            made_once(out.exists, out.parent / "lock", build)
        built[f"{directory}/{name}"] = out
    return built


def _generate_ynl(sources: dict[str, bytes], families: tuple[str, ...]) -> dict[str, bytes]:
    """FAMILIES' YNL C code (generated/<family>-user.[ch]), made on the host by upstream's
    tools/net/ynl/generated Makefile with this Python (PyYAML and jsonschema)."""
    outputs = [f"{family}-user.{ext}" for family in families for ext in ("c", "h")]
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-ynl-") as tmp:
        for path, data in sources.items():
            (Path(tmp) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / path).write_bytes(data)
        for script in (Path(tmp) / YNL_DIR / "pyynl").glob("*.py"):
            script.chmod(0o755)
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        generated = Path(tmp) / YNL_DIR / "generated"
        proc = subprocess.run(
            ["make", "-s", "-C", str(generated), f"GENS={' '.join(families)}", *outputs],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise LabError(f"YNL's C code generator failed for {' '.join(families)}: {detail}")
        return {f"{YNL_DIR}/generated/{name}": (generated / name).read_bytes() for name in outputs}


def _build_helper(
    image, helper: Helper, sources: dict[str, bytes], headers: dict[str, Path], out: Path
) -> None:
    if "-luring" in helper.libs and not (image.root / "usr/include/liburing.h").exists():
        raise LabError(
            f"guest image {image.root.parent.name} has no liburing-dev: "
            "rebuild it (host/guestimage/image.py SID_PACKAGES)"
        )
    # upstream: lib.mk CFLAGS (-D_GNU_SOURCE= -I<selftests>) and the Makefile's LDLIBS;
    # the image has gcc-14 without the `gcc` alternative.
    directory, name, source = Path(helper.source).parent, helper.product, Path(helper.source).name
    compile_ = f"cd /src/{directory} && gcc-14 -D_GNU_SOURCE= -I/src/{SELFTESTS}"
    command = f"{compile_} {source} -o {name} {helper.libs}"
    if helper.bpf:  # net/bpf.mk, with libbpf's headers from the image's libbpf-dev
        if not (image.root / "usr/bin/clang").exists():
            raise LabError(f"guest image {image.root.parent.name} has no clang: rebuild it (PACKAGES)")
        command = (
            f"cd /src/{directory} && clang -O2 -g --target=bpf -I/src/{SELFTESTS}/bpf "
            f"{BPF_SYS_INCLUDES} -c {source} -o {name}"
        )
    if helper.ynl:
        sources = {**sources, **_generate_ynl(sources, helper.ynl)}
        ynl, gens = f"/src/{YNL_DIR}", " ".join(helper.ynl)
        # net/ynl.mk; the generated code is newer than its specs, so make keeps it
        command = (
            f"touch {ynl}/generated/*-user.[ch] && "
            f"make -s -C {ynl} CC=gcc-14 GENS='{gens}' RSTS='' libynl.a && "
            f"{compile_} -I{ynl}/lib -I{ynl}/generated {source} {ynl}/libynl.a -o {name} {helper.libs}"
        )
    files = {f"src/{path}": data for path, data in sources.items()}
    files.update({path: file.read_bytes() for path, file in headers.items()})
    binary = build_in_image(
        image,
        {os.path.normpath(path): data for path, data in files.items()},
        command,
        f"src/{directory}/{name}",
        f"upstream's {source} (in the guest image)",
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
