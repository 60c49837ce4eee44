"""The `guest` a test talks to: shell commands and guest-side scenarios."""

import json
import shlex

from host.shared import SharedRuns
from host.ssh import Result
from host.vm import VM

AGENT_MARKER = "@@zcrx-lab-result@@"


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

    def sh(self, cmd: str, check: bool = False, timeout: float | None = None,
           stdin: bytes | None = None) -> Result:  # fmt: skip
        result = self.vm.run(cmd, timeout=timeout or self.timeout, stdin=stdin)
        if check and result.rc != 0:
            raise GuestCommandError(str(result))
        return result

    def call(self, target: str, timeout: float | None = None, **kwargs):
        """Run guest_tests/<module>:<function>(**kwargs) in the guest; return its value."""
        cmd = (
            "cd /lab && PYTHONDONTWRITEBYTECODE=1 exec python3 -m guest_tests.agent "
            f"{shlex.quote(target)} {shlex.quote(json.dumps(kwargs))}"
        )
        result = self.sh(cmd, timeout=timeout)
        _, marker, payload = result.stdout.rpartition(AGENT_MARKER)
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
