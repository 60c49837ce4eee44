"""Guest runs that several tests share, and the kernel splats that go with them.

A shared run (one guest scenario call whose result several tests judge) happens in
the first test that asks for it; the plugin charges the kernel log of that test's
run to that test only. Every later test that uses the same result judges data the
kernel produced while it splatted, so it fails too: the plugin asks `inherited()`.
"""

from collections.abc import Callable, Hashable


class SharedRuns:
    def __init__(self) -> None:
        self._results: dict[Hashable, object] = {}
        self._runner: dict[Hashable, str] = {}  # key -> test that ran it
        self._splats: dict[Hashable, list[str]] = {}  # key -> splats charged to its runner
        self._used: dict[str, list[Hashable]] = {}  # test -> keys it used, in order

    def get(self, key: Hashable, test: str, run: Callable[[], object]) -> object:
        """The result of KEY's run for TEST: run now (TEST is its runner) or from before.
        A run that raises is not kept: the next test to ask runs it again."""
        if key not in self._results:
            self._results[key] = run()
            self._runner[key] = test
        used = self._used.setdefault(test, [])
        if key not in used:
            used.append(key)
        return self._results[key]

    def charge(self, test: str, splats: list[str]) -> None:
        """TEST's kernel log had SPLATS: they go with every shared run TEST ran."""
        for key in self._used.get(test, ()):
            if self._runner[key] == test:
                self._splats.setdefault(key, []).extend(splats)

    def inherited(self, test: str) -> list[str]:
        """One line per shared run TEST used, that another test ran while the kernel
        splatted: "splat during the shared batch <key> run by <test>: <splats>"."""
        out = []
        for key in self._used.get(test, ()):
            runner = self._runner[key]
            if runner != test and self._splats.get(key):
                out.append(
                    f"splat during the shared batch {describe(key)} run by {runner}: "
                    f"{'; '.join(self._splats[key])}"
                )
        return out


def describe(key: Hashable) -> str:
    """A key as a call: ('scenarios.nodev:reg_cases', '{}') -> scenarios.nodev:reg_cases({})."""
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
        return f"{key[0]}({key[1]})"
    return str(key)
