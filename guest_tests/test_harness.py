"""The harness checks itself: the guest is the kernel asked for, crashes are
charged to the test that caused them, and the run goes on after one."""

import pytest


def test_guest_runs_kernel_under_test(guest):
    assert guest.sh("uname -r", check=True).stdout.strip() == guest.release


@pytest.mark.crash_selftest
def test_deliberate_panic(guest):
    """Must be reported FAILED with the panic excerpt."""
    guest.sh("echo c > /proc/sysrq-trigger", timeout=60)


# Taint bits a healthy lab kernel may carry: zcnic is out of tree (O, 12) and
# unsigned (E, 13). Anything else (W for a WARN, D for an oops, ...) is not.
LAB_TAINTS = (1 << 12) | (1 << 13)


def test_guest_alive_after_previous_tests(guest):
    tainted = int(guest.sh("cat /proc/sys/kernel/tainted", check=True).stdout)
    assert tainted & ~LAB_TAINTS == 0, f"kernel tainted: {tainted:#x}"
