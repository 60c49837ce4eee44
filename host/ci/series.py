"""`python3 -m host series`: test a patch series commit by commit.

    python3 -m host series INPUT --tree T [--base REV] [TESTS...] [-m EXPR] [-k EXPR]
                           [--quick EXPR] [--every] [--reruns N] [--results-dir DIR]

INPUT is an mbox (`b4 am`, `git format-patch --stdout`), a directory of .patch
files, a BASE..HEAD range of T, or a lore message id (fetched with `b4 am`).
Patches are applied with `git am -3` in a worktree of T under the cache (never
T's own checkout) on --base (default T's HEAD).

BASE runs the selection (TESTS, -m, -k; default the whole guest suite); each
commit is built incrementally in one build directory, its touched files are
compiled with W=1 beside its parent's, checkpatch --strict reads its patch, and
it runs the quick selection (the selection narrowed by --quick, default
"nodev"), the last commit the full one (--every: the full one everywhere).

A test is charged to a commit only if it passed on the commit before it (or
on BASE) and fails on it; it is first rerun --reruns times (default 2) there,
and a pass makes it flaky, never charged. A test that fails only at the end
is located by bisecting the commits between its last pass and the end. A
test that fails on BASE is pre-existing. New boot splats are charged like
failures.

Results: series.md (a row per commit), series.json (a record per commit with
state success/warning/fail and a one-line description, as a patchwork check
takes it), junit/NN-SHA.xml, and each commit's build log and test results.
Exit 0 when no commit regresses, 1 when one does, 2 on bad input or when the
lab itself fails.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from host.ci import gitwork
from host.ci.testrun import REPO, NoTests, TestResult, TestRun
from host.errors import LabError

BOOT_CHECK = "guest_tests/test_harness.py::test_guest_runs_kernel_under_test"


@dataclass
class Regression:
    test: str
    message: str
    splats: list[str] = field(default_factory=list)
    how: str = "failed here, passed on the parent"


@dataclass
class CommitRecord:
    index: int  # 0: BASE
    sha: str
    subject: str
    build: str = "not built"
    build_seconds: float = 0.0
    compiled: int = 0
    warnings: list[str] = field(default_factory=list)
    checkpatch: str = "n/a"
    checkpatch_issues: list[str] = field(default_factory=list)
    boot: str = "-"
    selection: str = "-"
    counts: dict[str, int] = field(default_factory=dict)
    regressions: list[Regression] = field(default_factory=list)
    boot_splats: list[str] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def state(self) -> str:
        if (
            self.build.startswith("failed")
            or self.boot.startswith("failed")
            or self.regressions
            or self.boot_splats
        ):
            return "fail"
        if self.warnings or self.checkpatch_issues or self.flaky:
            return "warning"
        return "success"

    def description(self) -> str:
        """One line, the way a patchwork check shows it."""
        if self.build.startswith("failed"):
            return f"build {self.build}"
        if self.boot.startswith("failed"):
            return f"boot {self.boot}"
        parts = []
        if self.regressions:
            r = self.regressions[0]
            more = f" (+{len(self.regressions) - 1} more)" if len(self.regressions) > 1 else ""
            parts.append(f"new failure: {r.test}: {r.message}{more}")
        if self.boot_splats:
            parts.append(f"new splat while booting: {self.boot_splats[0]}")
        if self.warnings:
            parts.append(f"{len(self.warnings)} new compiler warnings")
        if self.checkpatch_issues:
            parts.append(f"checkpatch: {self.checkpatch}")
        if self.flaky:
            parts.append(f"{len(self.flaky)} flaky")
        if not parts:
            passed = self.counts.get("passed", 0)
            parts.append(f"builds, boots, {passed} tests pass" if self.selection != "-" else "builds")
        return "; ".join(parts)


@dataclass
class Selection:
    paths: list[str]
    mark: str | None = None
    keyword: str | None = None

    def args(self, narrow: str | None = None) -> list[str]:
        mark = f"({self.mark}) and ({narrow})" if self.mark and narrow else narrow or self.mark
        return [*self.paths, *(["-m", mark] if mark else []), *(["-k", self.keyword] if self.keyword else [])]


class Series:
    """One series run over COMMITS (records[0] is BASE) with LAB doing the work."""

    def __init__(
        self,
        worktree,
        lab,
        base: gitwork.Commit,
        commits: list[gitwork.Commit],
        selection: Selection,
        results: Path,
        quick: str | None = "nodev",
        every: bool = False,
        reruns: int = 2,
        say=print,
    ):
        self.wt, self.lab, self.results = worktree, lab, results
        self.selection, self.quick, self.every, self.reruns, self.say = selection, quick, every, reruns, say
        self.records = [CommitRecord(0, base.sha, base.subject)]
        self.records += [CommitRecord(i, c.sha, c.subject) for i, c in enumerate(commits, 1)]
        self.known: dict[str, dict[int, TestResult]] = {}  # test -> commit index -> result
        self.built: dict[int, bool] = {}  # commit index -> built (the parent's warnings need it)
        self.testable: dict[int, bool] = {}  # commit index -> built and booted
        self.boot_splats: dict[int, list[str]] = {}
        self.preexisting: dict[str, str] = {}
        self._runs = 0

    # -- the walk ---------------------------------------------------------------------
    def run(self) -> int:
        n = len(self.records) - 1
        base = self.records[0]
        self.say(f"[series] BASE {base.sha[:12]} {base.subject}: build and the full selection")
        self._build(base)
        if base.build != "ok":
            raise LabError(f"BASE {base.sha[:12]} does not build: {base.build}")
        run = self._test(base, "full")
        if run.boot_failure:
            raise LabError(f"BASE {base.sha[:12]} does not boot: {run.boot_failure.splitlines()[0]}")
        for t, r in run.tests.items():
            if r.failed:
                self.preexisting[t] = r.headline()
        for rec in self.records[1:]:
            start = time.monotonic()
            self.say(f"[series] {rec.index}/{n} {rec.sha[:12]} {rec.subject}")
            files = gitwork.touched_files(self.wt.path, rec.sha)
            before = self.lab.warnings(files) if self.built.get(rec.index - 1) else None
            self.wt.checkout(rec.sha)
            check = self.lab.checkpatch(rec.sha)
            rec.checkpatch, rec.checkpatch_issues = check.summary(), check.issues[:20]
            if check.ran and not check.errors and not check.warnings:
                rec.checkpatch_issues = []  # CHECKs alone do not warn
            self._build(rec)
            if rec.build == "ok":
                if before is not None:
                    rec.warnings = _new_items(before, self.lab.warnings(files))
                full = self.every or self.quick is None or rec.index == n
                run = self._test(rec, "full" if full else "quick")
                if not run.boot_failure:
                    self._judge(rec, run)
            rec.seconds += time.monotonic() - start
            self.say(f"[series]   -> {rec.state()}: {rec.description()}")
        return 1 if any(rec.state() == "fail" for rec in self.records[1:]) else 0

    def _build(self, rec: CommitRecord) -> None:
        b = self.lab.build(rec.sha, self._dir(rec))
        rec.build_seconds, rec.compiled = b.seconds, b.compiled
        rec.build = "ok" if b.ok else f"failed: {b.error.splitlines()[0] if b.error else '?'}"
        self.built[rec.index] = b.ok
        self.testable[rec.index] = False

    def _dir(self, rec: CommitRecord) -> Path:
        return self.results / f"{rec.index:02d}-{rec.sha[:12]}"

    def _run(self, rec: CommitRecord, args: list[str], name: str) -> TestRun:
        self._runs += 1
        return self.lab.test(args, self._dir(rec) / name)

    def _test(self, rec: CommitRecord, which: str) -> TestRun:
        narrow = None if which == "full" else self.quick
        try:
            run = self._run(rec, self.selection.args(narrow), which)
        except NoTests:
            if which == "full":
                raise
            which, run = "boot only", self._run(rec, [BOOT_CHECK], "boot")
        rec.selection, rec.counts = which, run.counts()
        if run.boot_failure:
            rec.boot = f"failed: {_first_line(run.boot_failure)}"
            return run
        rec.boot = "ok"
        self.testable[rec.index] = True
        junit = run.results / "junit.xml"
        if junit.exists():
            (self.results / "junit").mkdir(exist_ok=True)
            shutil.copy(junit, self.results / "junit" / f"{rec.index:02d}-{rec.sha[:12]}.xml")
        for t, r in run.tests.items():
            self.known.setdefault(t, {})[rec.index] = r
        previous = self._previous_testable(rec.index)
        old = {s.splitlines()[0] for s in self.boot_splats.get(previous, [])}
        self.boot_splats[rec.index] = run.boot_splats
        if rec.index:
            rec.boot_splats = [s for s in run.boot_splats if s.splitlines()[0] not in old]
        return run

    def _previous_testable(self, index: int) -> int:
        return max((i for i in range(index) if self.testable.get(i)), default=0)

    # -- judging ----------------------------------------------------------------------
    def _judge(self, rec: CommitRecord, run: TestRun) -> None:
        newly: dict[str, int] = {}  # test -> index of its last pass before REC
        for t, r in run.tests.items():
            history = {i: res for i, res in self.known.get(t, {}).items() if i < rec.index}
            last = max(history) if history else None
            if not r.failed:
                if last is not None and history[last].failed and t not in self.preexisting:
                    rec.fixed.append(t)
                continue
            if t in self.preexisting or last is None or history[last].failed:
                continue
            newly[t] = last
        if not newly:
            return
        confirmed = self._rerun(rec, sorted(newly))
        for t in confirmed:
            at, result = self._locate(t, newly[t], rec.index)
            how = (
                "failed here, passed on the parent"
                if at == rec.index
                else f"located by bisecting the series: passed on {self.records[at - 1].sha[:12]}"
            )
            self.records[at].regressions.append(Regression(t, result.headline(), result.splats, how))
        if self.wt.head() != rec.sha:  # locating checked out other commits
            self.wt.checkout(rec.sha)

    def _rerun(self, rec: CommitRecord, tests: list[str]) -> list[str]:
        """The tests that fail again on every rerun; the others are flaky."""
        failing = list(tests)
        for attempt in range(1, self.reruns + 1):
            if not failing:
                break
            self.say(f"[series]   rerun {attempt}/{self.reruns} of {len(failing)} newly failing tests")
            run = self._run(rec, failing, f"rerun{attempt}")
            if run.boot_failure:
                continue
            passed = [t for t in failing if t in run.tests and not run.tests[t].failed]
            rec.flaky += passed
            failing = [t for t in failing if t not in passed]
        return failing

    def _locate(self, test: str, good: int, bad: int) -> tuple[int, TestResult]:
        """The first commit in (GOOD, BAD] where TEST fails (bisecting, skipping
        commits that do not build or boot)."""
        candidates = list(range(good + 1, bad))
        while candidates:
            mid = candidates[len(candidates) // 2]
            result = self._probe(mid, test)
            if result is None:
                candidates.remove(mid)
            elif result.failed:
                bad, candidates = mid, [c for c in candidates if c < mid]
            else:
                candidates = [c for c in candidates if c > mid]
        return bad, self.known[test][bad]

    def _probe(self, index: int, test: str) -> TestResult | None:
        if index in self.known.get(test, {}):
            return self.known[test][index]
        if self.testable.get(index) is False:
            return None
        rec = self.records[index]
        self.say(f"[series]   locating {test}: trying {index} {rec.sha[:12]}")
        self.wt.checkout(rec.sha)
        b = self.lab.build(rec.sha, self._dir(rec) / "probe")
        if not b.ok:
            return None
        run = self._run(rec, [test], f"probe-{self._runs}")
        if run.boot_failure or test not in run.tests:
            return None
        self.known.setdefault(test, {})[index] = run.tests[test]
        return run.tests[test]

    # -- reports ----------------------------------------------------------------------
    def write_reports(self, meta: dict) -> None:
        records = [dict(asdict(r), state=r.state(), description=r.description()) for r in self.records]
        out = {**meta, "preexisting": self.preexisting, "commits": records[1:], "base": records[0]}
        (self.results / "series.json").write_text(json.dumps(out, indent=1) + "\n")
        (self.results / "series.md").write_text(markdown(self.records, self.preexisting, meta))


def _new_items(before: list[str], after: list[str]) -> list[str]:
    """AFTER minus BEFORE as multisets (a second copy of a warning is new too)."""
    left = list(before)
    new = []
    for item in after:
        if item in left:
            left.remove(item)
        else:
            new.append(item)
    return new


def _first_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[0][:200] if lines else "?"


def markdown(records: list[CommitRecord], preexisting: dict[str, str], meta: dict) -> str:
    lines = [
        f"# Series on {meta.get('tree')} ({meta.get('input')})",
        "",
        f"BASE {records[0].sha[:12]} {records[0].subject}: {_counts(records[0])}; "
        f"selection `{' '.join(meta.get('selection', []))}`",
        "",
        "| # | commit | subject | state | build | warnings | checkpatch | boot | tests "
        "(passed/failed/new) | splats | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records[1:]:
        failed = r.counts.get("failed", 0) + r.counts.get("error", 0)
        tests = (
            f"{r.selection}: {r.counts.get('passed', 0)}/{failed}/{len(r.regressions)}" if r.counts else "-"
        )
        build = "ok" if r.build == "ok" else "**failed**" if r.build.startswith("failed") else r.build
        build += f" ({r.build_seconds:.0f} s, {r.compiled} compiled)" if r.build == "ok" else ""
        lines.append(
            f"| {r.index} | {r.sha[:12]} | {r.subject} | {r.state()} | {build} | {len(r.warnings)} "
            f"| {r.checkpatch} | {r.boot.split(':')[0]} | {tests} | {len(r.boot_splats)} "
            f"| {r.seconds:.0f} s |"
        )
    for r in records[1:]:
        if r.state() == "success":
            continue
        lines += ["", f"## {r.index} {r.sha[:12]} {r.subject}: {r.state()}", "", r.description()]
        if r.build.startswith("failed") or r.boot.startswith("failed"):
            lines.append(f"\n    {r.build if r.build.startswith('failed') else r.boot}")
        for reg in r.regressions:
            lines += ["", f"- **{reg.test}** ({reg.how}): {reg.message}"]
            for s in reg.splats:
                lines += ["", "```", s, "```"]
        lines += [f"- new warning: {w}" for w in r.warnings]
        lines += [f"- flaky (passed on a rerun): {t}" for t in r.flaky]
        lines += [f"- checkpatch: {c}" for c in r.checkpatch_issues]
        lines += [f"- new splat while booting: {s.splitlines()[0]}" for s in r.boot_splats]
    if preexisting:
        lines += ["", "## Failing on BASE already (not charged)", ""]
        lines += [f"- {t}: {m}" for t, m in preexisting.items()]
    return "\n".join(lines) + "\n"


def _counts(rec: CommitRecord) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(rec.counts.items())) or "no tests"


# -- the command ------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m host series",
        description="Test a patch series commit by commit (see host/ci/series.py).",
    )
    p.add_argument("input", help="mbox, directory of .patch files, BASE..HEAD, or a lore message id")
    p.add_argument("tests", nargs="*", default=None, help="test paths or ids (default: guest_tests)")
    p.add_argument("--tree", required=True, help="the kernel git tree (only read; work is in a worktree)")
    p.add_argument("--base", help="where patches are applied (default: the tree's HEAD)")
    p.add_argument("--mailbox", help="with a message id: take the thread from this local mbox, not lore")
    p.add_argument("-m", dest="mark", help="pytest marker expression of the selection")
    p.add_argument("-k", dest="keyword", help="pytest -k expression of the selection")
    p.add_argument(
        "--quick",
        default="nodev",
        help="marker expression narrowing the selection on "
        "commits before the last (default: nodev; 'none': the full selection)",
    )
    p.add_argument("--every", action="store_true", help="the full selection at every commit")
    p.add_argument("--reruns", type=int, default=2, help="reruns of a newly failing test (default 2)")
    p.add_argument("--results-dir", help="default: results/series-<date-time>")
    p.add_argument("--fragments", help="kconfigs/ fragments (default base,zcrx)")
    p.add_argument("-j", type=int, dest="jobs")
    return p


def main(args: list[str], lab_factory=None, say=print) -> int:
    from host.ci.steps import KernelLab
    from host.kernels import build

    opts = parser().parse_intermixed_args(args)
    cwd = Path(gitwork.user_cwd())
    tree = gitwork.toplevel(cwd / Path(opts.tree).expanduser())
    spec = opts.input if not Path(cwd / opts.input).exists() else str(cwd / opts.input)
    inp = gitwork.parse_input(tree, spec)
    if inp.kind == "range" and opts.base:
        raise LabError("--base is for patches; a range BASE..HEAD names its base")
    fragments = build.fragment_list("tree", opts.fragments.split(",") if opts.fragments else None)
    results = Path(opts.results_dir or REPO / "results" / f"series-{time.strftime('%Y%m%d-%H%M%S')}")
    results = (cwd / results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    selection = Selection(opts.tests or ["guest_tests"], opts.mark, opts.keyword)
    quick = None if opts.every or opts.quick == "none" else opts.quick
    start = time.monotonic()
    with (
        gitwork.terminate_as_interrupt(),
        gitwork.Worktree(tree) as wt,
        tempfile.TemporaryDirectory(prefix="zcrx-lab-series-") as tmp,
    ):
        wt.build_dir = build.build_dir_for(wt.path, fragments)
        mailbox = cwd / opts.mailbox if opts.mailbox else None
        base, commits = prepare(wt, inp, opts.base, Path(tmp), mailbox)
        say(f"[series] {len(commits)} commits on {base.sha[:12]} in worktree {wt.path}; results in {results}")
        lab = (lab_factory or (lambda w: KernelLab(w.path, w.build_dir, fragments, opts.jobs)))(wt)
        series = Series(wt, lab, base, commits, selection, results, quick, opts.every, opts.reruns, say)
        meta = {
            "tree": str(tree),
            "input": opts.input,
            "selection": selection.args(),
            "quick": quick,
            "fragments": fragments,
        }
        try:
            rc = series.run()
        finally:
            meta["seconds"] = round(time.monotonic() - start, 1)
            series.write_reports(meta)
    say((results / "series.md").read_text())
    say(f"[series] {'regressions found' if rc else 'no regression'}; report: {results / 'series.md'}")
    return rc


def prepare(wt, inp: gitwork.SeriesInput, base_rev: str | None, tmp: Path, mailbox: Path | None = None):
    """Check out BASE in the worktree and apply the patches; (BASE, commits)."""
    if inp.kind == "range":
        wt.create(inp.base)
        commits = gitwork.commits(wt.path, inp.base, inp.head)
        base_sha = inp.base
    else:
        base_sha = gitwork.rev(wt.tree, base_rev or "HEAD")
        patches = inp.patches or [gitwork.fetch_msgid(inp.text, tmp, mailbox)]
        wt.create(base_sha)
        wt.apply(patches)
        commits = gitwork.commits(wt.path, base_sha, "HEAD")
        wt.checkout(base_sha)
    if not commits:
        raise LabError(f"{inp.text}: no commits to test")
    return gitwork.Commit(base_sha, gitwork.subject(wt.path, base_sha)), commits


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
