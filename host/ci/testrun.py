"""Run the guest suite on one kernel in a child pytest and read what it found.

Series and bisect judge commits by the same pytest run a developer types
(`pytest --kernel=BUILD ...`), in its own process group so that Ctrl-C or
SIGTERM stops it, its VM and its tap before they return. The plugin's
run.json gives each test's outcome, the splats charged to it, and whether
the kernel failed to boot or the lab itself failed.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from host.errors import LabError

REPO = Path(__file__).resolve().parents[2]
FAILED = ("failed", "error")


class NoTests(LabError):
    """The selection matched no test."""


@dataclass
class TestResult:
    outcome: str  # passed, failed, error, skipped, xfailed, xpassed
    message: str = ""
    splats: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED

    def headline(self) -> str:
        """One line: the splat if any, else the assertion's last line."""
        if self.splats:
            return self.splats[0]
        lines = [ln.strip() for ln in self.message.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("E ")]
        # a traceback's first "E" line, or a message without traceback (pytrace=False)
        return (errors[0][1:].strip() if errors else lines[0] if lines else self.outcome)[:300]


@dataclass
class TestRun:
    results: Path
    tests: dict[str, TestResult]
    boot_failure: str | None = None  # the kernel did not boot: console tail
    boot_splats: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> dict[str, TestResult]:
        return {t: r for t, r in self.tests.items() if r.failed}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.tests.values():
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return out


def run_child(cmd: list[str], log: Path, cwd: Path = REPO, env: dict | None = None, echo=None) -> int:
    """Run CMD in its own process group, output to LOG (and each line to ECHO);
    on KeyboardInterrupt (Ctrl-C, or SIGTERM through gitwork.terminate_as_interrupt)
    stop the whole group first, so no VM or tap outlives it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=subprocess.PIPE if echo else out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        try:
            if echo:
                for line in proc.stdout:
                    out.write(line)
                    out.flush()
                    echo(line.decode(errors="replace").rstrip("\n"))
            return proc.wait()
        except BaseException:
            _stop_group(proc)
            raise
        finally:
            if proc.stdout:
                proc.stdout.close()


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue


def read_run(results: Path, seconds: float = 0.0) -> TestRun:
    """The TestRun a finished pytest left in RESULTS (run.json)."""
    info = json.loads((results / "run.json").read_text())
    splats = info.get("splats") or {}
    tests = {
        nodeid: TestResult(t["outcome"], t.get("message", ""), splats.get(nodeid, []))
        for nodeid, t in (info.get("tests") or {}).items()
    }
    failure = info.get("boot_failure")
    if failure and failure.get("kind") == "lab":
        raise LabError(f"the lab failed, not the kernel: {failure['message'].splitlines()[0]}")
    return TestRun(
        results, tests, failure["message"] if failure else None, info.get("boot_splats") or [], seconds
    )


def run_tests(kernel: Path, args: list[str], results: Path) -> TestRun:
    """`pytest --kernel=KERNEL ARGS` into RESULTS. A kernel that does not boot is
    a result (boot_failure); a lab that cannot run is a LabError."""
    results.mkdir(parents=True, exist_ok=True)
    log = results / "pytest.log"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        f"--kernel={kernel}",
        f"--results-dir={results}",
        "-p",
        "no:cacheprovider",
        "-rfE",
        *args,
    ]
    start = time.monotonic()
    rc = run_child(cmd, log)
    seconds = time.monotonic() - start
    if rc == 5:
        raise NoTests(f"no test matches the selection {' '.join(args)!r}")
    if not (results / "run.json").exists() or rc not in (0, 1, 3):
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise LabError(f"pytest exited {rc} without results: {' | '.join(tail)} (log: {log})")
    return read_run(results, seconds)
