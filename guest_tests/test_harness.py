"""The harness checks itself: the guest is the kernel asked for, crashes are
charged to the test that caused them, and the run goes on after one; a WARNING
a test declares as provoked on purpose passes it, and only that one."""

import pytest


def test_guest_runs_kernel_under_test(guest):
    assert guest.sh("uname -r", check=True).stdout.strip() == guest.release


@pytest.mark.crash_selftest
def test_deliberate_panic(guest):
    """Must be reported FAILED with the panic excerpt."""
    guest.sh("echo c > /proc/sysrq-trigger", timeout=60)


# Kernel log records the splat scanner takes for WARNs (written to /dev/kmsg: no taint).
FAKE_WARN = "WARNING: CPU: 0 PID: 1 at zcrx-lab/harness-selftest another warning"
EXPECTED_WARN = "WARNING: CPU: 0 PID: 1 at zcrx-lab/harness-selftest provoked on purpose"


@pytest.mark.expected_warning("harness-selftest provoked on purpose")
def test_expected_warning_is_not_charged(guest):
    """A WARNING the test declares with expected_warning: it passes."""
    assert guest.sh(f"echo '{EXPECTED_WARN}' > /dev/kmsg").rc == 0


@pytest.mark.crash_selftest
@pytest.mark.expected_warning("harness-selftest provoked on purpose")
def test_expected_warning_missing(guest):
    """Must be reported FAILED: the WARNING it declares never comes."""
    assert guest.sh("true").rc == 0


@pytest.mark.crash_selftest
@pytest.mark.expected_warning("harness-selftest provoked on purpose")
def test_expected_warning_and_another(guest):
    """Must be reported FAILED with the other WARNING only."""
    assert guest.sh(f"echo '{EXPECTED_WARN}' > /dev/kmsg; echo '{FAKE_WARN}' > /dev/kmsg").rc == 0


# Taint bits a healthy lab kernel may carry: zcnic is out of tree (O, 12) and
# unsigned (E, 13). Anything else (W for a WARN, D for an oops, ...) is not.
LAB_TAINTS = (1 << 12) | (1 << 13)


def test_guest_alive_after_previous_tests(guest):
    tainted = int(guest.sh("cat /proc/sys/kernel/tainted", check=True).stdout)
    assert tainted & ~LAB_TAINTS == 0, f"kernel tainted: {tainted:#x}"
