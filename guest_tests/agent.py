"""Guest-side entry point: run guest test functions (and, for the tests not yet
moved into the guest, scenario functions) for the host.

`python3 -m guest_tests.agent --serve` stays up for the whole boot: the host
sends one request per line on stdin,

    {"module": "guest_tests.test_nodev_setup", "function": "test_register_errno",
     "args": {"case": "ok"}, "envs": {"nodev": {}}}

and gets one answer per line on stdout, after the marker (see contract.py).
The function runs here, in the guest, with the environment objects it names
built by guest_tests/lib/env.py and the other arguments as the host's pytest
parametrized them; its `defer`red undo steps run after it, pass or fail. The
test's own output (and that of anything it spawns) goes to stderr, so it can
never corrupt an answer. Assertions are rewritten by pytest's own machinery,
so a failing `assert a == b` says what a and b were.

`python3 -m guest_tests.agent MODULE:FUNCTION JSON_KWARGS` runs one scenario
function once and prints its value (the older, one-shot protocol).
"""

import ast
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import traceback

from guest_tests.contract import MARKER, TestAnswer


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
        fail_exc = pytest.fail.Exception
    except ImportError:
        skip_exc = fail_exc = ()
    try:
        func = getattr(importlib.import_module(request["module"]), request["function"])
        kwargs = dict(request.get("args") or {})
        for name, spec in (request.get("envs") or {}).items():
            kwargs[name] = envs.get(name, spec)
        func(**kwargs)
        answer = TestAnswer("passed")
    except skip_exc as exc:
        answer = TestAnswer("skipped", str(exc.msg if hasattr(exc, "msg") else exc))
    except (AssertionError, fail_exc) as exc:
        answer = TestAnswer("failed", _message(exc), traceback.format_exc())
    except Exception as exc:
        answer = TestAnswer("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    cleanup = run_deferred()
    if cleanup and answer.outcome in ("passed", "skipped"):
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
    if sys.argv[1:2] == ["--serve"]:
        return serve()
    target, kwargs = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    module_name, func_name = target.split(":")
    try:
        func = getattr(importlib.import_module(f"guest_tests.{module_name}"), func_name)
        result = {"ok": True, "value": func(**kwargs)}
    except Exception as exc:  # reported to the host, which fails the test with it
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    sys.stdout.flush()
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
