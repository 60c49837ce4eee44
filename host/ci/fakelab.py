"""A stand-in for steps.KernelLab in the unit tests of series and bisect.

The synthetic git repositories of those tests carry, at every commit, a file
lab.json saying what the real lab would find there:

    {"build": "ok" | "<compiler error>",
     "boot": "ok" | "<console tail>",
     "lab": "<the lab itself fails with this>",
     "tests": {"guest_tests/test_a.py::test_nodev_x": "passed" | "failed", ...},
     "flaky": {"<test>": N},        # fails its first N runs at this commit, then passes
     "splats": {"<test>": ["WARNING: ..."]},
     "boot_splats": ["WARNING: ..."],
     "warnings": ["io_uring/zcrx.c: unused variable 'x'"],
     "interrupt": true}             # the test run is interrupted (Ctrl-C)

so series and bisect run their real logic over real git history, with the
kernel build and the VM replaced by what the commit's lab.json says.
"""

import json
import re
from pathlib import Path

from host.ci.steps import Build, Checkpatch
from host.ci.testrun import NoTests, TestResult, TestRun
from host.errors import LabError


class FakeLab:
    def __init__(self, src: Path, runs: dict | None = None):
        self.src = Path(src)
        self.runs = runs if runs is not None else {}  # (commit, test) -> runs so far
        self.built = None

    def _spec(self) -> dict:
        return json.loads((self.src / "lab.json").read_text())

    def build(self, commit: str, logdir: Path) -> Build:
        spec = self._spec()
        if "lab" in spec:
            raise LabError(spec["lab"])
        logdir.mkdir(parents=True, exist_ok=True)
        if spec.get("build", "ok") != "ok":
            return Build(False, 0.1, spec["build"])
        self.built = commit
        return Build(True, 0.1, compiled=1)

    def warnings(self, files: list[str]) -> list[str]:
        return [w for w in self._spec().get("warnings", []) if w.split(":")[0] in files]

    def checkpatch(self, commit: str) -> Checkpatch:
        return Checkpatch(ran=False)

    def test(self, args: list[str], results: Path) -> TestRun:
        spec = self._spec()
        results.mkdir(parents=True, exist_ok=True)
        if spec.get("interrupt"):
            raise KeyboardInterrupt("interrupted by the test")
        if "lab" in spec:
            raise LabError(spec["lab"])
        if spec.get("boot", "ok") != "ok":
            return TestRun(results, {}, boot_failure=spec["boot"])
        tests = _select(spec["tests"], args)
        if not tests:
            raise NoTests(f"no test matches the selection {args}")
        out = {}
        for t in tests:
            key = (self.built, t)
            self.runs[key] = self.runs.get(key, 0) + 1
            outcome = spec["tests"][t]
            if spec.get("flaky", {}).get(t, 0) >= self.runs[key]:
                outcome = "failed"
            message = f"E   AssertionError: {t} {outcome}" if outcome == "failed" else ""
            out[t] = TestResult(outcome, message, spec.get("splats", {}).get(t, []))
        return TestRun(results, out, boot_splats=spec.get("boot_splats", []), seconds=0.1)


def _select(tests: dict, args: list[str]) -> list[str]:
    """Test ids named in ARGS, else all; `-m EXPR` keeps the ids containing each word of EXPR."""
    named = [a for a in args if "::" in a]
    if named:
        return [t for t in named if t in tests]
    chosen = list(tests)
    if "-m" in args:
        words = set(re.findall(r"\w+", args[args.index("-m") + 1])) - {"and", "or", "not"}
        chosen = [t for t in chosen if all(w in t for w in words)]
    if "-k" in args:
        chosen = [t for t in chosen if args[args.index("-k") + 1] in t]
    return chosen
