"""bisect and bisect-step on small synthetic git repositories: real `git bisect
run`, with each step judged by host/ci/fakelab.py instead of a kernel and a VM."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from host.ci import bisection, fakelab
from host.ci.test_series import OK, A, git, make_repo, worktrees_left
from host.errors import LabError

REPO = Path(__file__).resolve().parents[2]
BAD = {"tests": {**OK["tests"], A: "failed"}}
STEP = """
import sys
from host.ci import bisection
from host.ci.fakelab import FakeLab

sys.exit(bisection.step_main(sys.argv[1:], lab_factory=FakeLab))
"""


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ZCRX_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ZCRX_LAB_CWD", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    (tmp_path / "step.py").write_text(STEP)


def bisect(tmp_path, *args, results="results"):
    said = []
    rc = bisection.main(
        [*args, "--tree", str(tmp_path / "t"), "--results-dir", str(tmp_path / results)],
        step_command=[sys.executable, str(tmp_path / "step.py")],
        lab_factory=lambda src: fakelab.FakeLab(src),
        say=said.append,
    )
    return rc, "\n".join(said)


def run_step(tmp_path, program: list[str], *extra: str) -> subprocess.CompletedProcess:
    """PROGRAM (a bisect-step) on tmp_path/t, its records into tmp_path/steps."""
    cmd = [sys.executable, *program, "--tree", str(tmp_path / "t"), "--results-dir", str(tmp_path / "steps")]
    return subprocess.run([*cmd, *extra], capture_output=True, text=True, cwd=REPO)


def steps(tmp_path, results="results"):
    return bisection.read_steps(tmp_path / results)


def test_names_the_first_bad_commit_with_the_failing_test(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, OK, OK, BAD, BAD, BAD, BAD])
    rc, said = bisect(tmp_path, "--good", shas[0], "--bad", shas[6])
    assert rc == 0
    assert json.loads((tmp_path / "results/result.json").read_text())["first"] == shas[3]
    assert f"first bad commit: {shas[3][:12]} change 3" in said
    assert f"{A}: AssertionError: {A} failed" in said
    roles = [v.role for v in steps(tmp_path)]
    assert roles[:2] == ["verify-good", "verify-bad"] and set(roles[2:]) == {"step"}
    assert len(roles) - 2 <= 3  # log2(6) steps
    assert "# first bad commit: [" + shas[3] in (tmp_path / "results/bisect.log").read_text()
    assert worktrees_left(tmp_path / "t") == []
    assert "steps:" in said and "verdict" in said  # the table


def test_checks_that_good_passes_and_bad_fails(tmp_path):
    shas = make_repo(tmp_path / "t", [BAD, BAD, BAD])
    with pytest.raises(LabError, match=rf"--good {shas[0][:12]} is not good: .*{A}"):
        bisect(tmp_path, "--good", shas[0], "--bad", shas[2])
    shas = make_repo(tmp_path / "u", [OK, OK])
    os.rename(tmp_path / "u", tmp_path / "t2")
    with pytest.raises(LabError, match="is not bad"):
        bisection.main(
            ["--tree", str(tmp_path / "t2"), "--good", shas[0], "--bad", shas[1]],
            lab_factory=lambda src: fakelab.FakeLab(src),
            say=lambda _: None,
        )
    assert worktrees_left(tmp_path / "t") == []


def test_good_must_be_an_ancestor_of_bad(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, BAD])
    with pytest.raises(LabError, match="--good is not an ancestor of --bad"):
        bisect(tmp_path, "--good", shas[1], "--bad", shas[0])


def test_commits_that_do_not_build_are_skipped(tmp_path):
    nobuild = {**BAD, "build": "error: nope"}
    shas = make_repo(tmp_path / "t", [OK, OK, nobuild, BAD])
    rc, said = bisect(tmp_path, "--good", shas[0], "--bad", shas[3])
    assert rc == 1  # commit 2 or 3: git cannot tell
    assert "only skipped commits" in said and shas[2][:12] in said and shas[3][:12] in said
    assert "skip" in [v.verdict for v in steps(tmp_path)]


def test_a_kernel_that_does_not_boot_is_bad_or_skipped(tmp_path):
    noboot = {**OK, "boot": "Kernel panic"}
    shas = make_repo(tmp_path / "t", [OK, OK, noboot, BAD])
    rc, said = bisect(tmp_path, "--good", shas[0], "--bad", shas[3])
    assert rc == 0 and f"first bad commit: {shas[2][:12]}" in said
    rc, said = bisect(tmp_path, "--good", shas[0], "--bad", shas[3], "--boot-fail=skip", results="r2")
    assert rc == 1 and "only skipped" in said


def test_a_lab_failure_aborts_instead_of_marking_bad(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, OK, {**OK, "lab": "qemu: no such binary"}, BAD, BAD])
    with pytest.raises(LabError, match="git bisect run stopped"):
        bisect(tmp_path, "--good", shas[0], "--bad", shas[4])
    assert (
        "lab failure, aborting the bisect: qemu: no such binary"
        in (tmp_path / "results/bisect-run.log").read_text()
    )
    assert worktrees_left(tmp_path / "t") == []


def test_tries_catch_an_intermittent_failure(tmp_path):
    # from commit 2 the test fails one run in three (the first of each step here)
    intermittent = {**OK, "flaky": {A: 1}}
    shas = make_repo(tmp_path / "t", [OK, OK, intermittent, intermittent, BAD])
    rc, said = bisect(tmp_path, "--good", shas[0], "--bad", shas[4], "--tries", "3")
    assert rc == 0 and f"first bad commit: {shas[2][:12]}" in said


def test_reverse_finds_the_first_good_commit(tmp_path):
    shas = make_repo(tmp_path / "t", [BAD, BAD, BAD, OK, OK])
    rc, said = bisect(tmp_path, "--reverse", "--bad", shas[0], "--good", shas[4])
    assert rc == 0
    assert f"first fixed commit: {shas[3][:12]} change 3" in said


def test_resume_replays_the_log_of_an_interrupted_bisect(tmp_path):
    specs = [OK] * 5 + [BAD] * 4
    specs[4] = {**OK, "interrupt": True}  # the first step lands on commit 4 and is interrupted
    shas = make_repo(tmp_path / "t", specs)
    with pytest.raises(LabError, match="git bisect run stopped"):
        bisect(tmp_path, "--good", shas[0], "--bad", shas[8])
    assert worktrees_left(tmp_path / "t") == []
    # resume with a lab that is no longer interrupted: the replayed log starts where the
    # interrupted step was (it left no verdict), so that step runs again.
    git(tmp_path / "t", "checkout", "-q", shas[8])
    state = json.loads(next((tmp_path / "cache/bisect").glob("*.json")).read_text())
    assert state["verified"] is True
    (tmp_path / "step.py").write_text(
        STEP.replace("lab_factory=FakeLab", "lab_factory=Uninterrupted").replace(
            "from host.ci.fakelab import FakeLab",
            "from host.ci.fakelab import FakeLab\n"
            "class Uninterrupted(FakeLab):\n    def _spec(self):\n        s = super()._spec()\n"
            "        s.pop('interrupt', None)\n        return s\n",
        )
    )
    said = []
    rc = bisection.main(
        ["--resume", "--tree", str(tmp_path / "t")],
        step_command=[sys.executable, str(tmp_path / "step.py")],
        say=said.append,
    )
    assert rc == 0
    assert "resuming" in "\n".join(said)
    assert f"first bad commit: {shas[5][:12]}" in "\n".join(said)
    assert not list((tmp_path / "cache/bisect").glob("*.json"))  # done: nothing left to resume


def test_resume_without_an_interrupted_bisect_is_an_error(tmp_path):
    make_repo(tmp_path / "t", [OK])
    with pytest.raises(LabError, match="no interrupted bisect"):
        bisection.main(["--resume", "--tree", str(tmp_path / "t")])


def test_bisect_step_exit_codes_for_git_bisect_run(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, BAD, {**OK, "build": "error: x"}, {**OK, "lab": "no image"}])

    def step(sha, *extra):
        git(tmp_path / "t", "checkout", "-q", sha)
        return run_step(tmp_path, [str(tmp_path / "step.py")], *extra).returncode

    assert [step(s) for s in shas] == [0, 1, 125, 128]
    assert [step(s, "--reverse") for s in shas[:2]] == [1, 0]
    assert [v.verdict for v in bisection.read_steps(tmp_path / "steps")] == [
        "good",
        "bad",
        "skip",
        "good",
        "bad",
    ]


def test_host_directory_runs_from_any_directory(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "host"), "bisect-step", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "exit 0 good, 1 bad, 125 skip" in proc.stdout


def test_bisect_step_refuses_a_tree_with_an_in_tree_build(tmp_path):
    make_repo(tmp_path / "t", [OK])
    (tmp_path / "t" / ".config").write_text("CONFIG_X=y\n")
    proc = run_step(tmp_path, ["-m", "host", "bisect-step"])
    assert proc.returncode == 128, proc.stdout + proc.stderr
    assert "has an in-tree build (.config)" in proc.stdout and "make mrproper" in proc.stdout
