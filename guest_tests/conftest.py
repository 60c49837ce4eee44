"""Fixtures of the guest tests: the environments their bodies get in the guest.

    netns "remote": veth1 10.77.0.1/24 fd77::1/64  (sender)
         |
    veth0 ── zc0 (zcnic, 4 queues, tcp-data-split on, hds-thresh 0) 10.77.0.2/24 fd77::2/64

`nic` stands for guest_tests/lib/nic.py's NicEnv, which keeps the topology above for the
agent's lifetime (rebuilding it when a test removed part of it) and undoes each test's
changes with `defer`; `nodev` for guest_tests/lib/env.py's NodevEnv.
"""

import pytest

from host.guest import GuestEnv

TEARDOWN = "ip link del zc0 2>/dev/null; ip link del veth0 2>/dev/null; ip netns del remote 2>/dev/null; true"


@pytest.fixture
def nic(guest, zcnic_module, ynl_path, _nic_cleanup) -> GuestEnv:
    """The guest's NicEnv (guest_tests/lib/nic.py), for in_guest tests."""
    return GuestEnv("nic", {"module": zcnic_module, "ynl": ynl_path})


@pytest.fixture(scope="module")
def _nic_cleanup(lab):
    """Leave the guest as found after each module: zc0, the veth pair and the netns go
    (zcnic stays loaded: other tests may stack their own zcnic)."""
    yield
    if lab.vm is not None and lab.vm.alive():
        lab.vm.run(TEARDOWN, timeout=60)


@pytest.fixture
def nodev(guest) -> GuestEnv:
    """The guest's NodevEnv (guest_tests/lib/env.py), for in_guest tests."""
    return GuestEnv("nodev")
