"""The guest agent's serve protocol, run here on the host (no VM): requests in,
answers out, assertion messages rewritten, defers run, test output kept off
the answer stream."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from guest_tests.contract import MARKER, TestAnswer, TestRequest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = """
import os
import pytest
from guest_tests.lib.defer import defer

UNDONE = "/tmp/undone"


def half(n):
    return n // 2


def test_passes(nodev, n):
    defer(lambda: open(os.environ["AGENT_TEST_DIR"] + "/undone", "w").write("yes"))
    print("noise on stdout", flush=True)
    os.system("echo noise from a child")
    assert half(n) == n // 2


def test_fails(nodev):
    assert half(7) == 4, "halving"


def test_skips(nodev):
    pytest.skip("no CONFIG_USER_NS in this kernel")


def test_errors(nodev):
    raise OSError(22, "Invalid argument")


def test_cleanup_fails(nodev):
    defer(lambda: 1 / 0)
"""


def agent(tmp_path, *requests: TestRequest) -> list[TestAnswer]:
    pkg = tmp_path / "guest_tests"
    pkg.mkdir()
    for name in ("__init__.py", "contract.py", "agent.py"):
        shutil.copy(REPO / "guest_tests" / name, pkg / name)
    for name in ("lib", "zcrx"):
        shutil.copytree(REPO / "guest_tests" / name, pkg / name)
    (pkg / "test_sample.py").write_text(SAMPLE)
    lines = "".join(json.dumps(r.__dict__) + "\n" for r in requests)
    proc = subprocess.run(
        [sys.executable, "-m", "guest_tests.agent", "--serve"],
        input=lines,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"AGENT_TEST_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert ("noise" in proc.stderr) == ("test_passes" in lines)  # test output: stderr only
    answers = [ln for ln in proc.stdout.splitlines() if ln]
    assert all(ln.startswith(MARKER) for ln in answers), proc.stdout
    return [TestAnswer(**json.loads(ln[len(MARKER) :])) for ln in answers]


def req(function: str, **args) -> TestRequest:
    return TestRequest("guest_tests.test_sample", function, args, {"nodev": {}})


def test_answers_one_line_per_request_in_order(tmp_path):
    answers = agent(
        tmp_path,
        req("test_passes", n=10),
        req("test_fails"),
        req("test_skips"),
        req("test_errors"),
        req("test_cleanup_fails"),
    )
    assert [a.outcome for a in answers] == ["passed", "failed", "skipped", "error", "error"]
    assert (tmp_path / "undone").read_text() == "yes"  # the passing test's defer ran
    failed = answers[1]
    assert failed.message.startswith("AssertionError: halving\nassert 3 == 4")  # pytest's rewriting
    assert "+  where 3 = half(7)" in failed.message
    assert answers[2].message == "no CONFIG_USER_NS in this kernel"
    assert answers[3].message == "OSError: [Errno 22] Invalid argument"
    assert answers[4].message.startswith("cleanup failed: <lambda>: ZeroDivisionError")


def test_unknown_environment_is_an_error(tmp_path):
    bad = TestRequest("guest_tests.test_sample", "test_fails", {}, {"nic9": {}})
    [answer] = agent(tmp_path, bad)
    assert answer.outcome == "error" and "no guest environment 'nic9'" in answer.message


def test_ynl_success_warning_is_read_from_its_print():
    from guest_tests.lib.ynl import success_warning

    # what YNL's NlMsg repr prints for an ACK carrying an extack message (ynl.py)
    printed = (
        "Netlink warning:\nnl_len = 64 (64) nl_flags = 0x300 nl_type = 2\n"
        "\textack: {'msg': 'hds_thresh ignored'}\n"
    )
    assert success_warning(printed) == "hds_thresh ignored"
    assert success_warning("") == ""
    assert (
        success_warning("Netlink warning:\nnl_len = 36\n\textack: {'bad-attr': '.mtu'}\n")
        == "{'bad-attr': '.mtu'}"
    )
