"""liburing's own zcrx test, test/zcrx.c of the guest image's liburing version (Debian's
source package, host/kernels/liburing.py), built in the image against that liburing.

Every sub-test of zcrx.c registers its ifq with ZCRX_REG_NODEV (zcrx.c default_reg):
there is no netdev, interface or queue to give it, so it runs on `nodev` on every
kernel, and zcnic has no part in it.

zcrx.c runs its sub-tests in one process and cannot pick one, so each pytest case runs
`zcrx-one NAME` (guest_tests/liburing_zcrx_one.c: zcrx.c included unmodified, its main()
repeated for one sub-test with run_tests()'s feature gates), and test_whole_binary runs
the unmodified zcrx.t. Exit status 0 passes, T_EXIT_SKIP (77) skips with the reason the
test printed, anything else fails with its output. After each run the kernel must have
unpinned every area the process registered.
"""

import subprocess

import pytest

from guest_tests.zcrx.util import pinned_pages, wait_pins

pytestmark = [
    pytest.mark.nodev,
    pytest.mark.liburing,
    pytest.mark.in_guest,
    pytest.mark.xdist_group("liburing"),  # one staging per worker
]

T_EXIT_PASS, T_EXIT_FAIL, T_EXIT_SKIP = 0, 1, 77
TIMEOUT = 240  # s: test_recv moves twice its 528 KiB area over loopback TCP, under TCG

# liburing_zcrx_one.c's sub-tests: run_tests()'s calls (liburing 2.15), test_abnormal_exit
# in its four (iowq, pin_zcrx) variants
CASES = [
    "register_basic",
    "rq",
    "area",
    "area_ro",
    "invalid_rx_page",
    "ro_params",
    "invalid_recv",
    "exit_with_inflight",
    "zcrx_invalid_clone",
    "zcrx_clone",
    "rq_flush",
    "invalid_rqes",
    "invalid_rq_pointers",
    "recv",
    "abnormal_exit",
    "abnormal_exit_iowq",
    "abnormal_exit_pinned",
    "abnormal_exit_iowq_pinned",
]
VARIANTS = ("_iowq_pinned", "_iowq", "_pinned")


def run(*argv) -> tuple[int, str]:
    """(exit status, stdout and stderr together)."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
        pytest.fail(f"{argv[0]} {' '.join(argv[1:])} did not end in {TIMEOUT} s:\n{out}", pytrace=False)
    return p.returncode, p.stdout


def judge(what: str, rc: int, out: str, pins0: int) -> None:
    """liburing's verdict, then the kernel's: every area pinned by the process unpinned."""
    if rc == T_EXIT_SKIP:
        lines = [ln for ln in out.splitlines() if ln.strip()]
        pytest.skip(f"liburing {what}: {lines[-1] if lines else 'skipped, no reason printed'}")
    assert rc == T_EXIT_PASS, f"liburing {what} exited {rc}:\n{out}"
    pins, waited = wait_pins(pins0)
    assert pins == pins0, f"{pins - pins0} pages still pinned {waited} s after {what} exited"


@pytest.mark.parametrize("case", CASES)
def test_zcrx_subtest(nodev, liburing_tests, case):
    """One sub-test of liburing's test/zcrx.c passes (or skips for the reason it prints)."""
    pins0 = pinned_pages()
    rc, out = run(f"{liburing_tests.root}/zcrx-one", case)
    judge(f"test/zcrx.c {case}", rc, out, pins0)


def test_whole_binary(nodev, liburing_tests):
    """liburing's zcrx.t as its own `make runtests` runs it: all sub-tests in one process."""
    pins0 = pinned_pages()
    rc, out = run(f"{liburing_tests.root}/zcrx.t")
    judge("test/zcrx.t", rc, out, pins0)


def test_case_list(nodev, liburing_tests):
    """The sub-tests run here are exactly those the source's run_tests() calls (a newer
    liburing with other sub-tests shows up here), and zcrx-one knows them all."""
    with open(f"{liburing_tests.root}/cases.txt") as f:
        called = f.read().split()
    base = list(dict.fromkeys(next((c.removesuffix(v) for v in VARIANTS if c.endswith(v)), c) for c in CASES))
    with open(f"{liburing_tests.root}/VERSION") as f:
        version = f.read().strip()
    assert called == base, f"{version}'s run_tests() calls {called}; update liburing_zcrx_one.c and CASES"
    rc, out = run(f"{liburing_tests.root}/zcrx-one", "--list")
    assert rc == 0 and out.split() == CASES, out
