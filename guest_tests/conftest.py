"""Fixtures of the guest tests: the environments their bodies get in the guest, and the
host's TCP sender on the test NIC's tap.

    netns "remote": veth1 10.77.0.1/24 fd77::1/64  (sender)
         |
    veth0 ── zc0 (zcnic, 4 queues, tcp-data-split on, hds-thresh 0) 10.77.0.2/24 fd77::2/64

`nic` stands for guest_tests/lib/nic.py's NicEnv, which keeps the topology above for the
agent's lifetime (rebuilding it when a test removed part of it) and undoes each test's
changes with `defer`; `nodev` for guest_tests/lib/env.py's NodevEnv.
"""

import random

import pytest

from guest_tests.contract import RESULTS, HostFlow, LiburingTests, UpstreamTree
from host.errors import LabError
from host.vm.guest import GuestEnv
from host.vm.testlink import TAP_MTU

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


@pytest.fixture
def tapnic(lab, guest, zcnic_module, ynl_path) -> GuestEnv:
    """For in_guest tests: NicEnv with zc0 on the test NIC (lib/topology.py Tap); the host
    sends from the tap (host_flow)."""
    if not lab.vm.test_link:
        pytest.skip(f"no test NIC: {lab.vm.no_test_link}")
    return GuestEnv("tapnic", {"module": zcnic_module, "ynl": ynl_path})


@pytest.fixture
def host_flow(request, lab, guest) -> HostFlow:
    """One TCP flow from the host into the guest over the tap: `request.param` is its size,
    or a dict of HostFlow fields (size, mss, shape, family). Sent from a background thread
    (host/traffic.py FlowSender) that SYNs until the guest test listens; joined after the
    test, whose verdict includes the sender's failure (and, for the loss shape, a flow
    that needed no retransmission: nothing was lost)."""
    from host.traffic import FlowSender

    if not lab.vm.test_link:
        pytest.skip(f"no test NIC: {lab.vm.no_test_link}")
    fields = request.param if isinstance(request.param, dict) else {"size": request.param}
    flow = HostFlow(port=random.randint(20000, 50000), seed=random.getrandbits(32), **fields)
    if flow.mtu > TAP_MTU:
        pytest.fail(f"a {flow.mtu}-byte MTU flow: the host's tap takes frames up to {TAP_MTU}", pytrace=False)
    # the guest test builds its environment before it listens: up to a guest timeout
    sender = FlowSender(lab.vm.test_link, flow, connect_timeout=lab.timeout())
    yield flow
    sender.stop.set()  # the guest test is over: stop SYNing if it never listened
    sender.join(lab.timeout())
    if sender.is_alive():
        pytest.fail(f"the host's sender to port {flow.port} did not finish", pytrace=False)
    if sender.error is not None:
        pytest.fail(
            f"the host's sender to port {flow.port} ({sender.segments} segments, "
            f"{sender.retransmits} retransmits): {sender.error}",
            pytrace=False,
        )
    if flow.shape == "loss" and sender.retransmits == 0:
        pytest.fail(f"the loss-shaped flow to port {flow.port} was never retransmitted", pytrace=False)


@pytest.fixture(scope="session")
def upstream_tree(lab) -> UpstreamTree:
    """The kernel under test's selftests (iou-zcrx.py, its built helper, the libraries it
    imports) staged in the results directory (host/kernels/upstream.py stage)."""
    from host.kernels import upstream

    lab.resolve()
    if lab.kernel.tree is None and lab.kernel.spec != "default":
        pytest.skip("upstream's selftest comes from the kernel's source: --kernel=default or a tree")
    try:
        upstream.stage(lab.kernel, lab.image, lab.results / "upstream")
    except LabError as exc:
        pytest.fail(str(exc), pytrace=False)
    return UpstreamTree(f"{RESULTS}/upstream")


@pytest.fixture(scope="session")
def liburing_tests(lab) -> LiburingTests:
    """liburing's test/zcrx.c from the source of the guest image's liburing, built in the
    image against it, staged in the results directory (host/kernels/liburing.py stage).
    The same for every kernel: it is the image's userspace."""
    from host.kernels import liburing

    lab.resolve()
    try:
        liburing.stage(lab.image, lab.results / "liburing")
    except LabError as exc:
        pytest.fail(str(exc), pytrace=False)
    return LiburingTests(f"{RESULTS}/liburing")
