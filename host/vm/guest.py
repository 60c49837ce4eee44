"""The `guest` a test talks to: shell commands, and guest functions run by the boot's
agent (guest_tests/agent.py --serve): in_guest tests (run_test) and functions whose
value host code wants (call)."""

import json
from dataclasses import asdict, dataclass, field

from guest_tests.contract import AGENT, MARKER, TestAnswer, TestRequest
from host.vm.qemu import VM
from host.vm.ssh import ChannelClosed, Result


@dataclass
class GuestEnv:
    """A host fixture's value that stands for a guest environment (guest_tests/lib/env.py)."""

    name: str
    settings: dict = field(default_factory=dict)


class GuestCommandError(AssertionError):
    """A guest command that had to succeed did not."""


class GuestCallError(AssertionError):
    """A guest function called for its value did not return one; carries the guest's
    traceback and output."""


class Guest:
    def __init__(self, vm: VM, timeout: float):
        self.vm = vm
        self.timeout = timeout

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
            agent = _Agent(self.vm.ssh.open(AGENT), self.vm.boots)
            self.vm.agent = agent
        try:
            line = agent.channel.request(json.dumps(asdict(request)), MARKER, timeout or self.timeout)
        except ChannelClosed as exc:
            self.vm.agent = None
            return TestAnswer("error", f"the guest agent died during this test: {exc}"), ""
        return TestAnswer(**json.loads(line)), agent.channel.take_stderr()

    def call(self, target: str, timeout: float | None = None, envs: dict | None = None, **kwargs):
        """Run the guest function TARGET ("guest_tests.bench:one_round") with KWARGS (and the
        guest environments ENVS: name -> settings) in the boot's agent; return its value.
        Raises GuestCallError with the guest's traceback when it raises, pytest's skip when
        it skips."""
        module, _, function = target.partition(":")
        answer, output = self.run_test(TestRequest(module, function, kwargs, envs or {}), timeout)
        if answer.outcome == "passed":
            return answer.value
        if answer.outcome == "skipped":
            import pytest

            pytest.skip(answer.message)
        tail = "\n".join(output.splitlines()[-30:])
        raise GuestCallError(
            f"guest {target} {answer.outcome}: {answer.message}\n{answer.traceback}"
            + (f"\nits output:\n{tail}" if tail.strip() else "")
        )


@dataclass
class _Agent:
    channel: object  # host.vm.ssh.Channel
    boot: int
