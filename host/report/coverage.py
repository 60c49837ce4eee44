"""Kernel line coverage for --coverage: gcda out of the guest, lcov on the host.

A gcov kernel (kconfigs/coverage) keeps one .gcda per profiled object under
/sys/kernel/debug/gcov/<build dir>/; the counters live as long as the kernel,
so they are copied into the results directory (shared as /results) before the
VM shuts down. A boot that ends in a panic or a hang takes its counters with
it; the summary says how many boots it covers. The notes (.gcno) stay in the
build directory on the host, at the same path the guest names, so each copied
.gcda gets a link to its .gcno beside it and lcov reads the pair. One
tracefile per boot; genhtml merges them into the HTML report and the summary
sums them line by line.
"""

import re
import subprocess
from pathlib import Path
from typing import NamedTuple

from host.errors import LabError

FOCUS = ("io_uring/zcrx.c", "net/core/page_pool.c", "net/core/netdev_rx_queue.c")
# Why the suite leaves what it leaves of io_uring/zcrx.c unreached (kept by hand)
UNREACHED_REASONS = Path(__file__).with_name("zcrx_unreached.txt")
KEEP = ("*/io_uring/*", "*/net/core/*")
GCOV_ROOT = "/sys/kernel/debug/gcov"


def guest_copy_command(dest: str) -> str:
    """Shell for the guest: copy every .gcda under GCOV_ROOT into DEST, print
    how many. debugfs reports them with size 0, so cat, not cp."""
    return (
        f"cd {GCOV_ROOT} && n=0 && for f in $(find . -name '*.gcda'); do "
        f'mkdir -p "{dest}/${{f%/*}}" && cat "$f" > "{dest}/$f" && n=$((n+1)); done; echo $n'
    )


def link_notes(data: Path) -> int:
    """Put a link to each copied .gcda's .gcno beside it; returns how many.

    The guest path below GCOV_ROOT is the build directory's host path."""
    linked = 0
    for gcda in data.rglob("*.gcda"):
        gcno = Path("/") / gcda.relative_to(data).with_suffix(".gcno")
        link = gcda.with_suffix(".gcno")
        if gcno.exists() and not link.exists():
            link.symlink_to(gcno)
            linked += 1
    return linked


def _lcov_major() -> int:
    out = subprocess.run(["lcov", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)", out)
    return int(m.group(1)) if m else 1


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = log.read_text().strip().splitlines()[-3:]
        raise LabError(f"{cmd[0]} failed (exit {rc}): {' | '.join(tail)} (full log: {log})")


def capture(data: Path, tracefile: Path, log: Path) -> None:
    """lcov tracefile of one boot's data, kept to io_uring/ and net/core/."""
    # lcov 2.x stops on what 1.x only warned about; kernel gcov data has
    # these (inline functions seen from several objects, counters racing).
    relax = ["--ignore-errors", "mismatch,negative,inconsistent,unused"] if _lcov_major() >= 2 else []
    raw = tracefile.with_suffix(".all.info")
    _run(["lcov", "--quiet", "--capture", "--directory", str(data), "--output-file", str(raw), *relax], log)
    _run(["lcov", "--quiet", "--extract", str(raw), *KEEP, "--output-file", str(tracefile), *relax], log)
    raw.unlink()


def parse_info(text: str) -> dict[str, dict[int, int]]:
    """source path -> {line: execution count} from an lcov tracefile."""
    files: dict[str, dict[int, int]] = {}
    lines: dict[int, int] = {}
    for row in text.splitlines():
        if row.startswith("SF:"):
            lines = files.setdefault(row[3:], {})
        elif row.startswith("DA:"):
            number, count = row[3:].split(",")[:2]
            lines[int(number)] = lines.get(int(number), 0) + max(int(count), 0)
    return files


def merge(infos: list[dict[str, dict[int, int]]]) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    for info in infos:
        for path, lines in info.items():
            into = out.setdefault(path, {})
            for number, count in lines.items():
                into[number] = into.get(number, 0) + count
    return out


def line_coverage(files: dict[str, dict[int, int]], suffix: str) -> tuple[int, int] | None:
    """(lines hit, lines instrumented) of the file whose path ends with SUFFIX."""
    for path, lines in files.items():
        if path.endswith("/" + suffix):
            return sum(1 for c in lines.values() if c > 0), len(lines)
    return None


def summary(files: dict[str, dict[int, int]]) -> str:
    parts = []
    for name in FOCUS:
        cov = line_coverage(files, name)
        if cov is None:
            parts.append(f"{name} not profiled")
        else:
            hit, total = cov
            parts.append(f"{name} {100.0 * hit / max(total, 1):.1f}% ({hit}/{total} lines)")
    return ", ".join(parts)


class Block(NamedTuple):
    """A run of unreached lines: the function it is in, its first and last line and the
    first line's code, whitespace squeezed (what the reasons file names it by)."""

    function: str
    first: int
    last: int
    code: str


# a definition starts at column 0; its name is the first word before a "("
# ("static int f(", "struct x *f(", or "f(" under a "static int" line)
_FUNCTION = re.compile(r"^(?=[A-Za-z_])(?:[^(]*\W)?(\w+)\s*\(")


def unreached_blocks(lines: dict[int, int], source: list[str]) -> list[Block]:
    """The runs of instrumented lines never executed; lines gcov does not instrument
    (comments, braces, declarations) do not break a run, a reached line does."""
    function_at, current = {}, "?"
    for number, text in enumerate(source, 1):
        m = _FUNCTION.match(text)
        if m and not text.rstrip().endswith(";"):
            current = m.group(1)
        function_at[number] = current
    blocks: list[Block] = []
    run: list[int] = []
    for number in sorted(lines) + [None]:
        zero = number is not None and lines[number] == 0
        if zero and run and function_at[number] == function_at[run[0]]:
            run.append(number)
            continue
        if run:
            code = " ".join(source[run[0] - 1].split())
            blocks.append(Block(function_at[run[0]], run[0], run[-1], code))
        run = [number] if zero else []
    return blocks


def read_reasons(path: Path = UNREACHED_REASONS) -> dict[tuple[str, str], str]:
    """(function, code) -> reason, from `function | code | reason` lines."""
    reasons = {}
    for row in path.read_text().splitlines():
        if not row.strip() or row.startswith("#"):
            continue
        parts = [p.strip() for p in row.split(" | ")]
        if len(parts) != 3 or not all(parts):
            raise LabError(f"{path}: not `function | code | reason`: {row}")
        reasons[parts[0], parts[1]] = parts[2]
    return reasons


def explain(blocks: list[Block], reasons: dict[tuple[str, str], str]) -> list[tuple[Block, str | None]]:
    return [(b, reasons.get((b.function, b.code))) for b in blocks]


def unreached_report(files: dict[str, dict[int, int]], out: Path) -> str:
    """OUT: io_uring/zcrx.c's unreached blocks, each with its reason or NO REASON; a
    summary of how many have none."""
    path = next((p for p in files if p.endswith("/io_uring/zcrx.c")), None)
    if path is None or not Path(path).exists():
        return "io_uring/zcrx.c: no source to list unreached lines against"
    blocks = explain(unreached_blocks(files[path], Path(path).read_text().splitlines()), read_reasons())
    rows = [f"{b.first}-{b.last} {b.function} | {b.code} | {why or 'NO REASON'}" for b, why in blocks]
    out.write_text("".join(r + "\n" for r in rows))
    missing = sum(1 for _, why in blocks if why is None)
    return (
        f"io_uring/zcrx.c: {len(blocks)} unreached blocks, "
        f"{missing} without a reason in {UNREACHED_REASONS.name} ({out})"
    )


def combined(results: Path) -> str | None:
    """The summary of a parallel run's boots, all workers' (RESULTS/gw*/coverage/boot*.info)
    merged line by line, with the unreached list in RESULTS/coverage/; None without any."""
    tracefiles = sorted(results.glob("gw*/coverage/boot*.info"))
    if not tracefiles:
        return None
    files = merge([parse_info(t.read_text()) for t in tracefiles])
    (results / "coverage").mkdir(exist_ok=True)
    gaps = unreached_report(files, results / "coverage" / "zcrx-unreached.txt")
    return f"line coverage ({len(tracefiles)} boots, every worker's): {summary(files)}; {gaps}"


def report(coverage_dir: Path, boots: int) -> str:
    """Tracefiles and HTML from every boot's data under COVERAGE_DIR; the
    one-line summary."""
    from host.setup import debian_packages

    debian_packages({"lcov": "/usr/bin/lcov"})
    log = coverage_dir / "lcov.log"
    tracefiles = []
    for data in sorted(coverage_dir.glob("boot*/")):
        if not any(data.rglob("*.gcda")):
            continue
        link_notes(data)
        tracefile = coverage_dir / f"{data.name}.info"
        capture(data, tracefile, log)
        tracefiles.append(tracefile)
    if not tracefiles:
        raise LabError(f"no gcov data was collected from the guest ({boots} boots, all ended in a crash?)")
    _run(["genhtml", "--quiet", "--output-directory", str(coverage_dir / "html"), *map(str, tracefiles)], log)
    files = merge([parse_info(t.read_text()) for t in tracefiles])
    covered = f"{len(tracefiles)} of {boots} boots" if len(tracefiles) < boots else f"{boots} boots"
    gaps = unreached_report(files, coverage_dir / "zcrx-unreached.txt")
    return f"line coverage ({covered}): {summary(files)}; {gaps}; HTML: {coverage_dir / 'html/index.html'}"
