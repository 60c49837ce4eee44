"""The `guest` a test talks to: shell commands, guest tests and scenarios."""

import json
import shlex
from dataclasses import asdict, dataclass, field

from guest_tests.contract import AGENT, MARKER, TestAnswer, TestRequest
from host.report.shared import SharedRuns
from host.vm.qemu import VM
from host.vm.ssh import ChannelClosed, Result


@dataclass
class GuestEnv:
    """A host fixture's value that stands for a guest environment (guest_tests/lib/env.py)."""

    name: str
    settings: dict = field(default_factory=dict)


class GuestCommandError(AssertionError):
    """A guest command that had to succeed did not."""


class ScenarioError(AssertionError):
    """A guest-side scenario raised; carries the guest's traceback."""


class Guest:
    def __init__(self, vm: VM, timeout: float, shared: SharedRuns | None = None, test: str = ""):
        self.vm = vm
        self.timeout = timeout
        self.shared = shared if shared is not None else SharedRuns()
        self.test = test  # the pytest node id this guest serves

    @property
    def release(self) -> str:
        return self.vm.kernel.release

    def sh(
        self, cmd: str, check: bool = False, timeout: float | None = None, stdin: bytes | None = None
    ) -> Result:
        result = self.vm.run(cmd, timeout=timeout or self.timeout, stdin=stdin)
        if check and result.rc != 0:
            raise GuestCommandError(str(result))
        return result

    def run_test(self, request: TestRequest, timeout: float | None = None) -> tuple[TestAnswer, str]:
        """Run one guest test in the boot's agent (started on first use); (answer, its output)."""
        agent = getattr(self.vm, "agent", None)
        if agent is None or agent.boot != self.vm.boots or not agent.channel.alive():
            agent = _Agent(self.vm.ssh.open(f"{AGENT} --serve"), self.vm.boots)
            self.vm.agent = agent
        try:
            line = agent.channel.request(json.dumps(asdict(request)), MARKER, timeout or self.timeout)
        except ChannelClosed as exc:
            self.vm.agent = None
            return TestAnswer("error", f"the guest agent died during this test: {exc}"), ""
        return TestAnswer(**json.loads(line)), agent.channel.take_stderr()

    def call(self, target: str, timeout: float | None = None, **kwargs):
        """Run guest_tests/<module>:<function>(**kwargs) in the guest; return its value."""
        cmd = f"{AGENT} {shlex.quote(target)} {shlex.quote(json.dumps(kwargs))}"
        result = self.sh(cmd, timeout=timeout)
        _, marker, payload = result.stdout.rpartition(MARKER)
        if not marker:
            raise ScenarioError(f"scenario {target} gave no result\n{result}")
        answer = json.loads(payload)
        if not answer["ok"]:
            raise ScenarioError(f"scenario {target} raised {answer['error']}\n{answer['traceback']}")
        return answer["value"]

    def cached(self, target: str, timeout: float | None = None, **kwargs):
        """call(), once per session for each (target, kwargs): every test that asks for it
        judges the same result. A kernel splat while the first test ran it fails each of
        them (the plugin asks `shared.inherited()`)."""
        key = (target, json.dumps(kwargs, sort_keys=True))
        return self.shared.get(key, self.test, lambda: self.call(target, timeout=timeout, **kwargs))


@dataclass
class _Agent:
    channel: object  # host.vm.ssh.Channel
    boot: int
