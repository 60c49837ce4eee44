"""pytest-xdist glue: `pytest -n N` runs N VMs, one per worker, and one report.

Every worker is a pytest process with a Lab of its own: its VM, tap (named after
the worker's pid), SSH port, kernel log cursor and splat verdicts, and a restart
after a panic that concerns its VM only. What belongs to a worker's VM lives in
RESULTS/<worker>/ (console-bootN.log, dmesg-bootN.txt, qemu-bootN.cmd, zcnic.ko,
the staged ynl and upstream trees, coverage; the guest sees it as /results); each
test's kernel log goes to RESULTS/tests/ as in a serial run. The controller
writes xdist's one junit.xml, merges the workers' parts of run.json
(host/report/merge.py) and prints the summary once.

Scheduling: tests that must share a worker (group_of) go to one worker as one
unit; every other test is dealt out one by one to whichever worker is free.
"""

import ctypes
import json
import os
import signal
from pathlib import Path

import pytest

from host.report.merge import merge_runs

GROUPS_FILE = "xdist-groups.json"  # nodeid -> group, written by workers for the controller
PART_KEY = "zcrx_lab"  # the worker's part of the report, in xdist's workeroutput
VM_OVERHEAD_MB = 512  # QEMU's own memory beside the guest's RAM (TCG translation cache, 9p)
_PARTS = pytest.StashKey[dict]()
_PROPERTIES_SET = pytest.StashKey[bool]()


def worker_id(config) -> str | None:
    """'gw0', 'gw1', ... in an xdist worker; None in a serial run and in the controller."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput["workerid"] if workerinput else None


def is_controller(config) -> bool:
    """True in the xdist controller, which runs no test and boots no VM."""
    return config.pluginmanager.hasplugin("dsession")


def auto_workers(cpus: int | None = None, available_mb: int | None = None, vm_mb: int | None = None) -> int:
    """How many VMs this machine runs side by side: a TCG VM keeps one core busy
    (single-threaded TCG) and may touch all of its guest RAM."""
    from qemu.machine import MachineSpec

    if cpus is None:
        cpus = len(os.sched_getaffinity(0))
    if available_mb is None:
        available_mb = _mem_available_mb()
    if vm_mb is None:
        vm_mb = MachineSpec.__dataclass_fields__["memory_mb"].default + VM_OVERHEAD_MB
    return max(1, min(cpus, available_mb // vm_mb))


def _mem_available_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def group_of(item) -> str | None:
    """The group ITEM must run in with the rest of it on one worker; None: anywhere."""
    marker = item.get_closest_marker("xdist_group")
    if marker is not None:
        return str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))
    path = item.nodeid.split("::")[0]
    if path.endswith("test_harness.py") or path.endswith("test_harness_e2e.py"):
        # test_harness.py: later tests check the VM after an earlier one panicked it.
        # test_harness_e2e.py: each case boots VMs
        # of its own under signal deadlines; one at a time keeps them off each other.
        return path
    if "traffic" in item.keywords:
        return "traffic"  # scapy pushes TCP from the host through the VM's tap: CPU-bound, timed
    if "upstream" in item.keywords:
        # one staging of the kernel's selftests per worker, and a driver selftest script's
        # cases judge its one run in the agent (guest_tests/lib/upstream.py script_run)
        return "upstream"
    return None


def write_groups(config, items) -> None:
    """In a worker: tell the controller's scheduler which tests go together."""
    groups = {item.nodeid: group for item in items if (group := group_of(item))}
    folder = Path(config.getoption("results_dir"))
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{GROUPS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(groups, indent=1) + "\n")
    tmp.rename(folder / GROUPS_FILE)  # every worker writes the same map; the last rename wins


def parts(config) -> dict[str, dict]:
    """In the controller: each finished worker's part of the report, by worker id."""
    return config.stash.setdefault(_PARTS, {})


def merged_run(config, outcomes: dict) -> dict:
    """In the controller: run.json of the whole run. The controller saw every test's
    report (also those of a worker that died), so OUTCOMES decide the tests."""
    runs = [p["run"] for _, p in sorted(parts(config).items()) if p]
    merged = merge_runs(runs)
    merged["tests"] = dict(outcomes)
    if merged.get("coverage"):  # each worker's line covers its own boots: one for all
        from host.report import coverage

        merged["coverage"] = coverage.combined(Path(config.option.results_dir)) or merged["coverage"]
    return merged


def _scheduler_class():
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's loadscope with our groups as scopes and every other test a scope of
        its own. (xdist's loadgroup would append '@group' to every grouped test's
        nodeid, which then differs from a serial run's in junit.xml and run.json.)"""

        def __init__(self, config, log=None):
            super().__init__(config, log)
            self.groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                path = Path(self.config.getoption("results_dir")) / GROUPS_FILE
                self.groups = json.loads(path.read_text()) if path.exists() else {}
            group = self.groups.get(nodeid)
            return f"group:{group}" if group else nodeid

    return GroupScheduling


def _die_with_controller() -> None:
    """A worker gets SIGTERM when the controller goes (SIGTERM, SIGKILL, a crash): its
    SIGTERM handler (host/vm/qemu.py) kills its VM at once. Without this a worker notices
    only when it next writes to the controller: after its current test, VM still up."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the controller went before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def pytest_configure(config) -> None:
    if worker_id(config):
        _die_with_controller()


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_auto_num_workers(config) -> int:
    return auto_workers()


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None  # an explicit --dist other than load is the user's choice
    return _scheduler_class()(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    # a worker parses the command line again: a default results directory named after
    # the time would differ; it takes the controller's
    node.workerinput["zcrx_results"] = node.config.getoption("results_dir")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    output = getattr(node, "workeroutput", None) or {}
    part = output.get(PART_KEY)
    parts(node.config)[node.gateway.id] = part
    if part and part["run"].get("release"):
        _junit_properties(node.config, part["run"])


def _junit_properties(config, run: dict) -> None:
    """The kernel under test in the controller's junit.xml, as a serial run records it
    (plugin._kernel_recorded; a worker's record_testsuite_property goes nowhere)."""
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is None or config.stash.get(_PROPERTIES_SET, False):
        return
    config.stash[_PROPERTIES_SET] = True
    xml.add_global_property("kernel", run["kernel"])
    xml.add_global_property("kernel_release", run["release"])
    if run.get("debian_package"):
        xml.add_global_property("debian_package", run["debian_package"])
