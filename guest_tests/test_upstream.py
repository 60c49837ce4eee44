"""Upstream's own zcrx selftest, unmodified, against zcnic (issue 3).

`tools/testing/selftests/drivers/net/hw/iou-zcrx.py` and its C helper come from
the kernel under test (host/kernels/upstream.py: Debian's linux-source package for
`default`, the tree itself for a kernel tree) and run in the guest with
NetDrvEpEnv's netns remote: zc0 stacked on one end of a veth pair, the peer end
in a network namespace (guest_tests/upstream/topology.sh).

Each pytest case runs one upstream case (`iou-zcrx.py -t NAME`) on a freshly
built topology, so a kernel splat or a hang is charged to the upstream case that
caused it. Its KTAP result decides the verdict: `ok` passes, `ok ... # SKIP why`
skips with upstream's reason, `not ok` fails with the KTAP output.
"""

import re
import shlex

import pytest

from host.errors import LabError

pytestmark = pytest.mark.upstream

TEST_NAME = "iou-zcrx"  # KTAP prefix: the script's name
# Upstream's cases in the 7.3 tree (`iou-zcrx.py -l`); test_case_list notices
# when the kernel under test has others.
CASES = [
    "test_zcrx.single",
    "test_zcrx.rss",
    "test_zcrx_oneshot.single",
    "test_zcrx_oneshot.rss",
    "test_zcrx_large_chunks",
]
GUEST_ROOT = "/results/upstream"
HW_DIR = f"{GUEST_ROOT}/tools/testing/selftests/drivers/net/hw"
TOPOLOGY = "/lab/guest_tests/upstream/topology.sh"
RUN_TIMEOUT = 300  # one upstream case under TCG; its own commands time out at 20 s

KTAP_RESULT = re.compile(r"^(not )?ok (\d+) (\S+)(?:\s+#\s*(\S+)\s*(.*))?$")


@pytest.fixture(scope="session")
def upstream_selftest(lab) -> str:
    """Guest path of the staged selftest tree (kernel tree layout)."""
    from host.kernels import upstream

    lab.resolve()
    if lab.kernel.tree is None and lab.kernel.spec != "default":
        pytest.skip("upstream's selftest comes from the kernel's source: --kernel=default or a tree")
    try:
        upstream.stage(lab.kernel, lab.image, lab.results / "upstream")
    except LabError as exc:
        pytest.fail(str(exc), pytrace=False)
    return GUEST_ROOT


@pytest.fixture
def netdrv_env(guest, zcnic_module, upstream_selftest) -> str:
    """NetDrvEpEnv's environment variables for a fresh zc0 + netns peer."""
    up = guest.sh(f"sh {TOPOLOGY} up {shlex.quote(zcnic_module)}", timeout=120)
    if up.rc != 0:
        pytest.fail(f"cannot build the zc0 + netns topology:\n{up}", pytrace=False)
    yield up.stdout.strip().splitlines()[-1]
    if guest.vm.alive():  # not after a crash: the next test boots a fresh guest
        guest.sh(f"sh {TOPOLOGY} down", timeout=60)


def run_upstream(guest, env: str, args: str):
    cmd = (
        f"cd {HW_DIR} && env PYTHONDONTWRITEBYTECODE=1 NO_COLOR=1 {env} python3 ./{TEST_NAME}.py {args} 2>&1"
    )
    return guest.sh(cmd, timeout=RUN_TIMEOUT)


def parse_ktap(text: str) -> dict[str, tuple[bool, str, str]]:
    """KTAP result lines: case name -> (ok, directive, reason)."""
    results = {}
    for line in text.splitlines():
        m = KTAP_RESULT.match(line.strip())
        if m:
            name = m.group(3).removeprefix(f"{TEST_NAME}.")
            results[name] = (m.group(1) is None, (m.group(4) or "").upper(), m.group(5) or "")
    return results


@pytest.mark.parametrize("case", CASES)
def test_iou_zcrx(guest, netdrv_env, lab, case):
    result = run_upstream(guest, netdrv_env, f"-t {shlex.quote(case)}")
    log = lab.results / "upstream-ktap"
    log.mkdir(exist_ok=True)
    (log / f"{case}.txt").write_text(f"# rc {result.rc}\n{result.stdout}")
    ktap = f"upstream {TEST_NAME}.py -t {case} (rc {result.rc}):\n{result.stdout}"
    verdict = parse_ktap(result.stdout).get(case)
    if verdict is None:
        pytest.fail(f"no KTAP result for {case}\n{ktap}", pytrace=False)
    ok, directive, reason = verdict
    if not ok:
        pytest.fail(f"upstream case failed\n{ktap}", pytrace=False)
    if directive == "SKIP":
        pytest.skip(f"upstream: {reason}")
    if directive == "XFAIL":
        pytest.xfail(f"upstream: {reason}")
    assert result.rc == 0, ktap


def test_case_list(guest, netdrv_env):
    """The kernel under test has exactly the upstream cases this module runs."""
    result = run_upstream(guest, netdrv_env, "-l")
    assert result.rc == 0, result.stdout
    listed = [ln.strip() for ln in result.stdout.splitlines() if ln.strip().startswith("test_")]
    assert listed == CASES, f"upstream's cases changed; update CASES:\n{result.stdout}"


def test_parse_ktap():
    """The KTAP reader (no guest needed)."""
    text = (
        "# Interface: zc0, driver: zcnic\nTAP version 13\n1..3\n"
        "ok 1 iou-zcrx.test_zcrx.single\n"
        "not ok 2 iou-zcrx.test_zcrx.rss\n"
        "ok 3 iou-zcrx.test_zcrx_large_chunks # SKIP Large chunks are not supported -95\n"
        "# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0\n"
    )
    assert parse_ktap(text) == {
        "test_zcrx.single": (True, "", ""),
        "test_zcrx.rss": (False, "", ""),
        "test_zcrx_large_chunks": (True, "SKIP", "Large chunks are not supported -95"),
    }
