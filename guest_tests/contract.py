"""The host/guest boundary, written down once; both sides import it.

What the guest sees (qemu/machine.py shares these; qemu/init mounts them):
the lab checkout read-only at LAB, the run's results directory at RESULTS, a
tree's `make headers` output at KERNEL_UAPI. The control NIC (SSH) and the
test NIC (a multi-queue virtio-net on a tap) have fixed MAC addresses so the
guest can tell them apart; on the test NIC the guest is TEST_IP (TEST_IP6) and the
host (host/traffic.py, scapy on the tap) is TEST_PEER_IP (TEST_PEER_IP6).

What crosses SSH: a TestRequest per guest function (one JSON line to the
agent, guest_tests/agent.py --serve) and a TestAnswer back, on the line after
MARKER. A request's `values` are the dataclasses below (VALUES), which host
fixtures hand to guest tests; they cross typed (encode/decode).
"""

import random
from dataclasses import asdict, dataclass, field

LAB = "/lab"
RESULTS = "/results"
KERNEL_UAPI = "/kernel-uapi"
CONTROL_MAC = "52:54:00:12:34:01"
TEST_MAC = "52:54:00:12:35:01"
TEST_IP, TEST_PEER_IP, TEST_PREFIX = "192.0.2.2", "192.0.2.1", 24
TEST_IP6, TEST_PEER_IP6, TEST_PREFIX6 = "2001:db8:35::2", "2001:db8:35::1", 64
MARKER = "@@zcrx-lab-result@@"
AGENT = f"cd {LAB} && PYTHONDONTWRITEBYTECODE=1 exec python3 -m guest_tests.agent --serve"


@dataclass
class TestRequest:
    __test__ = False  # a message, not a pytest test class
    module: str  # guest_tests.test_nodev_setup
    function: str  # test_register_errno
    args: dict = field(default_factory=dict)  # the parameters pytest chose on the host (plain JSON)
    envs: dict = field(default_factory=dict)  # environment name -> its settings (lib/env.py)
    values: dict = field(default_factory=dict)  # argument name -> encode(one of VALUES)


@dataclass
class TestAnswer:
    __test__ = False
    outcome: str  # passed, failed, error, skipped, xfailed
    message: str = ""
    traceback: str = ""
    value: object = None  # what the function returned (JSON), when it passed


# how the host's sender shapes a flow (host/traffic.py TcpFlow.send)
SHAPES = {
    "psh": "PSH on every segment: each one is pushed on its own",
    "no_psh": "PSH on the last segment only: the receiver's GRO may merge the others",
    "reorder": "each pair of new segments sent second first: the out-of-order queue",
    "loss": "every 8th segment's first transmission dropped: the hole is retransmitted",
}


@dataclass
class HostFlow:
    """One TCP connection the host opens to TEST_IP:port over the tap and sends `size`
    bytes of payload() on, in segments of at most `mss` bytes shaped as `shape` says
    (SHAPES), then FIN; over IPv4 or IPv6 (`family`: TEST_IP6, where mss must leave room
    for the larger header in a 1500-byte MTU). An mss that needs more (jumbo frames, up to
    an `mtu` of 9000, what the host's tap takes: host/vm/testlink.py): the guest test
    raises its test NIC's and zc0's MTU (NicEnv.jumbo)."""

    port: int
    size: int
    seed: int
    mss: int = 1448
    shape: str = "psh"
    family: str = "ipv4"

    @property
    def mtu(self) -> int:
        """The MTU the flow's segments need, with the 12 bytes of TCP timestamps Linux
        leaves room for: 1500, or mss + 52 (IPv4; mss + 72 over IPv6) above it."""
        return max(1500, self.mss + (40 if self.family == "ipv6" else 20) + 20 + 12)

    def payload(self) -> bytes:
        """The bytes sent: deterministic, so the guest knows what must arrive."""
        return random.Random(self.seed).randbytes(self.size)


@dataclass
class UpstreamTree:
    """The kernel's selftests staged for the guest (host/kernels/upstream.py stage), in the
    kernel tree's layout under `root`."""

    root: str

    @property
    def hw_dir(self) -> str:
        return f"{self.root}/tools/testing/selftests/drivers/net/hw"


@dataclass
class LiburingTests:
    """liburing's zcrx test built for the guest image (host/kernels/liburing.py stage):
    `root` holds zcrx.t (unmodified), zcrx-one (one sub-test by name), cases.txt (the
    sub-tests the source's run_tests() calls) and VERSION."""

    root: str


VALUES = {cls.__name__: cls for cls in (HostFlow, UpstreamTree, LiburingTests)}


def encode(value) -> dict:
    """A VALUES instance as JSON: {"type": class name, "fields": its fields}."""
    if type(value).__name__ not in VALUES or type(value) is not VALUES[type(value).__name__]:
        raise TypeError(f"{type(value).__name__} is not a contract value (guest_tests/contract.py VALUES)")
    return {"type": type(value).__name__, "fields": asdict(value)}


def decode(data: dict):
    return VALUES[data["type"]](**data["fields"])


def is_value(value) -> bool:
    return type(value) in VALUES.values()
