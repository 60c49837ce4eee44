"""Merging runs: run.json keeps its schema (testrun.read_run reads it), junit.xml
keeps every case and sums the counts, merge-results lays out one directory."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from host.ci.testrun import read_run
from host.errors import LabError
from host.report.merge import merge_junit, merge_results, merge_runs

REPO = Path(__file__).resolve().parents[2]


def run_json(tests: dict, **info) -> dict:
    base = {
        "kernel": "default",
        "release": "7.3.4",
        "accel": "tcg",
        "boot_seconds": [5.0],
        "splats": {},
        "iou_exit_waits": {},
        "boot_splats": [],
        "boot_failure": None,
        "coverage": None,
        "tests": {t: {"outcome": o, "message": "", "seconds": 1.0} for t, o in tests.items()},
        "debian_package": "7.3.4-1",
    }
    return {**base, **info}


def junit(cases: dict[str, str], release="7.3.4") -> str:
    """A junit.xml as pytest writes it: CASES name -> passed/failed/skipped."""
    body = ""
    for name, outcome in cases.items():
        inner = {"failed": '<failure message="boom">tb</failure>', "skipped": '<skipped message="s"/>'}
        case = f'<testcase classname="guest_tests.test_x" name="{name}" time="2.5">'
        body += f"{case}{inner.get(outcome, '')}</testcase>"
    failures = sum(o == "failed" for o in cases.values())
    skipped = sum(o == "skipped" for o in cases.values())
    return (
        f'<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" '
        f'errors="0" failures="{failures}" skipped="{skipped}" tests="{len(cases)}" time="10.0">'
        f'<properties><property name="kernel_release" value="{release}"/></properties>{body}'
        "</testsuite></testsuites>"
    )


def test_runs_are_joined_per_test_and_concatenated_per_boot():
    a = run_json({"t::a": "passed"}, splats={"t::a": ["WARNING x"]}, boot_seconds=[5.0, 6.0])
    b = run_json({"t::b": "failed"}, boot_seconds=[7.0], boot_splats=["BUG y"], coverage="zcrx.c 50%")
    merged = merge_runs([a, b])
    assert set(merged["tests"]) == {"t::a", "t::b"}
    assert merged["boot_seconds"] == [5.0, 6.0, 7.0]
    assert merged["splats"] == {"t::a": ["WARNING x"]}
    assert merged["boot_splats"] == ["BUG y"]
    assert merged["coverage"] == "zcrx.c 50%"
    assert (merged["kernel"], merged["release"], merged["debian_package"]) == ("default", "7.3.4", "7.3.4-1")
    assert set(merged) == set(a)  # the schema a single run writes


def test_first_boot_failure_and_known_values_win():
    failure = {"kind": "kernel", "message": "did not boot"}
    merged = merge_runs([run_json({}, release=None, accel=None), run_json({}, boot_failure=failure)])
    assert merged["boot_failure"] == failure
    assert merged["release"] == "7.3.4" and merged["accel"] == "tcg"
    assert "debian_package" not in merge_runs([{"tests": {}}])


def test_junit_cases_kept_counts_summed(tmp_path):
    (tmp_path / "a.xml").write_text(junit({"test_a": "passed", "test_b": "failed"}))
    (tmp_path / "b.xml").write_text(junit({"test_c": "skipped"}, release="other"))
    merge_junit([tmp_path / "a.xml", tmp_path / "b.xml"], tmp_path / "out.xml")
    suite = ET.parse(tmp_path / "out.xml").getroot().find("testsuite")
    assert [c.get("name") for c in suite.iter("testcase")] == ["test_a", "test_b", "test_c"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    assert float(suite.get("time")) == 20.0
    assert [p.get("value") for p in suite.iter("property")] == ["7.3.4"]  # the first run's


def test_junit_that_is_not_xml_is_one_error(tmp_path):
    (tmp_path / "bad.xml").write_text("not xml")
    with pytest.raises(LabError, match="not a JUnit XML file"):
        merge_junit([tmp_path / "bad.xml"], tmp_path / "out.xml")


def results_dir(path: Path, tests: dict, cases: dict) -> Path:
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps(run_json(tests)))
    (path / "junit.xml").write_text(junit(cases))
    (path / "console-boot1.log").write_text(f"console of {path.name}\n")
    for test in tests:
        (path / "tests" / test).mkdir(parents=True)
        (path / "tests" / test / "dmesg.txt").write_text("log\n")
    return path


def test_merge_results_lays_out_one_report(tmp_path):
    one = results_dir(tmp_path / "shard1", {"t_a": "passed"}, {"test_a": "passed"})
    two = results_dir(tmp_path / "shard2", {"t_b": "failed"}, {"test_b": "failed"})
    merge_results(tmp_path / "out", [one, two])
    out = tmp_path / "out"
    run = read_run(out)  # series and bisect read it as they read a single run's
    assert {t: r.outcome for t, r in run.tests.items()} == {"t_a": "passed", "t_b": "failed"}
    assert (out / "tests" / "t_a" / "dmesg.txt").exists() and (out / "tests" / "t_b" / "dmesg.txt").exists()
    assert (out / "1-shard1" / "console-boot1.log").read_text() == "console of shard1\n"
    assert (out / "2-shard2" / "console-boot1.log").exists()
    assert len(list(ET.parse(out / "junit.xml").getroot().iter("testcase"))) == 2
    summary = (out / "summary.md").read_text()
    assert "| failed | 1 |" in summary and "| passed | 1 |" in summary and "`t_b`: failed" in summary


def test_merge_results_command(tmp_path):
    one = results_dir(tmp_path / "a", {"t_a": "passed"}, {"test_a": "passed"})
    cmd = [sys.executable, "-m", "host", "merge-results", str(tmp_path / "out"), str(one)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "merged 1 results directories" in proc.stdout and "1 passed" in proc.stdout
    bad = subprocess.run([*cmd, str(tmp_path / "missing")], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    error = f"zcrx-lab: error: merge-results: {tmp_path / 'missing'}: no such directory"
    assert bad.stderr.strip().splitlines() == [error]
