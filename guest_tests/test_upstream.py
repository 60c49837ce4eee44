"""Upstream's own zcrx selftest, unmodified, against zcnic (issue 3).

`tools/testing/selftests/drivers/net/hw/iou-zcrx.py` and its C helper come from the
kernel under test (host/kernels/upstream.py: Debian's linux-source package for `default`, the
tree itself for a kernel tree; the host's `upstream_tree` fixture stages them) and run
here, in the guest (guest_tests/agent.py), on NicEnv's topology: zc0 on veth0, the
remote end in netns `remote`, given to NetDrvEpEnv by lib/upstream.py netdrv_env.

Each pytest case runs one upstream case (`iou-zcrx.py -t NAME`), so a kernel splat or a
hang is charged to the upstream case that caused it. Its KTAP result decides the
verdict: `ok` passes, `ok ... # SKIP why` skips with upstream's reason, `not ok` fails
with the KTAP output. Each case's output is kept in RESULTS/upstream-ktap/CASE.txt.
"""

import os

import pytest

from guest_tests.contract import RESULTS
from guest_tests.lib.upstream import GUEST_TIMEOUT, TEST_NAME, parse_ktap, run

pytestmark = [pytest.mark.upstream, pytest.mark.in_guest]

# Upstream's cases in the 7.3 tree (`iou-zcrx.py -l`); test_case_list notices when the
# kernel under test has others.
CASES = [
    "test_zcrx.single",
    "test_zcrx.rss",
    "test_zcrx_oneshot.single",
    "test_zcrx_oneshot.rss",
    "test_zcrx_large_chunks",
]


@pytest.mark.guest_timeout(GUEST_TIMEOUT)
@pytest.mark.parametrize("case", CASES)
def test_iou_zcrx(nic, upstream_tree, case):
    """Upstream's case passes on zcnic (KTAP `ok`, exit status 0), or skips for upstream's
    reason."""
    nic.keep_rings()  # upstream restores header split as "unknown": off on zcnic
    rc, out = run(upstream_tree, nic, "-t", case)
    os.makedirs(f"{RESULTS}/upstream-ktap", exist_ok=True)
    with open(f"{RESULTS}/upstream-ktap/{case}.txt", "w") as f:
        f.write(f"# rc {rc}\n{out}")
    ktap = f"upstream {TEST_NAME}.py -t {case} (rc {rc}):\n{out}"
    verdict = parse_ktap(out).get(case)
    if verdict is None:
        pytest.fail(f"no KTAP result for {case}\n{ktap}", pytrace=False)
    ok, directive, reason = verdict
    if not ok:
        pytest.fail(f"upstream case failed\n{ktap}", pytrace=False)
    if directive == "SKIP":
        pytest.skip(f"upstream: {reason}")
    if directive == "XFAIL":
        pytest.xfail(f"upstream: {reason}")
    assert rc == 0, ktap


@pytest.mark.guest_timeout(GUEST_TIMEOUT)
def test_case_list(nic, upstream_tree):
    """The kernel under test has exactly the upstream cases this module runs."""
    rc, out = run(upstream_tree, nic, "-l")
    assert rc == 0, out
    listed = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("test_")]
    assert listed == CASES, f"upstream's cases changed; update CASES:\n{out}"
