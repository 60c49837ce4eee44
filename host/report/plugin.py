"""The pytest plugin: --kernel, one reused VM, per-test dmesg and splat verdicts.

Each test that uses the `guest` fixture is charged with every kernel log
record logged while it ran; a splat among them fails it with the excerpt. A
panic or a hung guest fails the running test, the VM is restarted, and the
remaining tests run. Console logs, per-test dmesg and JUnit XML land in the
results directory whatever happens. Under `pytest -n N` (pytest-xdist) every
worker runs a VM of its own and the controller merges the report
(host/report/parallel.py); `--shard I/N` runs one slice of the selection
(host/report/shard.py).
"""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from host.errors import BootError, LabError
from host.report import parallel, shard, splat
from host.vm import kmsg
from host.vm.guest import Guest
from host.vm.ssh import GuestTimeout

REPO = Path(__file__).resolve().parents[2]
SETTLE_LIMIT = 5.0  # s a test's log window waits for io_uring ring teardown work (kmsg.settle_cmd)
MARKERS = {
    "nodev": "device-less zcrx (ZCRX_REG_NODEV): uapi, rings, copy fallback",
    "zcnic": "zero-copy receive on the emulated zcnic NIC",
    "upstream": "the kernel's own selftests, unmodified",
    "liburing": "liburing's own zcrx test (test/zcrx.c of the guest image's liburing)",
    "traffic": "real TCP from the host (scapy) over the multi-queue NIC",
    "teardown": "process crash / teardown behaviour",
    "faults": "fault injection: zcnic's knobs, and the kernel's (fail-nth) on a debug kernel",
    "slow": "builds kernels or takes many minutes (the series/bisect end-to-end); not in `host test`",
    "crash_selftest": "deliberately crashes or splats the guest to check the harness (--crash-selftest)",
    "in_guest": "the test function itself runs in the guest (guest_tests/agent.py)",
    "guest_timeout": "guest_timeout(seconds): this test's guest call may take that long when "
    "it is more than the default (a whole upstream script run in one test)",
    "expected_warning": "expected_warning(regex, reason=...): the test provokes a kernel WARNING "
    "whose report matches regex on purpose; it must occur, and every other splat still fails",
}


def pytest_addoption(parser):
    group = parser.getgroup("zcrx-lab")
    group.addoption(
        "--kernel",
        default=None,
        help="kernel under test: 'default' (Debian's prebuilt 7.x), a bzImage, "
        "or a built kernel tree (default: default)",
    )
    group.addoption(
        "--results-dir",
        default=None,
        help="where console logs, per-test dmesg and JUnit XML go (default: results/<date-time>)",
    )
    group.addoption(
        "--no-build",
        action="store_true",
        help="refuse a kernel source tree whose build is missing or older than its sources "
        "(by default the lab builds it out of tree, incrementally, with kconfigs/ fragments)",
    )
    group.addoption("--queues", type=int, default=4, help="test NIC queue count (default 4)")
    group.addoption(
        "--vm",
        choices=("qemu", "vng"),
        default="qemu",
        help="what boots the kernel: the lab's own QEMU command line (default), or virtme-ng "
        "(vng) with the same image, NIC, shares and SSH",
    )
    group.addoption(
        "--vng-opts",
        default="",
        help="with --vm=vng: options of your own for vng, e.g. '--verbose' or \"--qemu-opts='-s'\"",
    )
    group.addoption(
        "--guest-timeout",
        type=float,
        default=None,
        help="seconds a guest command may take before the guest counts as hung "
        "(default 300 under TCG, 60 under KVM)",
    )
    group.addoption(
        "--kernel-cmdline", default="", help="extra kernel command line, e.g. 'kasan.fault=panic'"
    )
    group.addoption(
        "--coverage",
        action="store_true",
        help="collect the kernel's gcov data after the run: HTML report and a line "
        "summary of io_uring/zcrx.c, net/core/page_pool.c and net/core/netdev_rx_queue.c "
        "(needs --kernel=debug or a tree built with build-kernel --coverage)",
    )
    group.addoption(
        "--crash-selftest",
        action="store_true",
        help="run the tests that deliberately panic (or splat) the guest",
    )
    group.addoption(
        "--shard",
        default=None,
        metavar="I/N",
        help="run slice I of N (1-based) of the selected tests, balanced by the durations "
        "of --shard-durations; for a CI matrix (merge with `python3 -m host merge-results`)",
    )
    group.addoption(
        "--shard-durations",
        default=None,
        metavar="PATH",
        help="junit.xml, run.json or results directory of an earlier run whose test durations "
        "balance --shard (every shard must be given the same; default: one unit per test)",
    )


class Lab:
    """Session state: the kernel, the image, the VM and the log cursor."""

    def __init__(self, config):
        self.config = config
        self.spec = config.getoption("kernel") or "default"
        self.build = not config.getoption("no_build")
        self.run_dir = Path(config.getoption("results_dir"))  # the run's: junit, run.json, tests/
        self.worker = parallel.worker_id(config)  # "gw0".. under pytest -n, else None
        # this VM's files (console and boot logs, zcnic.ko, staged trees); the guest's /results
        self.results = self.run_dir / self.worker if self.worker else self.run_dir
        self.kernel = None
        self.image = None
        self.vm = None
        self.kmsg_seq = -1
        self.console_offset = 0
        self.boot_times: list[float] = []
        self.boot_splats: list[splat.Splat] = []
        self.charged: dict[str, list[str]] = {}
        self.settle_limit = SETTLE_LIMIT
        self.settle_wait = 0.0
        self.settle_waits: dict[str, float] = {}  # test -> seconds its ring teardown ran on
        self.coverage = config.getoption("coverage")
        self.coverage_summary = ""
        self.closed = False
        # nodeid -> {"outcome", "message"}: what series and bisect read (run.json)
        self.outcomes: dict[str, dict] = {}
        self.seconds: dict[str, float] = {}  # nodeid -> setup + call + teardown (balances --shard)
        self.boot_failure: dict | None = None

    def resolve(self) -> None:
        from host.guestimage import image
        from host.kernels import kernel

        if self.kernel:
            return
        if self.spec not in ("default", "debug") or (self.spec == "default" and self.coverage):
            # fail fast, before building an image
            kernel.resolve(self.spec, None, self.coverage, build=self.build)
        self.image = image.guest_image()
        self.kernel = kernel.resolve(self.spec, self.image, self.coverage, build=self.build)

    def ensure_vm(self):
        from host.vm.qemu import VM

        self.resolve()
        if self.vm is None:
            self.vm = VM(
                self.kernel,
                self.image,
                self.results,
                queues=self.config.getoption("queues"),
                cmdline=self.config.getoption("kernel_cmdline"),
                launcher=self.config.getoption("vm"),
                vng_opts=self.config.getoption("vng_opts"),
            )
        if not self.vm.alive():
            self.vm.start()
            self.boot_times.append(self.vm.boot_seconds)
            self._say(
                f"booted {self.kernel.describe()} ({self.vm.accel}: {self.vm.accel_reason}) "
                f"to SSH in {self.vm.boot_seconds:.1f} s"
            )
            self.kmsg_seq = -1  # a new kernel numbers its records from 0
            records = self._read_kmsg()
            boot_log = "\n".join(str(r) for r in records)
            (self.results / f"dmesg-boot{self.vm.boots}.txt").write_text(boot_log + "\n")
            found = splat.scan(boot_log)
            if found:
                self.boot_splats += found
                self._say(f"WARNING: the kernel splatted while booting: {found[0]}")
            self.console_offset = self.vm.console_size()
        return self.vm

    def timeout(self) -> float:
        return self.config.getoption("guest_timeout") or (60 if self.vm.accel == "kvm" else 300)

    def _read_kmsg(self, settle: float = 0.0) -> list[kmsg.Record]:
        """The records since the last read; with SETTLE, first wait up to that long for
        io_uring's ring teardown work (kmsg.settle_cmd)."""
        prefix = kmsg.settle_cmd(settle) if settle else ""
        raw = self.vm.run(prefix + kmsg.READ_CMD, timeout=30).stdout
        if settle:
            self.settle_wait, gave_up = kmsg.settled(raw)
            # a teardown that never ends (a kernel bug, its own splat) costs once, not per test
            self.settle_limit = 0.5 if gave_up else SETTLE_LIMIT
        records = [r for r in kmsg.parse(raw) if r.seq > self.kmsg_seq]
        if records:
            self.kmsg_seq = records[-1].seq
        return records

    def _debug_checks(self) -> str:
        """After each test on a debug kernel, in one guest call:

        kmemleak: scan now and report (then forget) new leaks. Two scans: the
        first only records a checksum of each new object and treats it as
        referenced (a changed checksum means "still in use"); a leak shows in
        the second (measured: 1 splatgen leak, reported by the second scan
        only; 2-5 s per scan on the debug kernel under TCG). kmemleak also
        ignores objects younger than 5 s, so a leak from the last moments of a
        test is charged to the next one; the report names the allocation
        backtrace either way.

        DMA-API debug: it prints only its first error of a boot (dma-api/
        num_errors starts at 1, then it only counts), so one test's error,
        even a known kernel bug's, would silence it for every later test;
        re-armed here, each test's first DMA-API error is reported.
        """
        commands = []
        if self.kernel.config.get("DEBUG_KMEMLEAK") == "y":
            ctl = "/sys/kernel/debug/kmemleak"
            commands.append(f"echo scan > {ctl} && echo scan > {ctl} && cat {ctl} && echo clear > {ctl}")
        if self.kernel.config.get("DMA_API_DEBUG") == "y":
            commands.append("echo 1 2>/dev/null > /sys/kernel/debug/dma-api/num_errors")
        if not commands:
            return ""
        report = self.vm.run("; ".join(commands), timeout=300).stdout
        return "\n" + report if report.strip() else ""

    def collect(self, item, crashed: bool) -> tuple[str, str, bool]:
        """The kernel log of ITEM's run: (dmesg text, console text, crashed)."""
        dmesg = ""
        if not crashed and self.vm and self.vm.alive():
            try:
                dmesg = "\n".join(str(r) for r in self._read_kmsg(self.settle_limit))
                if self.settle_wait:
                    self.settle_waits[item.nodeid] = self.settle_wait
                dmesg += self._debug_checks()
            except GuestTimeout:
                crashed = True
        if crashed and self.vm.alive():
            # A panicking guest exits QEMU (panic=-1, -no-reboot) within
            # moments; a hung one stays. Give either time to say why.
            try:
                self.vm.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        console = self.vm.console_since(self.console_offset) if self.vm else ""
        if self.vm:
            self.console_offset = self.vm.console_size()
        folder = self.run_dir / "tests" / re.sub(r"[^\w.-]+", "_", item.nodeid)[-150:]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "dmesg.txt").write_text(dmesg + "\n")
        (folder / "console.txt").write_text(console)
        return dmesg, console, crashed

    def boot_failed(self, exc: LabError, session) -> None:
        """Stop the run: the kernel did not boot (BootError) or the lab failed."""
        kind = "kernel" if isinstance(exc, BootError) else "lab"
        self.boot_failure = {"kind": kind, "message": str(exc)}
        if self.worker:
            # pytest.exit in an xdist worker orphans its pending tests (the controller
            # then fails an internal assertion); a stopped session stops every worker,
            # and the controller exits 3 with the merged run.json (pytest_sessionfinish)
            session.shouldstop = f"zcrx-lab: {str(exc).splitlines()[0]}"
            pytest.fail(f"zcrx-lab: {exc}", pytrace=False)
        self.write_run_json()
        pytest.exit(f"zcrx-lab: {exc}", returncode=3)

    def run_info(self) -> dict:
        """This process's run.json (in a worker: its part of the run's)."""
        info = {
            "kernel": self.spec,
            "release": self.kernel.release if self.kernel else None,
            "accel": self.vm.accel if self.vm else None,
            "boot_seconds": self.boot_times,
            "splats": self.charged,
            "iou_exit_waits": self.settle_waits,
            "boot_splats": [str(s) for s in self.boot_splats],
            "boot_failure": self.boot_failure,
            "coverage": self.coverage_summary or None,
            "tests": self.tests_json(),
        }
        if self.image and self.spec == "default":
            info["debian_package"] = self.image.package_version
        return info

    def tests_json(self) -> dict[str, dict]:
        """run.json's tests: outcome, message and seconds of each."""
        return {
            nodeid: {**outcome, "seconds": round(self.seconds.get(nodeid, 0.0), 3)}
            for nodeid, outcome in self.outcomes.items()
        }

    def write_run_json(self) -> None:
        if parallel.is_controller(self.config):
            info = parallel.merged_run(self.config, self.tests_json())
        else:
            info = self.run_info()
        (self.run_dir / "run.json").write_text(json.dumps(info, indent=1) + "\n")

    def worker_part(self) -> dict:
        """What a worker hands the controller at its end (xdist's workeroutput)."""
        return {
            "run": self.run_info(),
            "kernel": self.kernel.describe() if self.kernel else None,
            "boot_times": self.boot_times,
        }

    def _say(self, text: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(f"zcrx-lab: {text}")

    def _collect_coverage(self) -> None:
        """Copy this boot's gcov counters out of the guest (before it goes)."""
        from host.report import coverage

        try:
            copy = coverage.guest_copy_command(f"/results/coverage/boot{self.vm.boots}")
            out = self.vm.run(copy, timeout=600)
        except GuestTimeout:
            self._say(f"coverage: boot {self.vm.boots} hung while its gcov data was copied")
            return
        if out.rc != 0:
            self._say(f"coverage: copying boot {self.vm.boots}'s gcov data failed: {out.stderr.strip()}")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.coverage and self.vm and self.vm.alive():
            self._collect_coverage()
        if self.vm:
            self.vm.stop()
        if self.coverage and self.vm:
            from host.report import coverage

            try:
                self.coverage_summary = coverage.report(self.results / "coverage", self.vm.boots)
            except LabError as exc:
                self.coverage_summary = f"no report: {exc}"


_LAB_KEY = pytest.StashKey[Lab]()


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    results = config.getoption("results_dir")
    worker = parallel.worker_id(config)
    if worker:
        results = config.workerinput["zcrx_results"]  # the controller's (parallel.py)
    if results is None:
        results = REPO / "results" / time.strftime("%Y%m%d-%H%M%S")
        config.option.results_dir = str(results)
    results = Path(results).resolve()
    config.option.results_dir = str(results)
    results.mkdir(parents=True, exist_ok=True)
    latest = REPO / "results" / "latest"
    if results.parent == latest.parent and not worker:
        if latest.is_symlink():
            latest.unlink()
        if not latest.exists():
            latest.symlink_to(results.name)
    if not getattr(config.option, "xmlpath", None):
        config.option.xmlpath = str(results / "junit.xml")
    if config.getoption("shard"):
        try:  # a bad --shard is a one-line usage error too
            shard.parse(config.getoption("shard"))
        except LabError as exc:
            raise pytest.UsageError(str(exc)) from None
    lab = Lab(config)
    config.stash[_LAB_KEY] = lab
    if not parallel.worker_id(config):  # xdist's controller plugin may not be registered yet
        config.pluginmanager.register(_ControllerRecorder(lab), "zcrx-lab-controller")
    if config.getoption("kernel") or config.getoption("coverage"):
        try:  # a bad --kernel is a one-line usage error, before anything runs
            lab.resolve()
        except LabError as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(config, items):
    if config.getoption("shard"):
        try:
            kept = shard.select(items, config.getoption("shard"), config.getoption("shard_durations"))
        except LabError as exc:
            raise pytest.UsageError(str(exc)) from None
        dropped = [item for item in items if item not in kept]
        items[:] = kept
        config.hook.pytest_deselected(items=dropped)
    if parallel.worker_id(config):
        parallel.write_groups(config, items)
    if config.getoption("crash_selftest"):
        return
    skip = pytest.mark.skip(
        reason="deliberately panics or splats the guest to check the harness's "
        "crash recovery and verdicts; run with --crash-selftest"
    )
    for item in items:
        if "crash_selftest" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lab(request) -> Lab:
    lab = request.config.stash[_LAB_KEY]
    request.addfinalizer(lab.close)
    return lab


@pytest.fixture(scope="session")
def _kernel_recorded(request, lab, record_testsuite_property) -> None:
    """The kernel under test, in the JUnit XML, once the VM first boots."""
    try:
        lab.ensure_vm()
    except LabError as exc:
        lab.boot_failed(exc, request.session)
    record_testsuite_property("kernel", lab.kernel.spec)
    record_testsuite_property("kernel_release", lab.kernel.release)
    if lab.image and lab.spec == "default":
        record_testsuite_property("debian_package", lab.image.package_version)


@pytest.fixture(scope="session")
def zcnic_module(lab) -> str:
    """Guest path of zcnic.ko built for the kernel under test (nic/)."""
    import shutil

    from host.kernels import zcnic

    lab.resolve()
    try:
        built = zcnic.build(lab.kernel, lab.image)
    except LabError as exc:
        pytest.fail(str(exc), pytrace=False)
    shutil.copy(built, lab.results / "zcnic.ko")
    return "/results/zcnic.ko"


@pytest.fixture(scope="session")
def ynl_path(lab) -> str:
    """Guest path of the kernel's YNL (tools/net/ynl/pyynl + Documentation/netlink/specs of
    the kernel under test's source), copied into the results directory once per session."""
    from host.kernels import upstream

    lab.resolve()
    try:
        upstream.stage_ynl(lab.kernel, lab.image, lab.results / "ynl")
    except LabError as exc:
        pytest.skip(f"no YNL for kernel {lab.kernel.describe()}: {exc}")
    return "/results/ynl"


@pytest.fixture
def guest(request, lab, _kernel_recorded) -> Guest:
    try:
        vm = lab.ensure_vm()
    except LabError as exc:
        lab.boot_failed(exc, request.session)
    longer = request.node.get_closest_marker("guest_timeout")
    return Guest(vm, max(lab.timeout(), longer.args[0]) if longer else lab.timeout())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if "guest" not in getattr(item, "fixturenames", ()):
        return (yield)
    lab: Lab = item.config.stash[_LAB_KEY]
    error = None
    try:
        result = yield
    except BaseException as exc:  # judged below, together with the kernel log
        error = exc
    vm = lab.vm
    crashed = vm is not None and (not vm.alive() or isinstance(error, GuestTimeout))
    dmesg, console, crashed = lab.collect(item, crashed)
    found = splat.scan(dmesg) or splat.scan(console)
    found, error = _expected_warnings(item, found, error, crashed)
    known = [(s, bug) for s in found if (bug := splat.known_bug(s))]
    found = [s for s in found if not splat.known_bug(s)]
    if known or found:
        lab.charged[item.nodeid] = [f"known kernel bug ({b.name}): {s}" for s, b in known]
        lab.charged[item.nodeid] += [str(s) for s in found]
    if known:
        text = "\n\n".join(f"{b.name}: {b.analysis}\n{s.excerpt}" for s, b in known)
        item.add_report_section("call", "known kernel bug", text)
    if crashed:
        why = "the guest died" if not vm.alive() else f"the guest hung ({error})"
        vm.kill()  # restarted by the next test's guest fixture
        detail = splat.summary(found) if found else "console tail:\n" + "\n".join(console.splitlines()[-25:])
        raise pytest.fail.Exception(f"{why} during this test; {detail}", pytrace=False)
    if found:
        prefix = f"{type(error).__name__}: {error}\n" if error else ""
        raise pytest.fail.Exception(prefix + splat.summary(found), pytrace=False)
    if error is not None:
        raise error
    if known:
        names = "; ".join(f"{b.name}: {b.analysis}" for _, b in known)
        raise pytest.xfail.Exception(f"a known kernel bug splatted here: {names}")
    return result


def _expected_warnings(item, found: list, error, crashed: bool):
    """Take the WARNING an `expected_warning` test provokes on purpose out of the splats;
    its absence is the test's failure (the path it aims at was not reached)."""
    marker = item.get_closest_marker("expected_warning")
    if marker is None or crashed:
        return found, error
    pattern = re.compile(marker.args[0])
    expected = [s for s in found if s.kind == "WARNING" and pattern.search(s.excerpt)]
    if expected:
        item.add_report_section("call", "expected kernel WARNING", "\n\n".join(s.excerpt for s in expected))
    elif error is None:
        error = pytest.fail.Exception(
            f"the kernel WARNING this test provokes (matching {pattern.pattern!r}) did not occur",
            pytrace=False,
        )
    return [s for s in found if s not in expected], error


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Each test's outcome, for run.json: setup/teardown errors count as "error"."""
    report = yield
    lab = item.config.stash.get(_LAB_KEY, None)
    if lab is not None:
        _record_outcome(lab, report)
    return report


def _record_outcome(lab: Lab, report) -> None:
    lab.seconds[report.nodeid] = lab.seconds.get(report.nodeid, 0.0) + (report.duration or 0.0)
    previous = lab.outcomes.get(report.nodeid, {}).get("outcome")
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.failed:
        outcome = "failed" if report.when == "call" else "error"
    elif report.skipped:
        outcome = "skipped"
    elif report.when == "call":
        outcome = "passed"
    else:
        return  # a passing setup or teardown says nothing new
    if previous in ("failed", "error") and outcome in ("passed", "skipped"):
        return  # a failed call stays failed whatever its teardown did
    message = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        message = str(report.longrepr[2])  # (file, line, "Skipped: reason")
    elif report.failed:
        message = report.longreprtext or ""
    lab.outcomes[report.nodeid] = {"outcome": outcome, "message": message[-4000:]}


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """An `in_guest` test: pytest chose its parameters and fixtures here; its body runs
    in the guest's agent, with the guest environments its fixtures stand for and the
    contract values (guest_tests/contract.py VALUES) its host fixtures returned."""
    if pyfuncitem.get_closest_marker("in_guest") is None:
        return None
    guest = pyfuncitem._request.getfixturevalue("guest")
    answer, output = guest.run_test(guest_request(pyfuncitem))
    if output.strip():
        pyfuncitem.add_report_section("call", "guest output", output)
    if answer.outcome == "skipped":
        pytest.skip(answer.message)
    if answer.outcome == "xfailed":
        pytest.xfail(answer.message)
    if answer.outcome != "passed":
        raise _guest_failure(pyfuncitem.module, answer)
    return True


def guest_request(pyfuncitem):
    """The TestRequest of an in_guest test: each argument is a guest environment (a
    GuestEnv fixture), a contract value (a fixture returning one of contract.VALUES,
    sent typed) or a parameter; anything else lives on the host and cannot cross."""
    from guest_tests.contract import TestRequest, encode, is_value
    from host.vm.guest import GuestEnv

    params = pyfuncitem.callspec.params if hasattr(pyfuncitem, "callspec") else {}
    request = TestRequest(pyfuncitem.module.__name__, pyfuncitem.originalname)
    for name in pyfuncitem._fixtureinfo.argnames:
        value = pyfuncitem.funcargs[name]
        if isinstance(value, GuestEnv):
            request.envs[name] = value.settings
        elif is_value(value):
            request.values[name] = encode(value)
        elif name in params:
            request.args[name] = value
        else:
            raise pytest.UsageError(
                f"{pyfuncitem.nodeid}: fixture {name!r} lives on the host; an in_guest test "
                "takes guest environments, contract values (guest_tests/contract.py) and "
                "parameters only"
            )
    return request


def _guest_failure(module, answer) -> BaseException:
    """What a failed guest test raises on the host. An assertion of a class the test module
    defines (the agent's message starts with its name) comes back as that class, so that
    xfail(raises=...) can tell it from any other failure."""
    name = answer.message.partition(":")[0]
    cls = getattr(module, name, None)
    if answer.outcome == "failed" and isinstance(cls, type) and issubclass(cls, AssertionError):
        return cls(answer.message)
    where = answer.traceback.strip().splitlines()
    detail = "\n".join(where[-12:]) if answer.outcome == "error" else ""
    return pytest.fail.Exception(f"{answer.message}\n{detail}".strip(), pytrace=False)


class _ControllerRecorder:
    """The xdist controller runs no test: it records each outcome from the workers'
    reports, so a test of a worker that died is in run.json too."""

    def __init__(self, lab: Lab):
        self.lab = lab

    def pytest_runtest_logreport(self, report) -> None:
        if parallel.is_controller(self.lab.config):  # a serial run records in makereport
            _record_outcome(self.lab, report)


def pytest_terminal_summary(terminalreporter, config):
    lab: Lab = config.stash.get(_LAB_KEY, None)
    if lab is None:
        return
    write = terminalreporter.write_line
    if parallel.is_controller(config):
        _controller_summary(lab, write)
        return
    if lab.kernel:
        boots = ", ".join(f"{t:.1f}" for t in lab.boot_times)
        write(f"zcrx-lab: kernel {lab.kernel.describe()}; boots to SSH: {boots or 'none'} s")
    if lab.kernel or lab.outcomes:
        lab.write_run_json()
    if lab.coverage_summary:
        write(f"zcrx-lab: {lab.coverage_summary}")
    for nodeid, heads in lab.charged.items():
        write(f"zcrx-lab: splat charged to {nodeid}: {'; '.join(heads)}")
    write(f"zcrx-lab: results in {lab.results} (junit.xml, console-boot*.log, tests/*/dmesg.txt)")


def _controller_summary(lab: Lab, write) -> None:
    """The serial run's summary lines, once, for all workers together."""
    parts = {worker: part for worker, part in sorted(parallel.parts(lab.config).items()) if part}
    run = parallel.merged_run(lab.config, lab.tests_json())
    kernel = next((p["kernel"] for p in parts.values() if p["kernel"]), None)
    kernel = kernel or (lab.kernel.describe() if lab.kernel else None)  # resolved for --kernel
    if kernel:
        boots = "; ".join(
            f"{worker}: {', '.join(f'{t:.1f}' for t in part['boot_times']) or 'none'}"
            for worker, part in parts.items()
        )  # a worker stopped by Ctrl-C or a crash hands nothing over
        write(f"zcrx-lab: kernel {kernel}; boots to SSH: {boots + ' s' if boots else 'not reported'}")
    if kernel or lab.outcomes:
        lab.write_run_json()
    for splat_line in run["boot_splats"]:
        write(f"zcrx-lab: WARNING: the kernel splatted while booting: {splat_line.splitlines()[0]}")
    if run["coverage"]:
        write(f"zcrx-lab: {run['coverage']}")
    for nodeid, heads in run["splats"].items():
        write(f"zcrx-lab: splat charged to {nodeid}: {'; '.join(heads)}")
    files = "junit.xml, run.json, tests/*/dmesg.txt, gw*/console-boot*.log"
    write(f"zcrx-lab: results in {lab.run_dir} ({files})")


def pytest_sessionfinish(session):
    lab = session.config.stash.get(_LAB_KEY, None)
    if lab is None:
        return
    lab.close()
    if lab.worker:
        session.config.workeroutput[parallel.PART_KEY] = lab.worker_part()
    elif parallel.is_controller(session.config):
        if parallel.merged_run(session.config, lab.tests_json())["boot_failure"]:
            session.exitstatus = 3  # as a serial run's pytest.exit: the kernel or the lab failed
