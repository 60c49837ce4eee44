"""End to end on a real kernel tree (slow: kept out of CI; run with -m slow).

Debian's linux-source of the default kernel under git, and host/ci/e2e_tree.py's
five-commit series to io_uring/zcrx.c, whose third commit makes
IORING_REGISTER_ZCRX_IFQ refuse rq_entries == 32768 and whose fourth adds an
unused variable. `series` must charge the third commit with the registration
tests that check rq_entries == 32768 (found only by the last commit's full run,
then located by bisecting inside the series), and warn about the fourth;
`bisect` must name the third. The first run builds the tree (about 15 minutes
on 2 cores); later runs only rebuild io_uring/zcrx.o.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from host.ci import e2e_tree

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TESTS = ["guest_tests/test_nodev_setup.py", "-k", "test_register_errno or test_rq_entries_rounded"]
BROKEN = {
    "guest_tests/test_nodev_setup.py::test_register_errno[rq_entries_max]",
    "guest_tests/test_nodev_setup.py::test_rq_entries_rounded_and_clamped[rq_entries_max-32768]",
}


def host(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "host", *args], cwd=REPO, capture_output=True, text=True)
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    return proc


def test_series_charges_the_breaking_commit_and_warns_about_the_warning(tmp_path):
    tree = e2e_tree.tree()
    mbox = tmp_path / "series.mbox"
    patches = subprocess.run(
        ["git", "-C", str(tree), "format-patch", "--stdout", f"base..{e2e_tree.BRANCH}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    mbox.write_text(patches)
    # --quick "not nodev": the commits before the last only boot, so the failure is
    # found at the end and located by bisecting the series
    proc = host(
        "series",
        str(mbox),
        "--tree",
        str(tree),
        "--base",
        "base",
        "--quick",
        "not nodev",
        "--results-dir",
        str(tmp_path / "series"),
        *TESTS,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads((tmp_path / "series" / "series.json").read_text())
    commits = report["commits"]
    assert [c["subject"] for c in commits] == [s[0] for s in e2e_tree.SERIES]
    assert [c["build"] for c in commits] == ["ok"] * 5
    bad = commits[2]
    assert bad["subject"] == e2e_tree.BAD_SUBJECT and bad["state"] == "fail"
    assert {r["test"] for r in bad["regressions"]} == BROKEN
    assert all(
        "Invalid argument" in r["message"] or "EINVAL" in r["message"] or "22" in r["message"]
        for r in bad["regressions"]
    )
    assert any("unused variable 'rounded'" in w for w in commits[3]["warnings"])
    assert [c["state"] for i, c in enumerate(commits) if i != 2 and not c["warnings"]] == ["success"] * 3
    assert sum(len(c["regressions"]) for c in commits) == len(BROKEN)
    assert report["preexisting"] == {}


def test_bisect_names_the_breaking_commit(tmp_path):
    tree = e2e_tree.tree()
    proc = host(
        "bisect",
        "--tree",
        str(tree),
        "--good",
        "base",
        "--bad",
        e2e_tree.BRANCH,
        "--results-dir",
        str(tmp_path / "bisect"),
        *TESTS,
    )
    assert proc.returncode == 0, proc.stderr
    first = json.loads((tmp_path / "bisect" / "result.json").read_text())
    assert first["subject"] == e2e_tree.BAD_SUBJECT
    assert f"first bad commit: {first['first'][:12]} {e2e_tree.BAD_SUBJECT}" in proc.stdout
    assert "test_register_errno[rq_entries_max]" in proc.stdout
