"""series on small synthetic git repositories: real git (worktrees, git am,
ranges), with the kernel build and the VM replaced by host/ci/fakelab.py."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host.ci import gitwork, series
from host.ci.fakelab import FakeLab
from host.errors import LabError

REPO = Path(__file__).resolve().parents[2]
A = "guest_tests/test_a.py::test_nodev_a"
B = "guest_tests/test_b.py::test_zcnic_b"
C = "guest_tests/test_c.py::test_nodev_c"
OK = {"tests": {A: "passed", B: "passed", C: "passed"}}
ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def git(tree, *args):
    return subprocess.run(
        ["git", "-C", str(tree), *args], check=True, capture_output=True, text=True, env={**os.environ, **ENV}
    ).stdout


def make_repo(path: Path, specs: list[dict]) -> list[str]:
    """A repository whose commit i carries lab.json = SPECS[i] and a change to zcrx.c; commit ids."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    shas = []
    for i, spec in enumerate(specs):
        (path / "lab.json").write_text(json.dumps(spec))
        (path / "io_uring").mkdir(exist_ok=True)
        (path / "io_uring/zcrx.c").write_text("".join(f"line {n}\n" for n in range(i + 1)))
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "base" if i == 0 else f"change {i}")
        shas.append(git(path, "rev-parse", "HEAD").strip())
    return shas


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZCRX_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ZCRX_LAB_CWD", str(tmp_path))


def run(tree: Path, input_spec: str, *extra: str, results: Path | None = None):
    results = results or tree.parent / "results"
    said = []
    rc = series.main(
        [input_spec, "--tree", str(tree), "--results-dir", str(results), *extra],
        lab_factory=lambda wt: FakeLab(wt.path),
        say=said.append,
    )
    return rc, json.loads((results / "series.json").read_text()), "\n".join(said)


def worktrees_left(tree: Path) -> list[str]:
    return [
        ln for ln in git(tree, "worktree", "list", "--porcelain").splitlines() if ln.startswith("worktree ")
    ][1:]


def test_a_test_failing_from_commit_2_is_charged_to_commit_2_only(tmp_path):
    bad = {"tests": {**OK["tests"], A: "failed"}}
    shas = make_repo(tmp_path / "t", [OK, OK, bad, bad])
    rc, report, _ = run(tmp_path / "t", f"{shas[0][:12]}..{shas[3][:12]}")
    assert rc == 1
    states = [c["state"] for c in report["commits"]]
    assert states == ["success", "fail", "success"]
    assert [r["test"] for r in report["commits"][1]["regressions"]] == [A]
    assert report["commits"][1]["description"].startswith(f"new failure: {A}: AssertionError")
    assert worktrees_left(tmp_path / "t") == []


def test_a_failure_outside_the_quick_selection_is_located_by_bisecting(tmp_path):
    # B is not "nodev": commits 1-3 run only the quick selection; the full run at the end
    # finds B failing and bisects back to commit 2.
    bad = {"tests": {**OK["tests"], B: "failed"}}
    shas = make_repo(tmp_path / "t", [OK, OK, bad, bad, bad])
    rc, report, said = run(tmp_path / "t", f"{shas[0]}..{shas[4]}")
    assert rc == 1
    commits = report["commits"]
    assert [c["selection"] for c in commits] == ["quick", "quick", "quick", "full"]
    assert [c["state"] for c in commits] == ["success", "fail", "success", "success"]
    assert commits[1]["regressions"][0]["test"] == B
    assert "located by bisecting" in commits[1]["regressions"][0]["how"]
    assert "locating" in said


def test_a_test_that_passes_on_a_rerun_is_flaky_not_charged(tmp_path):
    flaky = {**OK, "flaky": {A: 1}}
    shas = make_repo(tmp_path / "t", [OK, flaky, OK])
    rc, report, _ = run(tmp_path / "t", f"{shas[0]}..{shas[2]}")
    assert rc == 0
    assert report["commits"][0]["state"] == "warning"
    assert report["commits"][0]["flaky"] == [A]
    assert report["commits"][0]["regressions"] == []


def test_a_test_that_fails_every_rerun_is_charged(tmp_path):
    flaky = {**OK, "flaky": {A: 3}}  # fails the run and both reruns
    shas = make_repo(tmp_path / "t", [OK, flaky])
    rc, report, _ = run(tmp_path / "t", f"{shas[0]}..{shas[1]}")
    assert rc == 1 and report["commits"][0]["regressions"][0]["test"] == A


def test_a_failure_already_on_base_is_preexisting(tmp_path):
    broken = {"tests": {**OK["tests"], C: "failed"}}
    shas = make_repo(tmp_path / "t", [broken, broken, broken])
    rc, report, _ = run(tmp_path / "t", f"{shas[0]}..{shas[2]}")
    assert rc == 0
    assert list(report["preexisting"]) == [C]
    assert all(c["state"] == "success" for c in report["commits"])


def test_a_fixed_test_is_reported(tmp_path):
    broken = {"tests": {**OK["tests"], C: "failed"}}
    shas = make_repo(tmp_path / "t", [OK, broken, OK])
    rc, report, _ = run(tmp_path / "t", f"{shas[0]}..{shas[2]}", "--every")
    assert rc == 1
    assert report["commits"][1]["fixed"] == [C]


def test_a_build_failure_fails_its_commit_and_the_next_compares_with_the_last_tested(tmp_path):
    nobuild = {**OK, "build": "io_uring/zcrx.c:12:1: error: expected ';'"}
    bad = {"tests": {**OK["tests"], A: "failed"}}
    shas = make_repo(tmp_path / "t", [OK, OK, nobuild, bad])
    rc, report, _ = run(tmp_path / "t", f"{shas[0]}..{shas[3]}")
    assert rc == 1
    commits = report["commits"]
    assert commits[1]["state"] == "fail" and commits[1]["description"].startswith("build failed: ")
    assert "expected ';'" in commits[1]["description"]
    assert commits[2]["regressions"][0]["test"] == A  # charged where it was first seen failing


def test_a_kernel_that_does_not_boot_fails_its_commit(tmp_path):
    noboot = {**OK, "boot": "Kernel panic - not syncing: VFS: Unable to mount root fs"}
    shas = make_repo(tmp_path / "t", [OK, noboot, OK])
    rc, report, _ = run(tmp_path / "t", f"{shas[0]}..{shas[2]}")
    assert rc == 1
    assert (
        report["commits"][0]["description"]
        == "boot failed: Kernel panic - not syncing: VFS: Unable to mount root fs"
    )
    assert report["commits"][1]["state"] == "success"


def test_new_boot_splats_and_test_splats_are_charged(tmp_path):
    splat = "WARNING: CPU: 0 PID: 1 at io_uring/zcrx.c:42 io_zcrx_scrub+0x1/0x2"
    splatted = {"tests": {**OK["tests"], A: "failed"}, "splats": {A: [splat]}, "boot_splats": [splat]}
    shas = make_repo(tmp_path / "t", [OK, splatted])
    rc, report, _ = run(tmp_path / "t", f"{shas[0]}..{shas[1]}")
    commit = report["commits"][0]
    assert rc == 1
    assert commit["boot_splats"] == [splat]
    assert commit["regressions"][0]["splats"] == [splat]
    assert commit["regressions"][0]["message"] == splat


def test_new_compiler_warnings_in_touched_files_warn(tmp_path):
    warned = {**OK, "warnings": ["io_uring/zcrx.c: unused variable 'rounded' [-Wunused-variable]"]}
    shas = make_repo(tmp_path / "t", [OK, warned, warned])
    rc, report, _ = run(tmp_path / "t", f"{shas[0]}..{shas[2]}")
    assert rc == 0
    assert report["commits"][0]["state"] == "warning"
    assert report["commits"][0]["warnings"] == warned["warnings"]
    assert report["commits"][1]["warnings"] == []  # the parent had it already


def test_mbox_and_patch_directory_apply_on_base(tmp_path):
    bad = {"tests": {**OK["tests"], A: "failed"}}
    shas = make_repo(tmp_path / "t", [OK, OK, bad])
    tree = tmp_path / "t"
    (tmp_path / "series.mbox").write_text(git(tree, "format-patch", "--stdout", f"{shas[0]}..{shas[2]}"))
    git(tree, "format-patch", "-q", "-o", str(tmp_path / "patches"), f"{shas[0]}..{shas[2]}")
    git(tree, "reset", "-q", "--hard", shas[0])  # the tree's HEAD is the base now
    for name, spec in (("mbox", "series.mbox"), ("dir", "patches")):
        rc, report, _ = run(tree, spec, results=tmp_path / f"results-{name}")
        assert rc == 1, name
        assert [c["subject"] for c in report["commits"]] == ["change 1", "change 2"]
        assert report["commits"][1]["regressions"][0]["test"] == A
    assert git(tree, "rev-parse", "HEAD").strip() == shas[0]  # the user's checkout is untouched
    assert worktrees_left(tree) == []


def test_a_message_id_is_taken_with_b4_from_a_local_mailbox(tmp_path):
    bad = {"tests": {**OK["tests"], A: "failed"}}
    shas = make_repo(tmp_path / "t", [OK, OK, bad])
    tree = tmp_path / "t"
    mbox = git(tree, "format-patch", "--thread", "--cover-letter", "--stdout", f"{shas[0]}..{shas[2]}")
    (tmp_path / "thread.mbox").write_text(mbox)
    cover = (
        next(ln for ln in mbox.splitlines() if ln.lower().startswith("message-id:")).split(":", 1)[1].strip()
    )
    git(tree, "reset", "-q", "--hard", shas[0])
    rc, report, _ = run(tree, cover, "--mailbox", "thread.mbox")
    assert rc == 1
    assert [c["subject"] for c in report["commits"]] == ["change 1", "change 2"]
    with pytest.raises(LabError, match="b4 am"):
        run(tree, "<no-such-message@example.org>", "--mailbox", "thread.mbox", results=tmp_path / "r2")


def test_a_patch_that_does_not_apply_stops_with_gits_message(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, OK])
    tree = tmp_path / "t"
    (tmp_path / "p.mbox").write_text(git(tree, "format-patch", "--stdout", "-1", shas[1]))
    (tree / "io_uring/zcrx.c").write_text("something else entirely\n")
    git(tree, "commit", "-q", "-am", "diverge")
    with pytest.raises(LabError, match=r"does not apply: .*change 1"):
        run(tree, "p.mbox")
    assert worktrees_left(tree) == []
    assert not (tmp_path / "cache/worktrees" / gitwork.tree_key(tree)).exists()


def test_bad_input_is_one_clear_error(tmp_path):
    make_repo(tmp_path / "t", [OK, OK])
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(LabError, match="not a patch or mailbox"):
        run(tmp_path / "t", "notes.txt")
    with pytest.raises(LabError, match="is not a commit"):
        run(tmp_path / "t", "nosuch..HEAD")
    with pytest.raises(LabError, match="not a git tree"):
        run(tmp_path, "HEAD~1..HEAD")
    with pytest.raises(LabError, match="no commits to test"):
        run(tmp_path / "t", "HEAD..HEAD")
    with pytest.raises(LabError, match="no such file or directory"):
        run(tmp_path / "t", "../missing/series.mbox")


def test_a_base_that_does_not_build_is_bad_input(tmp_path):
    shas = make_repo(tmp_path / "t", [{**OK, "build": "error: nope"}, OK])
    with pytest.raises(LabError, match="BASE .* does not build"):
        run(tmp_path / "t", f"{shas[0]}..{shas[1]}")


def test_a_lab_failure_stops_the_run_and_keeps_the_partial_report(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, OK, {**OK, "lab": "qemu-system-x86_64: cannot allocate memory"}])
    with pytest.raises(LabError, match="cannot allocate memory"):
        run(tmp_path / "t", f"{shas[0]}..{shas[2]}")
    report = json.loads((tmp_path / "results/series.json").read_text())
    assert report["commits"][0]["state"] == "success"
    assert worktrees_left(tmp_path / "t") == []


def test_ctrl_c_leaves_no_worktree_and_keeps_the_report(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, {**OK, "interrupt": True}])
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "t", f"{shas[0]}..{shas[1]}")
    assert (tmp_path / "results/series.json").exists()
    assert worktrees_left(tmp_path / "t") == []


SLOW_RUN = """
import sys, time
from host.ci import series
from host.ci.fakelab import FakeLab

class SlowLab(FakeLab):
    def test(self, args, results):
        print("testing", flush=True)
        time.sleep(60)

sys.exit(series.main(sys.argv[1:], lab_factory=lambda wt: SlowLab(wt.path)))
"""


def test_sigterm_leaves_no_worktree(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, OK])
    script = tmp_path / "slow.py"
    script.write_text(SLOW_RUN)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            f"{shas[0]}..{shas[1]}",
            "--tree",
            str(tmp_path / "t"),
            "--results-dir",
            str(tmp_path / "results"),
        ],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout.readline().startswith(b"[series]")
    while b"testing" not in proc.stdout.readline():
        pass
    assert worktrees_left(tmp_path / "t") != []
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    assert worktrees_left(tmp_path / "t") == []
    assert (tmp_path / "results/series.md").exists()


def test_a_worktree_left_by_a_killed_run_is_removed_next_time(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, OK])
    tree = tmp_path / "t"
    stale = tmp_path / "cache/worktrees" / gitwork.tree_key(tree)
    git(tree, "worktree", "add", "-q", "--detach", str(stale), shas[0])
    rc, _, _ = run(tree, f"{shas[0]}..{shas[1]}")
    assert rc == 0 and worktrees_left(tree) == []


def test_markdown_has_a_row_per_commit(tmp_path):
    bad = {"tests": {**OK["tests"], A: "failed"}}
    shas = make_repo(tmp_path / "t", [OK, OK, bad])
    run(tmp_path / "t", f"{shas[0]}..{shas[2]}")
    md = (tmp_path / "results/series.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert len(rows) == 2 and "| fail |" in rows[1] and "| success |" in rows[0]
    assert f"**{A}**" in md


def test_worktree_dates_files_for_an_incremental_build(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, OK])
    build_dir = tmp_path / "build"
    build_dir.mkdir()
    gitwork.mark_built(build_dir, shas[0])
    before = time.time() - 1
    with gitwork.Worktree(tmp_path / "t") as wt:
        wt.build_dir = build_dir
        wt.create(shas[1])
        assert (wt.path / "io_uring/zcrx.c").stat().st_mtime >= before  # changed since the build
        assert (wt.path / "lab.json").stat().st_mtime == gitwork.OLD_MTIME  # unchanged: make skips it
        assert git(wt.path, "status", "--porcelain") == ""
    gitwork.mark_built(build_dir, None)  # a build that failed: nothing is trusted
    with gitwork.Worktree(tmp_path / "t") as wt:
        wt.build_dir = build_dir
        wt.create(shas[1])
        assert (wt.path / "lab.json").stat().st_mtime >= before


def test_only_one_run_per_tree(tmp_path):
    make_repo(tmp_path / "t", [OK])
    with gitwork.Worktree(tmp_path / "t"):
        with pytest.raises(LabError, match="another series or bisect"):
            gitwork.Worktree(tmp_path / "t").__enter__()


def test_input_kinds(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, OK])
    tree = tmp_path / "t"
    assert gitwork.parse_input(tree, f"{shas[0]}..HEAD").kind == "range"
    assert gitwork.parse_input(tree, f"{shas[0]}..HEAD").head == shas[1]
    msgid = gitwork.parse_input(tree, "<20261130.1234-1-dev@kernel.org>")
    assert (msgid.kind, msgid.text) == ("msgid", "20261130.1234-1-dev@kernel.org")
    assert gitwork.parse_input(tree, f"{shas[0]}...{shas[1]}").base == shas[0]
    with pytest.raises(LabError, match="no such file"):
        gitwork.parse_input(tree, "../x.patch")


def test_test_paths_and_options_mix_in_any_order(tmp_path):
    shas = make_repo(tmp_path / "t", [OK, OK])
    rc, report, _ = run(tmp_path / "t", f"{shas[0]}..{shas[1]}", A, "--reruns", "1", C, "--every")
    assert rc == 0
    assert report["selection"] == [A, C] and report["base"]["counts"] == {"passed": 2}
