"""The kernel's own driver selftests (tools/testing/selftests/drivers/net/*.py and hw/*.py,
iou-zcrx.py among them), unmodified, on NicEnv's topology: the NetDrvEpEnv variables
they read, one run of a script, its KTAP verdicts."""

import os
import re
import subprocess

from guest_tests.contract import RESULTS

TEST_NAME = "iou-zcrx"  # the script, and the prefix of its KTAP case names
# s for one upstream script under TCG (its own commands time out at 20 s): on a 2-core
# machine with a CI run and a 2-job build beside it, ntuple.py took 174 s of the old 240
RUN_TIMEOUT = 540
GUEST_TIMEOUT = RUN_TIMEOUT + 60  # s for a test that runs a script: its run and the rest
CONTAINER_PREFIX_V6 = "fd78::/64"  # beside NicEnv's fd77::/64
KTAP_RESULT = re.compile(r"^(not )?ok (\d+) (\S+)(?:\s+#\s*(\S+)\s*(.*))?$")


def netdrv_env(nic) -> dict:
    """NetDrvEpEnv's variables (tools/testing/selftests/drivers/net/README.rst) for a
    NicEnv on veth: zc0 is NETIF, the remote end is netns `remote` (REMOTE_TYPE=netns)."""
    (local4, remote4, _), (local6, remote6, _) = nic.addr["ipv4"], nic.addr["ipv6"]
    return {
        "NETIF": nic.ifname,
        "LOCAL_V4": local4,
        "REMOTE_V4": remote4,
        "LOCAL_V6": local6,
        "REMOTE_V6": remote6,
        "REMOTE_TYPE": "netns",
        "REMOTE_ARGS": nic.netns,
        # NetDrvContEnv (hw/nk_*.py): the netkit container's addresses, a prefix of
        # their own that the remote end routes through NETIF
        "LOCAL_PREFIX_V6": CONTAINER_PREFIX_V6,
    }


def run(tree, nic, *args, script=f"hw/{TEST_NAME}.py", timeout=RUN_TIMEOUT) -> tuple[int, str]:
    """SCRIPT (relative to drivers/net) with ARGS in the staged tree (contract.UpstreamTree)
    against NIC, killed after TIMEOUT s: (exit status, its output, stdout and stderr
    together)."""
    # unbuffered: a run killed at its timeout keeps what it printed
    env = {
        **os.environ,
        **netdrv_env(nic),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "NO_COLOR": "1",
    }
    where, _, name = f"{tree.root}/tools/testing/selftests/drivers/net/{script}".rpartition("/")
    try:
        p = subprocess.run(
            ["python3", f"./{name}", *args],
            cwd=where,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
        return -1, f"{out}\n# killed after {timeout} s"
    return p.returncode, p.stdout


def parse_ktap(text: str, test_name: str = TEST_NAME) -> dict[str, tuple[bool, str, str]]:
    """KTAP result lines: case name (without the script's prefix) -> (ok, directive, reason)."""
    results = {}
    for line in text.splitlines():
        m = KTAP_RESULT.match(line.strip())
        if m:
            name = m.group(3).removeprefix(f"{test_name}.")
            results[name] = (m.group(1) is None, (m.group(4) or "").upper(), m.group(5) or "")
    return results


def case_output(text: str, case: str, test_name: str) -> str:
    """What the run printed for CASE: its result line and the lines since the result
    line before it."""
    lines, start = text.splitlines(), 0
    for i, line in enumerate(lines):
        m = KTAP_RESULT.match(line.strip())
        if not m:
            continue
        if m.group(3).removeprefix(f"{test_name}.") == case:
            return "\n".join(lines[start : i + 1])
        start = i + 1
    return ""


_RUNS: dict = {}  # script -> (exit status, output): one run per agent process


def script_run(tree, nic, script, prepare=None, timeout=RUN_TIMEOUT) -> tuple[int, str]:
    """SCRIPT's whole run (every case), once per agent process: the first test that asks
    runs it (its kernel log window holds the run), the others judge the same output. The
    output goes to /results/upstream-ktap/SCRIPT.txt. PREPARE(nic), if given, runs just
    before the run (its undo is deferred to the end of that first test)."""
    if script not in _RUNS:
        if prepare:
            prepare(nic)
        rc, out = run(tree, nic, script=script, timeout=timeout)
        os.makedirs(f"{RESULTS}/upstream-ktap", exist_ok=True)
        with open(f"{RESULTS}/upstream-ktap/{script.replace('/', '_')}.txt", "w") as f:
            f.write(f"# rc {rc}\n{out}")
        _RUNS[script] = rc, out
    return _RUNS[script]


def script_name(script) -> str:
    """The KTAP prefix of a script's cases: its file name without .py."""
    return script.rpartition("/")[2].removesuffix(".py")
