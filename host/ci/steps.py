"""What series and bisect do at one commit of a worktree: build, compiler
warnings, checkpatch, tests. `KernelLab` does it for real; the unit tests of
series and bisect give them a stand-in with the same four methods.
"""

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from host.ci import gitwork, testrun
from host.errors import LabError
from host.kernels import build


@dataclass
class Build:
    ok: bool
    seconds: float
    error: str = ""
    compiled: int = 0
    log: Path | None = None


@dataclass
class Checkpatch:
    errors: int = 0
    warnings: int = 0
    checks: int = 0
    issues: list[str] = field(default_factory=list)
    ran: bool = True

    def summary(self) -> str:
        if not self.ran:
            return "n/a"
        return f"{self.errors} errors, {self.warnings} warnings, {self.checks} checks"


class KernelLab:
    """Builds SRC (a worktree, or the user's tree) out of tree into OUT and tests the result."""

    def __init__(self, src: Path, out: Path, fragments: list[str], jobs: int | None = None):
        from host.setup import KERNEL_BUILD_PACKAGES, debian_packages

        debian_packages(KERNEL_BUILD_PACKAGES)  # a failure here is the lab's, not a commit's
        self.src, self.out, self.fragments, self.jobs = src, out, fragments, jobs

    def build(self, commit: str, logdir: Path) -> Build:
        start = time.monotonic()
        gitwork.mark_built(self.out, None)
        logdir.mkdir(parents=True, exist_ok=True)
        try:
            compiled = build.build_tree(self.src, self.out, self.fragments, self.jobs)
        except LabError as exc:
            return Build(False, time.monotonic() - start, str(exc), log=self._keep_log(logdir))
        gitwork.mark_built(self.out, commit)
        return Build(True, time.monotonic() - start, compiled=compiled, log=self._keep_log(logdir))

    def _keep_log(self, logdir: Path) -> Path | None:
        log = self.out / "build.log"
        if not log.exists():
            return None
        kept = logdir / "build.log"
        kept.write_bytes(log.read_bytes())
        return kept

    def warnings(self, files: list[str]) -> list[str]:
        return build.compile_warnings(self.src, self.out, self.fragments, files)

    def checkpatch(self, commit: str) -> Checkpatch:
        script = self.src / "scripts/checkpatch.pl"
        if not script.exists():
            return Checkpatch(ran=False)
        patch = gitwork.git(self.src, "format-patch", "-1", "--stdout", commit)
        proc = subprocess.run(
            ["perl", str(script), "--strict", "--no-color", "--show-types", "-"],
            input=patch,
            capture_output=True,
            text=True,
            cwd=self.src,
        )
        return parse_checkpatch(proc.stdout)

    def test(self, args: list[str], results: Path) -> testrun.TestRun:
        return testrun.run_tests(self.out, args, results)


TOTAL = re.compile(r"^total: (\d+) errors, (\d+) warnings, (?:(\d+) checks, )?\d+ lines checked", re.M)


def parse_checkpatch(output: str) -> Checkpatch:
    m = TOTAL.search(output)
    if not m:
        return Checkpatch(ran=False, issues=output.strip().splitlines()[-1:])
    issues = [ln.strip() for ln in output.splitlines() if re.match(r"^(ERROR|WARNING|CHECK):", ln)]
    return Checkpatch(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), issues)
