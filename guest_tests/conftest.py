"""Fixtures of the zcnic tests: the NIC environment, made idempotently in the guest.

    netns "remote": veth1 10.77.0.1/24 fd77::1/64  (sender)
         |
    veth0 ── zc0 (zcnic, 4 queues, tcp-data-split on, hds-thresh 0) 10.77.0.2/24 fd77::2/64

in_guest tests: `nic` stands for guest_tests/lib/nic.py's NicEnv, which keeps the
topology for the agent's lifetime and undoes each test's changes with `defer`.

Older tests: `nic` (function scope) checks the guest before every test and re-creates whatever is
missing (a VM restarted after a crash, a test that deleted zc0 or unloaded zcnic), waits
until no queue is still bound by a ring that is being torn down, and puts zc0 back into
its default configuration. Guest side: guest_tests/scenarios/zcnic.py.
"""

import pytest

from host.vm.guest import GuestEnv

SCN = "scenarios.zcnic:"
TEARDOWN = "ip link del zc0 2>/dev/null; ip link del veth0 2>/dev/null; ip netns del remote 2>/dev/null; true"


class NicEnv:
    """zc0 on veth0 with the sender's end in netns `remote` (like NetDrvEpEnv)."""

    ifname, lower, netns = "zc0", "veth0", "remote"
    addr = {"ipv4": "10.77.0.2", "ipv6": "fd77::2"}
    remote_addr = {"ipv4": "10.77.0.1", "ipv6": "fd77::1"}
    queues = 4

    def __init__(self, guest, info: dict):
        self.guest, self.info = guest, info
        self.ifindex = info["ifindex"]

    def call(self, func: str, **kwargs):
        """Run guest_tests/scenarios/zcnic.py:func(**kwargs) in the guest."""
        return self.guest.call(SCN + func, **kwargs)


@pytest.fixture
def nic(request, guest, zcnic_module, _nic_cleanup) -> NicEnv | GuestEnv:
    """An in_guest test gets the guest's NicEnv (guest_tests/lib/nic.py); an older test
    gets this module's NicEnv, whose scenarios run one guest call each."""
    if request.node.get_closest_marker("in_guest"):
        ynl = request.getfixturevalue("ynl_path")
        return GuestEnv("nic", {"module": zcnic_module, "ynl": ynl})
    info = guest.call(SCN + "ensure_env", module=zcnic_module)
    if info.get("skip"):
        pytest.skip(f"kernel {guest.release}: {info['skip']}")
    if info["bound_left"]:
        pytest.fail(
            f"queues {info['bound_left']} of zc0 still bound by an earlier test's ring", pytrace=False
        )
    return NicEnv(guest, info)


@pytest.fixture(scope="module")
def _nic_cleanup(lab):
    """Leave the guest as found after each module: zc0, the veth pair and the netns go
    (zcnic stays loaded: other tests may stack their own zcnic)."""
    yield
    if lab.vm is not None and lab.vm.alive():
        lab.vm.run(TEARDOWN, timeout=60)


class Cache:
    """One guest call per (function, kwargs) per session; several tests judge parts of it
    (Guest.cached: a splat while the first test ran it fails every test that used it)."""

    def __call__(self, nic: NicEnv, func: str, timeout: float | None = None, **kwargs):
        return nic.guest.cached(SCN + func, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def nic_cached() -> Cache:
    return Cache()


@pytest.fixture
def nodev(guest) -> GuestEnv:
    """The guest's NodevEnv (guest_tests/lib/env.py), for in_guest tests."""
    return GuestEnv("nodev")
