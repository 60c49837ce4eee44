"""The kernel's own zcrx selftest (drivers/net/hw/iou-zcrx.py), unmodified, on NicEnv's
topology: the NetDrvEpEnv variables it reads, one run of it, its KTAP verdicts."""

import os
import re
import subprocess

TEST_NAME = "iou-zcrx"  # the script, and the prefix of its KTAP case names
RUN_TIMEOUT = 240  # s for one upstream case under TCG (its own commands time out at 20 s)
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
    }


def run(tree, nic, *args) -> tuple[int, str]:
    """iou-zcrx.py ARGS in the staged tree (contract.UpstreamTree) against NIC: (exit
    status, its output, stdout and stderr together)."""
    env = {**os.environ, **netdrv_env(nic), "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1"}
    try:
        p = subprocess.run(
            ["python3", f"./{TEST_NAME}.py", *args],
            cwd=tree.hw_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
        return -1, f"{out}\n# killed after {RUN_TIMEOUT} s"
    return p.returncode, p.stdout


def parse_ktap(text: str) -> dict[str, tuple[bool, str, str]]:
    """KTAP result lines: case name -> (ok, directive, reason)."""
    results = {}
    for line in text.splitlines():
        m = KTAP_RESULT.match(line.strip())
        if m:
            name = m.group(3).removeprefix(f"{TEST_NAME}.")
            results[name] = (m.group(1) is None, (m.group(4) or "").upper(), m.group(5) or "")
    return results
