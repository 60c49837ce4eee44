"""End to end: the harness run as a user runs it, on the real default kernel.

Each case runs pytest in a subprocess against guest_tests/test_harness.py and
checks what a user would see: one-line errors for bad kernels, a deliberate
panic charged to its test with the panic text while later tests still pass,
results kept, and no QEMU process or tap left behind; the same for `-n 2`
(two workers, two VMs, one merged report).
"""

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def harness_cmd(results: Path, *args: str, tests=("guest_tests/test_harness.py",)) -> list[str]:
    """pytest on guest_tests/test_harness.py as a user types it, results into RESULTS."""
    pytest_ = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    return [*pytest_, f"--results-dir={results}", *args, *tests]


# -n 2: the harness's tests (one group: they build on each other) on one worker, a
# nodev module beside them on the other
PARALLEL_TESTS = ("guest_tests/test_harness.py", "guest_tests/test_nodev_refill.py")


def start(cmd) -> subprocess.Popen:
    """CMD running as from a terminal: SIGINT at its default (a background job, as this
    test may be, inherits it ignored; a user's terminal does not)."""
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def lab_pytest(tmp_path, *args, timeout=600) -> subprocess.CompletedProcess:
    cmd = harness_cmd(tmp_path / "results", *args)
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def leftovers(results: Path) -> list[str]:
    """QEMU processes of that run, and the servers holding its taps' namespaces
    (host/vm/testlink.py: the tap lives as long as its server or a QEMU)."""
    found = []
    for pattern in (f"qemu-system.*{results}", f"host.vm.testlink.*{results}"):
        procs = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
        found += procs.stdout.splitlines()
    return found


def one_line_error(proc) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("ERROR: ")]
    assert len(errors) == 1, proc.stdout + proc.stderr
    return errors[0]


def test_nonexistent_kernel(tmp_path):
    line = one_line_error(lab_pytest(tmp_path, "--kernel=/nonexistent"))
    assert line == "ERROR: kernel /nonexistent: no such file or directory"


def test_not_a_kernel(tmp_path):
    line = one_line_error(lab_pytest(tmp_path, f"--kernel={REPO / 'README.md'}"))
    assert "not a kernel image" in line


def test_coverage_needs_a_gcov_kernel(tmp_path):
    line = one_line_error(lab_pytest(tmp_path, "--kernel=default", "--coverage"))
    assert "no gcov (CONFIG_GCOV_KERNEL)" in line


def test_kernel_without_zcrx(tmp_path):
    from host.guestimage.image import guest_image

    img = guest_image()
    release = img.kernel_version
    bz = tmp_path / f"vmlinuz-{release}"
    bz.symlink_to(img.vmlinuz)
    config = img.kernel_config.read_text().replace("CONFIG_IO_URING_ZCRX=y", "")
    (tmp_path / f"config-{release}").write_text(config)
    line = one_line_error(lab_pytest(tmp_path, f"--kernel={bz}"))
    assert line.endswith("lacks required options: CONFIG_IO_URING_ZCRX")


def test_kernel_that_does_not_boot_shows_console_tail(tmp_path):
    proc = lab_pytest(tmp_path, "--kernel=default", "--kernel-cmdline=rdinit=/nonexistent")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "did not boot to SSH" in out and "console tail" in out
    assert "Kernel panic" in out  # the tail says why
    assert (tmp_path / "results" / "console-boot1.log").stat().st_size > 0
    # series and bisect charge this to the commit, not to the lab
    failure = json.loads((tmp_path / "results" / "run.json").read_text())["boot_failure"]
    assert failure["kind"] == "kernel" and "Kernel panic" in failure["message"]
    assert not leftovers(tmp_path / "results")


def test_panic_and_splats_are_charged_and_the_run_goes_on(tmp_path):
    """--crash-selftest: the panic fails its test, the VM restarts; an expected WARNING
    passes its test, a missing one fails it, another beside it still fails it."""
    proc = lab_pytest(tmp_path, "--kernel=default", "--crash-selftest")
    results = tmp_path / "results"
    suite = ET.parse(results / "junit.xml").getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    panic = cases["test_deliberate_panic"].find("failure")
    assert panic is not None, proc.stdout
    assert "Kernel panic - not syncing: sysrq triggered crash" in panic.get("message") + (panic.text or "")
    missing = cases["test_expected_warning_missing"].find("failure")
    assert missing is not None and "did not occur" in missing.get("message"), proc.stdout
    other = cases["test_expected_warning_and_another"].find("failure")
    assert other is not None and "another warning" in other.get("message"), proc.stdout
    assert "provoked on purpose" not in other.get("message")
    for name in (
        "test_guest_runs_kernel_under_test",
        "test_expected_warning_is_not_charged",
        "test_guest_alive_after_previous_tests",
    ):
        assert len(cases[name]) == 0 or cases[name][0].tag == "system-out", f"{name} did not pass"
    assert proc.returncode == 1  # exactly: tests failed, not an internal error
    assert (results / "console-boot1.log").read_text().count("sysrq triggered crash") >= 1
    assert (results / "console-boot2.log").exists()  # the VM was restarted
    assert not leftovers(results)


def test_interrupt_keeps_results_and_leaves_nothing(tmp_path):
    results = tmp_path / "results"
    cmd = harness_cmd(results, "--kernel=default")
    proc = start(cmd)
    console = results / "console-boot1.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (console.exists() and console.stat().st_size > 0):
        time.sleep(0.1)
    assert console.exists(), "the VM never started"
    os.kill(proc.pid, signal.SIGINT)  # while the guest boots
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 2, out  # pytest's "interrupted"
    assert console.stat().st_size > 0
    time.sleep(0.5)
    assert not leftovers(results)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_leaves_no_qemu(tmp_path, sig):
    results = tmp_path / "results"
    cmd = harness_cmd(results, "--kernel=default")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    console = results / "console-boot1.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (console.exists() and console.stat().st_size > 1000):
        time.sleep(0.2)
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 10
    while leftovers(results) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftovers(results)


def test_parallel_run_merges_results_and_restarts_only_the_panicked_vm(tmp_path):
    """-n 2 --crash-selftest: one junit.xml and run.json for both workers, every test's
    kernel log, each worker's console logs; the panic reboots its worker's VM only."""
    results = tmp_path / "results"
    cmd = harness_cmd(results, "--kernel=default", "--crash-selftest", "-n", "2", tests=PARALLEL_TESTS)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the harness's deliberate failures
    run = json.loads((results / "run.json").read_text())
    cases = list(ET.parse(results / "junit.xml").getroot().iter("testcase"))
    assert len(cases) == len(run["tests"]) > 10
    assert {f"guest_tests/{c.get('classname').split('.')[-1]}.py::{c.get('name')}" for c in cases} == set(
        run["tests"]
    )
    assert run["tests"]["guest_tests/test_harness.py::test_deliberate_panic"]["outcome"] == "failed"
    assert run["tests"]["guest_tests/test_harness.py::test_guest_alive_after_previous_tests"]["outcome"] == (
        "passed"
    )
    assert any(nodeid.startswith("guest_tests/test_nodev_refill.py") for nodeid in run["tests"])
    assert "test_deliberate_panic" in " ".join(run["splats"])
    assert run["release"] and len(run["boot_seconds"]) == 3  # 2 VMs, 1 restart
    panicked = [d for d in results.glob("gw*") if (d / "console-boot2.log").exists()]
    assert len(panicked) == 1, sorted(p.name for p in results.rglob("console-boot*.log"))
    assert "sysrq triggered crash" in (panicked[0] / "console-boot1.log").read_text()
    assert len(list(results.glob("gw*/console-boot1.log"))) == 2
    assert len(list(results.glob("tests/*/dmesg.txt"))) == len(run["tests"])  # every one ran in a guest
    summary = [ln for ln in proc.stdout.splitlines() if ln.startswith("zcrx-lab: kernel ")]
    assert len(summary) == 1 and "gw0" in summary[0] and "gw1" in summary[0], proc.stdout
    assert not leftovers(results)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_parallel_run_stopped_leaves_nothing(tmp_path, sig):
    """Ctrl-C or SIGTERM to the controller while both workers' VMs boot."""
    results = tmp_path / "results"
    cmd = harness_cmd(results, "--kernel=default", "-n", "2", tests=PARALLEL_TESTS)
    proc = start(cmd)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        consoles = list(results.glob("gw*/console-boot1.log"))
        if len(consoles) == 2 and all(c.stat().st_size > 0 for c in consoles):
            break
        time.sleep(0.1)
    assert len(list(results.glob("gw*/console-boot1.log"))) == 2, "the VMs never started"
    os.kill(proc.pid, sig)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == (2 if sig == signal.SIGINT else -sig), out
    deadline = time.monotonic() + 10
    while leftovers(results) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftovers(results)
    assert all(c.stat().st_size > 0 for c in results.glob("gw*/console-boot1.log"))
