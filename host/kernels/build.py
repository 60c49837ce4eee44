"""Build a kernel from source with the lab's config fragments.

    python3 -m host build-kernel TREE|debug [--fragments base,zcrx,debug] [--coverage] [-j N]

TREE is any kernel source tree; `debug` is Debian's linux-source-7.x (the
version the default kernel has) with base+zcrx+debug. The build goes out of
tree (O=) into the cache, keyed by the source and the fragments, so a second
run with nothing changed does no compile work; ccache is used when present.
After configuring, every option the fragments ask for is checked: what
olddefconfig dropped is named (an unmet dependency), and the build stops.

--coverage adds kconfigs/coverage (gcov). io_uring/ has its own switch
(CONFIG_GCOV_PROFILE_URING); net/core/ has none, so each of its objects is
named on make's command line (GCOV_PROFILE_<obj>.o=y). An object of the same
name elsewhere in the tree gets profiled too; the report keeps io_uring/ and
net/core/ only.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from host.cache import cache_root, locked
from host.errors import LabError
from host.kernels.kconfig import parse_config

KCONFIGS = Path(__file__).resolve().parents[2] / "kconfigs"
DEFAULT_FRAGMENTS = {"debug": ["base", "zcrx", "debug"], "tree": ["base", "zcrx"]}


def requested(fragments: list[str]) -> dict[str, str]:
    """CONFIG option -> value the fragments ask for (later fragments win)."""
    wanted: dict[str, str] = {}
    for name in fragments:
        path = KCONFIGS / f"{name}.config"
        if not path.exists():
            raise LabError(f"no config fragment {path}")
        for line in path.read_text().splitlines():
            line = line.strip()
            if line.startswith("CONFIG_") and "=" in line:
                key, value = line[len("CONFIG_") :].split("=", 1)
                wanted[key] = value
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                wanted[line[len("# CONFIG_") : -len(" is not set")]] = "n"
    return wanted


def dropped(config: dict[str, str], wanted: dict[str, str]) -> list[str]:
    out = []
    for key, value in wanted.items():
        have = config.get(key, "n")
        if have != value:
            out.append(f"CONFIG_{key}={value} (got {have})")
    return out


def _source(spec: str) -> tuple[Path, str]:
    """(source tree, identity for the cache key)."""
    if spec == "debug":
        from host.guestimage.image import guest_image
        from host.kernels.upstream import full_source_tree

        image = guest_image()
        return full_source_tree(image), f"debian:{image.package_version}"
    tree = Path(spec).expanduser().resolve()
    if not (tree / "Makefile").exists() or not (tree / "Kconfig").exists():
        raise LabError(f"{tree} is not a kernel source tree (no Makefile/Kconfig)")
    return tree, f"tree:{tree}"


def gcov_make_args(src: Path) -> list[str]:
    """make variables that profile every net/core object (see above)."""
    return [f"GCOV_PROFILE_{c.stem}.o=y" for c in sorted((src / "net/core").glob("*.c"))]


def build(
    spec: str, fragments: list[str] | None = None, jobs: int | None = None, coverage: bool = False
) -> Path:
    """Build SPEC; returns the O= directory (bzImage and .config inside)."""
    fragments = fragment_list(spec, fragments, coverage)
    src, _ = _source(spec)
    out = build_dir(spec, fragments)
    with locked(out.with_name(out.name + ".lock")):  # parallel workers: one make at a time in OUT
        build_tree(src, out, fragments, jobs)
    return out


def build_dir(spec: str, fragments: list[str]) -> Path:
    """The O= directory `build` uses for SPEC and FRAGMENTS (whether built or not)."""
    src, identity = _source(spec)
    key = hashlib.sha256(f"{identity}|{','.join(fragments)}".encode()).hexdigest()[:16]
    return cache_root() / "builds" / f"{spec if spec == 'debug' else src.name}-{key}"


def fragment_list(spec: str, fragments: list[str] | None = None, coverage: bool = False) -> list[str]:
    fragments = list(fragments or DEFAULT_FRAGMENTS["debug" if spec == "debug" else "tree"])
    if coverage and "coverage" not in fragments:
        fragments.append("coverage")
    return fragments


def build_dir_for(worktree: Path, fragments: list[str]) -> Path:
    """The O= directory series and bisect keep for one worktree path (see host/ci/gitwork.py)."""
    key = hashlib.sha256(f"worktree:{worktree}|{','.join(fragments)}".encode()).hexdigest()[:16]
    return cache_root() / "builds" / f"{worktree.name}-{key}"


def make_command(src: Path, out: Path, fragments: list[str]) -> list[str]:
    make = ["make", "-C", str(src), f"O={out}"]
    if shutil.which("ccache"):
        make.append("CC=ccache gcc")
    if "coverage" in fragments:
        make += gcov_make_args(src)
    return make


def build_tree(src: Path, out: Path, fragments: list[str], jobs: int | None = None) -> int:
    """Configure (if the fragments changed) and build SRC into OUT; files compiled."""
    from host.setup import KERNEL_BUILD_PACKAGES, debian_packages

    debian_packages(KERNEL_BUILD_PACKAGES)
    out.mkdir(parents=True, exist_ok=True)
    frag_text = "".join((KCONFIGS / f"{f}.config").read_text() for f in fragments)
    wanted = requested(fragments)
    make = make_command(src, out, fragments)
    stamp = out / ".zcrx-lab-fragments"
    start = time.monotonic()
    if not (out / ".config").exists() or not stamp.exists() or stamp.read_text() != frag_text:
        _log(f"configuring {src} with {'+'.join(fragments)} into {out}")
        _check(make + ["allnoconfig"])
        _check(
            [
                str(src / "scripts/kconfig/merge_config.sh"),
                "-m",
                "-O",
                str(out),
                str(out / ".config"),
                *[str(KCONFIGS / f"{f}.config") for f in fragments],
            ]
        )
        _check(make + ["olddefconfig"])
        missing = dropped(parse_config((out / ".config").read_text()), wanted)
        if missing:
            raise LabError(
                f"the fragments ask for options this tree cannot set (unmet dependencies or "
                f"unknown symbols): {', '.join(missing)}"
            )
        stamp.write_text(frag_text)
    jobs = jobs or (os.cpu_count() or 1) + 1
    first = "; the first build takes about 15 minutes on 2 cores" if not (out / "vmlinux").exists() else ""
    _log(f"building {src.name} (-j{jobs}){first}")
    # `modules` also writes Module.symvers, without which out-of-tree
    # modules (zcnic) do not link; `headers` installs the uapi headers
    # (usr/include) the guest checks the zcrx client's structs against.
    # Without -s, kbuild prints one line per step: the progress count.
    compiled = _make_with_progress([*make, f"-j{jobs}", "bzImage", "modules", "headers"], out / "build.log")
    _log(
        f"built {out / 'arch/x86/boot/bzImage'} in {time.monotonic() - start:.0f} s "
        f"({compiled} files compiled)"
    )
    return compiled


WARNING = re.compile(r"^(?P<file>[^\s:]+):\d+:(?:\d+:)? warning: (?P<text>.*)$")


def warnings_in(log: str, files: list[str], src: Path | None = None) -> list[str]:
    """Compiler warnings located in FILES (relative to SRC), as 'file: text' (line
    numbers dropped: a patch moves lines, and a warning that only moved is not new)."""
    wanted = set(files)
    found = []
    for line in log.splitlines():
        m = WARNING.match(line.strip())
        if not m:
            continue
        name = os.path.normpath(m.group("file"))
        if src and os.path.isabs(name) and name.startswith(f"{src}/"):
            name = name[len(str(src)) + 1 :]
        while name.startswith("../"):
            name = name[3:]
        if name in wanted:
            found.append(f"{name}: {m.group('text').translate(QUOTES)}")
    return found


QUOTES = str.maketrans("\u2018\u2019", "''")  # gcc's typographic quotes


def compile_warnings(src: Path, out: Path, fragments: list[str], files: list[str]) -> list[str]:
    """Recompile the objects of FILES (.c) with W=1 and return their warnings.

    The normal build compiles a file only when it changed, so its log says
    nothing about an unchanged parent; this asks both sides the same way.
    """
    objects = [f[:-2] + ".o" for f in files if f.endswith(".c")]
    objects = [o for o in objects if (out / o).exists()]  # built in this configuration
    if not objects:
        return []
    for obj in objects:
        (out / obj).unlink(missing_ok=True)
    proc = subprocess.run(
        [*make_command(src, out, fragments), "W=1", *objects],
        capture_output=True,
        text=True,
        errors="replace",
    )
    return warnings_in(proc.stdout + proc.stderr, files, src)


STEP = re.compile(r"^  (CC|AS|LD|AR|HOSTCC|HOSTLD|OBJCOPY|MODPOST|BTF|GEN|HDRINST)\b")


def _make_with_progress(cmd: list[str], log: Path, every: float = 15.0) -> int:
    """Run make, its output into LOG; every EVERY seconds say how many steps
    are done and the latest (one rewritten line on a terminal). Returns the
    number of compile (CC/AS) steps: 0 for a rebuild that had nothing to do."""
    compiled = steps = shown = 0
    last, latest = time.monotonic(), ""
    tty = sys.stderr.isatty()
    with open(log, "w") as f:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        for line in proc.stdout:
            f.write(line)
            m = STEP.match(line)
            if not m:
                continue
            steps += 1
            compiled += m.group(1) in ("CC", "AS")
            latest = line.split()[-1]
            if time.monotonic() - last >= every:
                last = time.monotonic()
                msg = f"[build] {steps} steps ({compiled} compiled), now {latest}"
                if tty:
                    msg = f"\r{msg[:100]:<100}"
                print(msg, end="" if tty else "\n", file=sys.stderr, flush=True)
                shown += 1
        rc = proc.wait()
    if tty and shown:
        print(file=sys.stderr)
    if rc != 0:
        errors = [ln for ln in log.read_text(errors="replace").splitlines() if "error" in ln.lower()]
        tail = errors[-3:] or log.read_text(errors="replace").splitlines()[-3:]
        raise LabError(f"make failed (exit {rc}): {' | '.join(t.strip() for t in tail)} (full log: {log})")
    return compiled


def _log(msg: str) -> None:
    print(f"[build] {msg}", file=sys.stderr, flush=True)


def _check(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-5:]
        raise LabError(f"{' '.join(cmd[:4])} ... failed: {' | '.join(tail)}")
