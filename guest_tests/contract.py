"""The host/guest boundary, written down once; both sides import it.

What the guest sees (qemu/machine.py shares these; qemu/init mounts them):
the lab checkout read-only at LAB, the run's results directory at RESULTS, a
tree's `make headers` output at KERNEL_UAPI. The control NIC (SSH) and the
test NIC (a multi-queue virtio-net on a tap) have fixed MAC addresses so the
guest can tell them apart.

What crosses SSH: a TestRequest per guest test (one JSON line to the agent)
and a TestAnswer back, on the line after MARKER.
"""

from dataclasses import dataclass, field

LAB = "/lab"
RESULTS = "/results"
KERNEL_UAPI = "/kernel-uapi"
CONTROL_MAC = "52:54:00:12:34:01"
TEST_MAC = "52:54:00:12:35:01"
MARKER = "@@zcrx-lab-result@@"
AGENT = f"cd {LAB} && PYTHONDONTWRITEBYTECODE=1 exec python3 -m guest_tests.agent"


@dataclass
class TestRequest:
    __test__ = False  # a message, not a pytest test class
    module: str  # guest_tests.test_nodev_setup
    function: str  # test_register_errno
    args: dict = field(default_factory=dict)  # the parameters pytest chose on the host
    envs: dict = field(default_factory=dict)  # environment name -> its settings (lib/env.py)


@dataclass
class TestAnswer:
    __test__ = False
    outcome: str  # passed, failed, error, skipped
    message: str = ""
    traceback: str = ""
