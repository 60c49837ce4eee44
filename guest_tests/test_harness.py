"""The harness checks itself: the guest is the kernel asked for, crashes are
charged to the test that caused them, and the run goes on after one; a WARNING
a test declares as provoked on purpose passes it, and only that one."""

import time

import pytest


def test_guest_runs_kernel_under_test(guest):
    assert guest.sh("uname -r", check=True).stdout.strip() == guest.release


def test_guest_clock_runs_at_the_hosts_rate(guest):
    """The guest's uptime advances as the host's clock does. A guest kernel that
    calibrated its TSC wrong (the lab tells a TCG guest the host's rate: host/vm/accel.py
    host_tsc_khz) runs every timeout, RCU stall and hung task timer that much too fast."""

    def uptime() -> tuple[float, float, float]:
        """(host time before, guest uptime, host time after) of one reading."""
        before = time.monotonic()
        up = float(guest.sh("cat /proc/uptime", check=True).stdout.split()[0])
        return before, up, time.monotonic()

    before0, up0, after0 = uptime()
    time.sleep(2)
    before1, up1, after1 = uptime()
    # each reading was taken between its host times; /proc/uptime counts in 10 ms
    shortest, longest = before1 - after0 - 0.02, after1 - before0 + 0.02
    assert shortest <= up1 - up0 <= longest, (
        f"the guest's clock advanced {up1 - up0:.2f} s while the host's advanced "
        f"{shortest:.2f}-{longest:.2f} s: {guest.sh('dmesg | grep -i tsc').stdout}"
    )


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
