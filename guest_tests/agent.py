"""Guest-side entry point, the only way guest code runs for the host: guest test
functions, and the guest functions host code calls for a value (host.vm.guest
Guest.call: the bench's rounds).

`python3 -m guest_tests.agent --serve` stays up for the whole boot: the host
sends one request per line on stdin,

    {"module": "guest_tests.test_nodev_setup", "function": "test_register_errno",
     "args": {"case": "ok"}, "envs": {"nodev": {}}, "values": {}}

and gets one answer per line on stdout, after the marker (see contract.py).
The function runs here, in the guest, with the environment objects it names
built by guest_tests/lib/env.py and the other arguments as the host's pytest
parametrized them, and the contract values (contract.py VALUES) host fixtures
gave it; its `defer`red undo steps run after it, pass or fail. What it returns
comes back in the answer's `value` (JSON). The test's own output (and that of
anything it spawns) goes to stderr, so it can never corrupt an answer.
Assertions are rewritten by pytest's own machinery, so a failing
`assert a == b` says what a and b were.
"""

import ast
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import traceback

from guest_tests.contract import MARKER, TestAnswer, decode


class _AssertRewriter(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads guest_tests.test_* with pytest's assertion rewriting, as pytest would."""

    def __init__(self, rewrite):
        self.rewrite = rewrite

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith("guest_tests.test_"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin:
            return None
        spec.loader = self
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        origin = module.__spec__.origin
        with open(origin, "rb") as f:
            source = f.read()
        tree = ast.parse(source, origin)
        self.rewrite(tree, source, origin, None)
        exec(compile(tree, origin, "exec"), module.__dict__)


def _rewrite_asserts() -> None:
    """pytest's assertion rewriting for guest_tests.test_* modules, if pytest is here."""
    try:
        from _pytest.assertion.rewrite import rewrite_asserts
    except ImportError:
        return
    sys.meta_path.insert(0, _AssertRewriter(rewrite_asserts))


def run_test(request: dict) -> TestAnswer:
    from guest_tests.lib import env as envs
    from guest_tests.lib.defer import run_deferred

    try:
        import pytest

        skip_exc = pytest.skip.Exception
        xfail_exc = pytest.xfail.Exception
        fail_exc = pytest.fail.Exception
    except ImportError:
        skip_exc = xfail_exc = fail_exc = ()
    try:
        func = getattr(importlib.import_module(request["module"]), request["function"])
        kwargs = dict(request.get("args") or {})
        for name, value in (request.get("values") or {}).items():
            kwargs[name] = decode(value)
        for name, spec in (request.get("envs") or {}).items():
            kwargs[name] = envs.get(name, spec)
        value = func(**kwargs)
        json.dumps(value)  # a value that cannot cross is this request's error, not the agent's
        answer = TestAnswer("passed", value=value)
    except skip_exc as exc:
        answer = TestAnswer("skipped", str(exc.msg if hasattr(exc, "msg") else exc))
    except xfail_exc as exc:  # before fail_exc: pytest's XFailed is a Failed
        answer = TestAnswer("xfailed", str(exc.msg if hasattr(exc, "msg") else exc))
    except (AssertionError, fail_exc) as exc:
        answer = TestAnswer("failed", _message(exc), traceback.format_exc())
    except Exception as exc:
        answer = TestAnswer("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    cleanup = run_deferred()
    if cleanup and answer.outcome in ("passed", "skipped", "xfailed"):
        answer = TestAnswer("error", f"cleanup failed: {cleanup}")
    return answer


def _message(exc: BaseException) -> str:
    text = str(exc.msg) if hasattr(exc, "msg") else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def serve() -> int:
    """Answer requests until stdin closes; test output goes to stderr."""
    requests = os.fdopen(os.dup(0), "r")
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a test or its children print lands on stderr
    sys.stdout = sys.stderr
    _rewrite_asserts()
    for line in requests:
        if not line.strip():
            continue
        answer = run_test(json.loads(line))
        sys.stderr.flush()
        answers.write(MARKER + json.dumps(answer.__dict__) + "\n")
    return 0


def main() -> int:
    if sys.argv[1:] != ["--serve"]:
        print("usage: python3 -m guest_tests.agent --serve", file=sys.stderr)
        return 2
    return serve()


if __name__ == "__main__":
    sys.exit(main())
