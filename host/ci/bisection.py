"""`python3 -m host bisect` and `python3 -m host bisect-step`: find the commit
that broke (or, --reverse, fixed) the tests that decide.

    python3 -m host bisect --tree T --good G --bad B [TESTS...] [-m EXPR] [-k EXPR]
                           [--tries N] [--boot-fail bad|skip] [--reverse] [--resume]

It runs `git bisect run` in a worktree of T under the cache (so `git -C
WORKTREE bisect log` works as always while it runs), after checking that G
passes and B fails. Each step is `bisect-step`: build (failure: skip, exit
125), boot (failure: bad, or skip with --boot-fail=skip), the tests (--tries N:
good only if all N runs pass). A failure of the lab itself (QEMU cannot start,
no guest image) exits 128, which makes git abort the bisect instead of marking
a commit bad. Every step's logs, a steps.jsonl table and bisect.log stay in
the results directory; --resume replays bisect.log of the last interrupted
bisect of T and goes on.

`bisect-step` judges the tree's HEAD once, for people who drive git bisect
themselves, from their tree (it must be clean of in-tree builds):

    git bisect run python3 ~/zcrx-lab/host bisect-step -k rq_entries

Exit codes of `bisect`: 0 the first bad commit was found, 1 only skipped
commits are left (the candidates are listed), 2 bad input (G fails, B passes)
or a lab failure.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from host.cache import cache_root
from host.ci import gitwork
from host.ci.testrun import REPO, run_child
from host.errors import LabError

SKIP, ABORT = 125, 128
TERMS_REVERSE = ("broken", "fixed")  # git bisect's old/new terms for --reverse


@dataclass
class Verdict:
    commit: str
    subject: str
    verdict: str  # good, bad, skip
    reason: str
    role: str = "step"  # step, verify-good, verify-bad
    seconds: float = 0.0
    build_seconds: float = 0.0
    test_seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)  # {test, message, splats}


def judge(
    lab, sha: str, subject: str, args: list[str], tries: int, boot_fail: str, where: Path, role: str = "step"
) -> Verdict:
    """Build, boot and test SHA (checked out in LAB's source tree)."""
    start = time.monotonic()
    b = lab.build(sha, where)
    v = Verdict(sha, subject, "skip", "", role, build_seconds=b.seconds)
    if not b.ok:
        v.reason = f"does not build: {b.error.splitlines()[0] if b.error else '?'}"
    else:
        v.verdict, v.reason = "good", f"{tries} run(s) passed"
        for attempt in range(1, tries + 1):
            run = lab.test(args, where / f"try{attempt}")
            v.test_seconds += run.seconds
            if run.boot_failure:
                v.verdict = "bad" if boot_fail == "bad" else "skip"
                v.reason = f"does not boot: {run.boot_failure.strip().splitlines()[0][:200]}"
                break
            if run.failures:
                v.verdict = "bad"
                v.failures = [
                    {"test": t, "message": r.headline(), "splats": r.splats} for t, r in run.failures.items()
                ]
                v.reason = (
                    f"run {attempt}/{tries}: {len(run.failures)} failed, first {next(iter(run.failures))}"
                )
                break
    v.seconds = time.monotonic() - start
    return v


def exit_code(v: Verdict, reverse: bool) -> int:
    if v.verdict == "skip":
        return SKIP
    return 0 if (v.verdict == "good") != reverse else 1


def record(results: Path, v: Verdict) -> None:
    with open(results / "steps.jsonl", "a") as f:
        f.write(json.dumps(asdict(v)) + "\n")


def read_steps(results: Path) -> list[Verdict]:
    path = results / "steps.jsonl"
    if not path.exists():
        return []
    return [Verdict(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


# -- selection options, shared ---------------------------------------------------------------
def _selection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("tests", nargs="*", help="test paths or ids (default: guest_tests)")
    p.add_argument("-m", dest="mark", help="pytest marker expression")
    p.add_argument("-k", dest="keyword", help="pytest -k expression")
    p.add_argument("--tries", type=int, default=1, help="a commit is good only if N runs pass (default 1)")
    p.add_argument(
        "--boot-fail",
        choices=("bad", "skip"),
        default="bad",
        help="a kernel that does not boot is bad (default) or skipped",
    )
    p.add_argument("--reverse", action="store_true", help="find the first good commit instead")
    p.add_argument("--fragments", help="kconfigs/ fragments (default base,zcrx)")
    p.add_argument("-j", type=int, dest="jobs")


def _selection_args(opts) -> list[str]:
    return [
        *(opts.tests or ["guest_tests"]),
        *(["-m", opts.mark] if opts.mark else []),
        *(["-k", opts.keyword] if opts.keyword else []),
    ]


def _passthrough(opts) -> list[str]:
    """The options bisect hands on to each bisect-step."""
    out = [*(opts.tests or []), "--tries", str(opts.tries), "--boot-fail", opts.boot_fail]
    out += ["-m", opts.mark] if opts.mark else []
    out += ["-k", opts.keyword] if opts.keyword else []
    out += ["--reverse"] if opts.reverse else []
    out += ["--fragments", opts.fragments] if opts.fragments else []
    out += ["-j", str(opts.jobs)] if opts.jobs else []
    return out


def _lab(src: Path, out: Path, opts):
    from host.ci.steps import KernelLab
    from host.kernels import build

    fragments = build.fragment_list("tree", opts.fragments.split(",") if opts.fragments else None)
    return KernelLab(src, out, fragments, opts.jobs)


def _build_dir(src: Path, opts) -> Path:
    from host.kernels import build

    return build.build_dir_for(
        src, build.fragment_list("tree", opts.fragments.split(",") if opts.fragments else None)
    )


# -- bisect-step ------------------------------------------------------------------------------
def step_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m host bisect-step",
        description="Judge the tree's HEAD for git bisect run: exit 0 good, "
        "1 bad, 125 skip, 128 lab failure (aborts the bisect).",
    )
    p.add_argument("--tree", default=".", help="the kernel tree (default: the current directory)")
    p.add_argument("--results-dir", help="where step logs and steps.jsonl go (default: results/bisect-steps)")
    _selection_options(p)
    return p


def step_main(args: list[str], lab_factory=None) -> int:
    opts = step_parser().parse_intermixed_args(args)
    try:
        tree = gitwork.toplevel(Path(gitwork.user_cwd()) / opts.tree)
        results = Path(opts.results_dir or REPO / "results" / "bisect-steps")
        results = (Path(gitwork.user_cwd()) / results).resolve()
        results.mkdir(parents=True, exist_ok=True)
        sha = gitwork.rev(tree, "HEAD")
        subject = gitwork.subject(tree, sha)
        _save_log(tree, results)
        where = results / "steps" / f"{len(read_steps(results)) + 1:02d}-{sha[:12]}"
        if lab_factory is None and (tree / ".config").exists():
            raise LabError(
                f"{tree} has an in-tree build (.config), so out-of-tree builds refuse it: "
                "`make mrproper` there, or use `python3 -m host bisect`, which works in a worktree"
            )
        with gitwork.terminate_as_interrupt():
            lab = lab_factory(tree) if lab_factory else _lab(tree, _build_dir(tree, opts), opts)
            v = judge(lab, sha, subject, _selection_args(opts), opts.tries, opts.boot_fail, where)
    except LabError as exc:
        print(f"[bisect-step] lab failure, aborting the bisect: {exc}", flush=True)
        return ABORT
    record(results, v)
    print(
        f"[bisect-step] {sha[:12]} {subject}: {v.verdict} ({v.reason}) in {v.seconds:.0f} s "
        f"(build {v.build_seconds:.0f} s, tests {v.test_seconds:.0f} s)",
        flush=True,
    )
    for f in v.failures[:3]:
        print(f"[bisect-step]   {f['test']}: {f['message']}", flush=True)
    return exit_code(v, opts.reverse)


def _save_log(tree: Path, results: Path) -> None:
    """The bisect log so far, so that --resume works even after a SIGKILL."""
    log = gitwork.git(tree, "bisect", "log", check=False)
    if log.strip():
        (results / "bisect.log").write_text(log)


# -- bisect -----------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m host bisect",
        description="Find the commit that broke the tests (see host/ci/bisection.py).",
    )
    p.add_argument("--tree", help="the kernel git tree (only read; work is in a worktree)")
    p.add_argument("--good", help="a commit where the tests pass")
    p.add_argument("--bad", help="a commit where they fail")
    p.add_argument("--resume", action="store_true", help="go on with the tree's interrupted bisect")
    p.add_argument("--results-dir", help="default: results/bisect-<date-time>")
    _selection_options(p)
    return p


def _state_file(tree: Path) -> Path:
    return cache_root() / "bisect" / f"{gitwork.tree_key(tree)}.json"


def main(args: list[str], step_command: list[str] | None = None, lab_factory=None, say=print) -> int:
    opts = parser().parse_intermixed_args(args)
    cwd = Path(gitwork.user_cwd())
    resuming = opts.resume
    if resuming:
        if not opts.tree:
            raise LabError("--resume needs --tree (whose interrupted bisect to resume)")
        tree = gitwork.toplevel(cwd / Path(opts.tree).expanduser())
        state_file = _state_file(tree)
        if not state_file.exists():
            raise LabError(f"no interrupted bisect of {tree} to resume")
        state = json.loads(state_file.read_text())
        opts = parser().parse_intermixed_args(state["args"])
        results = Path(state["results"])
    else:
        if not (opts.tree and opts.good and opts.bad):
            raise LabError("bisect needs --tree, --good and --bad (or --resume --tree T)")
        tree = gitwork.toplevel(cwd / Path(opts.tree).expanduser())
        stamp = time.strftime("%Y%m%d-%H%M%S")
        results = (cwd / Path(opts.results_dir or REPO / "results" / f"bisect-{stamp}")).resolve()
        state = {
            "args": [*args, "--tree", str(tree)] if opts.tree != str(tree) else args,
            "results": str(results),
            "verified": False,
        }
    good, bad = gitwork.rev(tree, opts.good), gitwork.rev(tree, opts.bad)
    older, newer = ("--bad", "--good") if opts.reverse else ("--good", "--bad")
    if not _is_ancestor(tree, *((bad, good) if opts.reverse else (good, bad))):
        raise LabError(
            f"{older} is not an ancestor of {newer}"
            + (" (--reverse looks for a fix: --bad is the older commit)" if opts.reverse else "")
        )
    results.mkdir(parents=True, exist_ok=True)
    state_file = _state_file(tree)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(state))
    say(f"[bisect] {tree}: good {good[:12]}, bad {bad[:12]}; results in {results}")
    with gitwork.terminate_as_interrupt(), gitwork.Worktree(tree) as wt:
        wt.build_dir = _build_dir(wt.path, opts)
        wt.create(bad)
        try:
            rc = _bisect(
                wt, opts, state, state_file, results, good, bad, resuming, step_command, lab_factory, say
            )
        finally:
            _save_log(wt.path, results)
    if rc in (0, 1):
        state_file.unlink(missing_ok=True)
    return rc


def _is_ancestor(tree: Path, old: str, new: str) -> bool:
    return subprocess.run(["git", "-C", str(tree), "merge-base", "--is-ancestor", old, new]).returncode == 0


def _bisect(wt, opts, state, state_file, results, good, bad, resuming, step_command, lab_factory, say) -> int:
    args = _selection_args(opts)
    if not state["verified"]:
        lab = lab_factory(wt.path) if lab_factory else _lab(wt.path, wt.build_dir, opts)
        for sha, role, want in ((good, "verify-good", "good"), (bad, "verify-bad", "bad")):
            wt.checkout(sha)
            does = "passes" if want == "good" else "fails"
            say(f"[bisect] checking that {role[7:]} {sha[:12]} really {does}")
            v = judge(
                lab,
                sha,
                gitwork.subject(wt.path, sha),
                args,
                opts.tries if want == "good" else 1,
                opts.boot_fail,
                results / "steps" / f"00-{role}-{sha[:12]}",
                role,
            )
            record(results, v)
            say(f"[bisect]   {v.verdict}: {v.reason} ({v.seconds:.0f} s)")
            if v.verdict != want:
                flag = "--good" if want == "good" else "--bad"
                raise LabError(
                    f"{flag} {sha[:12]} is not {want}: {v.reason}"
                    + (f" ({v.failures[0]['test']}: {v.failures[0]['message']})" if v.failures else "")
                )
        state["verified"] = True
        state_file.write_text(json.dumps(state))
    terms = ["--term-old", TERMS_REVERSE[0], "--term-new", TERMS_REVERSE[1]] if opts.reverse else []
    old, new = (bad, good) if opts.reverse else (good, bad)
    log = results / "bisect.log"
    if resuming and log.exists():
        say(f"[bisect] resuming from {log}")
        gitwork.git(wt.path, "bisect", "replay", str(log))
    else:
        gitwork.git(wt.path, "bisect", "start", *terms, new, old)
    cmd = step_command or [sys.executable, str(REPO / "host"), "bisect-step"]
    cmd = [*cmd, "--tree", str(wt.path), "--results-dir", str(results), *_passthrough(opts)]
    env = {**os.environ, "ZCRX_LAB_CWD": str(wt.path)}
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith("[bisect-step]") or "first" in line or line.startswith("Bisecting"):
            say(f"[bisect] {line}")

    rc = run_child(
        ["git", "-C", str(wt.path), "bisect", "run", *cmd],
        results / "bisect-run.log",
        cwd=wt.path,
        env=env,
        echo=echo,
    )
    output = "\n".join(lines)
    found = re.search(r"^([0-9a-f]{40}) is the first (\w+) commit", output, re.M)
    _summary(results, say)
    if found:
        return _report_found(wt, results, found.group(1), found.group(2), say)
    if "only 'skip'ped commits left" in output:
        candidates = re.findall(r"^([0-9a-f]{40})$", output, re.M)
        say("[bisect] only skipped commits are left; the first bad commit is one of:")
        for sha in candidates:
            say(f"[bisect]   {sha[:12]} {gitwork.subject(wt.path, sha)}")
        return 1
    raise LabError(
        f"git bisect run stopped (exit {rc}): {output.strip().splitlines()[-1] if output else '?'}"
        f" (log: {results / 'bisect-run.log'})"
    )


def _summary(results: Path, say) -> None:
    steps = read_steps(results)
    say("[bisect] steps:")
    say(f"[bisect] {'commit':12}  {'verdict':7}  {'build':>6}  {'tests':>6}  {'total':>6}  subject")
    for v in steps:
        verdict = v.verdict if v.role == "step" else f"{v.verdict}*"
        say(
            f"[bisect] {v.commit[:12]}  {verdict:7}  {v.build_seconds:5.0f}s  {v.test_seconds:5.0f}s  "
            f"{v.seconds:5.0f}s  {v.subject[:60]}"
        )
    say("[bisect] (* the check of --good/--bad before bisecting)")


def _report_found(wt, results: Path, sha: str, term: str, say) -> int:
    subject = gitwork.subject(wt.path, sha)
    say(f"[bisect] first {term} commit: {sha[:12]} {subject}")
    judged = [v for v in read_steps(results) if v.commit == sha and v.failures]
    for f in judged[-1].failures[:5] if judged else []:
        say(f"[bisect]   {f['test']}: {f['message']}")
        for s in f["splats"][:1]:
            say("\n".join(f"[bisect]     {ln}" for ln in s.splitlines()[:40]))
    (results / "result.json").write_text(json.dumps({"first": sha, "term": term, "subject": subject}) + "\n")
    return 0
