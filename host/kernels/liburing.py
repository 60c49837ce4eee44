"""liburing's own zcrx test (test/zcrx.c), from the source of the very liburing the guest
image has, built with the image's toolchain against that liburing.

- The version: the image's dpkg status (liburing-dev, from sid; see host/guestimage/image.py
  SID_PACKAGES).
- The source: Debian's `liburing` source package of that version (.dsc, .orig.tar,
  .debian.tar), fetched with `apt-get source --download-only` from the host's own Debian
  archive through a private deb-src configuration, unpacked (and Debian's patches
  applied, if it has any) once per version into cache_root()/liburing/<version>/src.
- The build: upstream's test Makefile's flags, with the image's gcc-14, headers and
  -luring (not the source's own src/include: the binary runs against the image's
  library), inside the image (host/guestimage/image.py build_in_image), cached by the
  sources and the image. Two binaries: `zcrx.t`, the test unmodified, and `zcrx-one`,
  guest_tests/liburing_zcrx_one.c, which includes zcrx.c and runs one sub-test by name.

`stage()` copies both, with the sub-tests the source's run_tests() calls (cases.txt) and
the version, into a directory the guest sees.
"""

import hashlib
import re
import shutil
import subprocess
import tarfile
import tempfile
from functools import partial
from pathlib import Path

from host.cache import cache_root, locked, made_once
from host.errors import LabError
from host.guestimage.apt import PrivateApt, host_mirror
from host.guestimage.image import build_in_image

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "guest_tests" / "liburing_zcrx_one.c"
# test/zcrx.c and what it includes from the tree (helpers.h includes ../src/setup.h)
FILES = ["test/zcrx.c", "test/helpers.c", "test/helpers.h", "test/test.h", "src/setup.h"]
# sid first: the image takes liburing from there; the others in case it moved on
SUITES = ["sid", "trixie-backports", "trixie"]
# upstream's test/Makefile CPPFLAGS and CFLAGS, less -I../src/include and its
# config-host.h (zcrx.c and helpers.c use none of its CONFIG_ macros)
CFLAGS = (
    "-D_GNU_SOURCE -D__SANE_USERSPACE_TYPES__ -D_LARGEFILE_SOURCE -D_FILE_OFFSET_BITS=64 "
    "-g -O3 -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -DLIBURING_BUILD_TEST"
)


def image_version(image) -> str:
    """The Debian version of liburing-dev installed in IMAGE."""
    status = (image.root / "var/lib/dpkg/status").read_text(errors="replace")
    for stanza in status.split("\n\n"):
        if re.search(r"^Package: liburing-dev$", stanza, re.M) and re.search(
            r"^Status: install ok installed$", stanza, re.M
        ):
            m = re.search(r"^Version: (\S+)$", stanza, re.M)
            if m:
                return m.group(1)
    raise LabError(
        f"guest image {image.root.parent.name} has no liburing-dev: "
        "rebuild it (host/guestimage/image.py SID_PACKAGES)"
    )


def source_tree(version: str) -> Path:
    """The unpacked liburing source of VERSION (fetched once)."""
    base = cache_root() / "liburing" / version
    tree = base / "src"
    made_once((tree / "test/zcrx.c").exists, base / "lock", partial(_fetch, version, tree))
    return tree


def _fetch(version: str, tree: Path) -> None:
    apt = PrivateApt(cache_root() / "apt-src", host_mirror(), SUITES, kind="deb-src", valid_until=False)
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-liburing-", dir=tree.parent) as tmp:
        tmp = Path(tmp)
        for attempt in range(2):
            proc = subprocess.run(
                ["apt-get", *apt.options(), "-q", "source", "--download-only", f"liburing={version}"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode == 0 and list(tmp.glob("*.dsc")):
                break
            if attempt == 0:
                apt.update()
        else:
            detail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise LabError(
                f"cannot download the source of liburing {version} (the guest image's) from "
                f"{apt.mirror} ({', '.join(SUITES)}): {detail}"
            )
        staging = tmp / "tree"
        _unpack(tmp, version, staging)
        if not (staging / "test/zcrx.c").exists():
            raise LabError(f"liburing {version}'s source has no test/zcrx.c")
        (staging / "VERSION").write_text(f"liburing {version}\n")
        if tree.exists():
            shutil.rmtree(tree)
        staging.rename(tree)


def _extract_data(tar: tarfile.TarFile, dest: Path) -> None:
    """TAR into DEST, refusing what a source tarball has no business holding (absolute
    paths, links out of DEST, devices): Python's "data" filter where it has one (3.11.4
    on), the same checks by hand on Debian 12's 3.11.2."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        link = (target.parent / member.linkname).resolve() if member.issym() or member.islnk() else root
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise LabError(f"{tar.name}: {member.name} is not a file, directory or link")
        if not target.is_relative_to(root) or not link.is_relative_to(root):
            raise LabError(f"{tar.name}: {member.name} points outside the tree")
    tar.extractall(dest)


def _unpack(where: Path, version: str, dest: Path) -> None:
    """The .orig tarball into DEST, then Debian's patches (debian/patches/series) on it."""
    upstream = version.split(":")[-1].rsplit("-", 1)[0]
    origs = sorted(where.glob(f"liburing_{upstream}.orig.tar.*"))
    origs = [p for p in origs if not p.name.endswith(".asc")]
    if not origs:
        raise LabError(f"liburing {version}: no .orig tarball among {[p.name for p in where.iterdir()]}")
    with tarfile.open(origs[0]) as tar:
        _extract_data(tar, where / "orig")
    [top] = list((where / "orig").iterdir())
    top.rename(dest)
    debian = sorted(where.glob(f"liburing_{version.split(':')[-1]}.debian.tar.*"))
    if debian:
        shutil.rmtree(dest / "debian", ignore_errors=True)  # upstream ships one; dpkg-source replaces it
        with tarfile.open(debian[0]) as tar:
            _extract_data(tar, dest)
        series = dest / "debian/patches/series"
        lines = series.read_text().splitlines() if series.exists() else []
        for name in [ln.split()[0] for ln in lines if ln.strip() and not ln.startswith("#")]:
            patch = dest / "debian/patches" / name
            proc = subprocess.run(
                ["patch", "-p1", "-s", "-i", str(patch)], cwd=dest, capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise LabError(f"liburing {version}: Debian's {name} does not apply: {proc.stdout[-300:]}")


def cases(tree: Path) -> list[str]:
    """The sub-tests test/zcrx.c's run_tests() calls, in order (function names without
    `test_`)."""
    text = (tree / "test/zcrx.c").read_text()
    m = re.search(r"^static int run_tests\(void\)\n\{\n(.*?)^\}", text, re.M | re.S)
    if not m:
        raise LabError("liburing's test/zcrx.c has no run_tests(): its layout changed")
    return list(dict.fromkeys(re.findall(r"\bret = test_(\w+)\(", m.group(1))))


def _key(sources: dict, image) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name] + b"\0")
    digest.update(str(image.root.parent).encode())
    meta = image.root.parent / "image.json"
    if meta.exists():
        digest.update(meta.read_bytes())
    return digest.hexdigest()[:16]


def binaries(image) -> tuple[Path, Path]:
    """(zcrx.t, zcrx-one) built from the image's liburing version's source in IMAGE."""
    version = image_version(image)
    tree = source_tree(version)
    sources = {f"src/liburing/{f}": (tree / f).read_bytes() for f in FILES}
    sources["src/liburing/test/zcrx-one.c"] = WRAPPER.read_bytes()
    out = cache_root() / "liburing" / version / "bin" / _key(sources, image)
    built = out / "zcrx.t", out / "zcrx-one"
    if all(b.exists() for b in built):
        return built
    out.mkdir(parents=True, exist_ok=True)
    with locked(out / "lock"):  # parallel workers: one builds, the others wait for it
        for binary, source in zip(built, ("zcrx.c", "zcrx-one.c"), strict=True):
            if not binary.exists():
                _build(image, sources, source, binary, version)
    return built


def _build(image, sources: dict, source: str, out: Path, version: str) -> None:
    product = f"src/liburing/test/{out.name}"
    data = build_in_image(
        image,
        sources,
        f"cd /src/liburing/test && gcc-14 {CFLAGS} -o {out.name} {source} helpers.c -luring -lpthread",
        product,
        f"liburing {version}'s test/{source} (in the guest image)",
        out.parent / f"{out.name}.build.log",
    )
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    tmp.rename(out)


def stage(image, dest: Path) -> Path:
    """zcrx.t, zcrx-one, cases.txt (run_tests()'s sub-tests) and VERSION under DEST."""
    version = image_version(image)
    tree = source_tree(version)
    whole, one = binaries(image)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for binary in (whole, one):
        shutil.copy(binary, dest / binary.name)
        (dest / binary.name).chmod(0o755)
    (dest / "cases.txt").write_text("".join(f"{c}\n" for c in cases(tree)))
    (dest / "VERSION").write_text(f"liburing {version}\n")
    return dest
