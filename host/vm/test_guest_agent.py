"""The guest agent's serve protocol, run here on the host (no VM): requests in,
answers out, assertion messages rewritten, defers run, test output kept off
the answer stream, values returned, contract values crossing typed; and the
host's side of it: the plugin's request for an in_guest test, Guest.call."""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from guest_tests.contract import MARKER, HostFlow, TestAnswer, TestRequest, UpstreamTree, encode
from host.report.plugin import guest_request
from host.vm.guest import Guest, GuestCallError, GuestEnv

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


def test_xfails(nodev):
    pytest.xfail("upstream: known bug")


def test_takes_flow(flow, tree):
    from guest_tests.contract import HostFlow, UpstreamTree

    assert isinstance(flow, HostFlow) and isinstance(tree, UpstreamTree)
    return {"port": flow.port, "payload": flow.payload().hex(), "hw": tree.hw_dir}


def returns_value(n):
    return {"half": half(n), "list": [n, n]}


def returns_unsendable():
    return object()
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


def test_returned_value_comes_back(tmp_path):
    ok, bad = agent(
        tmp_path,
        TestRequest("guest_tests.test_sample", "returns_value", {"n": 9}),
        TestRequest("guest_tests.test_sample", "returns_unsendable"),
    )
    assert ok.outcome == "passed" and ok.value == {"half": 4, "list": [9, 9]}
    assert bad.outcome == "error" and "not JSON serializable" in bad.message


def test_contract_values_cross_typed(tmp_path):
    flow = HostFlow(port=4242, size=16, seed=7)
    values = {"flow": encode(flow), "tree": encode(UpstreamTree("/results/upstream"))}
    [answer] = agent(tmp_path, TestRequest("guest_tests.test_sample", "test_takes_flow", values=values))
    assert answer.outcome == "passed", answer
    # the guest rebuilt the dataclass: same fields, same payload as the host's
    hw = "/results/upstream/tools/testing/selftests/drivers/net/hw"
    assert answer.value == {"port": 4242, "payload": flow.payload().hex(), "hw": hw}


def test_xfail_is_its_own_outcome(tmp_path):
    [answer] = agent(tmp_path, req("test_xfails"))
    assert (answer.outcome, answer.message) == ("xfailed", "upstream: known bug")


def item(**funcargs):
    """What guest_request reads of a pytest item whose test takes FUNCARGS; `case` is a
    parameter."""
    return SimpleNamespace(
        nodeid="guest_tests/test_x.py::test_y[1]",
        module=SimpleNamespace(__name__="guest_tests.test_x"),
        originalname="test_y",
        callspec=SimpleNamespace(params={"case": 1, "host_flow": 1 << 20}),  # host_flow: indirect
        _fixtureinfo=SimpleNamespace(argnames=list(funcargs)),
        funcargs=funcargs,
    )


def test_plugin_sends_envs_contract_values_and_parameters():
    flow = HostFlow(port=1, size=1 << 20, seed=3)
    request = guest_request(item(nic=GuestEnv("nic", {"module": "/m.ko"}), host_flow=flow, case=1))
    assert request == TestRequest(
        "guest_tests.test_x",
        "test_y",
        args={"case": 1},
        envs={"nic": {"module": "/m.ko"}},
        values={
            "host_flow": {
                "type": "HostFlow",
                "fields": {
                    **{"port": 1, "size": 1 << 20, "seed": 3},
                    **{"mss": 1448, "shape": "psh", "family": "ipv4"},
                },
            }
        },
    )
    json.dumps(request.__dict__)  # all of it crosses as JSON


def test_plugin_refuses_other_host_fixtures():
    with pytest.raises(pytest.UsageError, match="fixture 'lab' lives on the host"):
        guest_request(item(lab=SimpleNamespace(), case=1))


class FakeGuest(Guest):
    def __init__(self, answer: TestAnswer):
        self.answer, self.sent = answer, []

    def run_test(self, request, timeout=None):
        self.sent.append((request, timeout))
        return self.answer, "guest says hello\n"


def test_call_runs_through_the_agent():
    guest = FakeGuest(TestAnswer("passed", value={"bytes": 5}))
    assert guest.call("guest_tests.bench:one_round", timeout=9, envs={"nic": {}}, mode="zcrx") == {"bytes": 5}
    assert guest.sent == [(TestRequest("guest_tests.bench", "one_round", {"mode": "zcrx"}, {"nic": {}}), 9)]


def test_call_failure_carries_the_guest_traceback():
    guest = FakeGuest(TestAnswer("error", "OSError: boom", 'Traceback ...\n  File "zcnic.py", line 3'))
    with pytest.raises(GuestCallError) as err:
        guest.call("guest_tests.bench:one_round")
    text = str(err.value)
    assert "guest_tests.bench:one_round error: OSError: boom" in text
    assert 'File "zcnic.py", line 3' in text and "guest says hello" in text
