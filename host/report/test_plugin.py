"""How a guest test's failed answer is raised on the host (host/plugin.py)."""

from types import SimpleNamespace

import pytest

from guest_tests.contract import TestAnswer
from host.report.plugin import _guest_failure


class StillPinned(AssertionError):
    pass


MODULE = SimpleNamespace(StillPinned=StillPinned, ValueError=ValueError, helper=len)


def test_an_assertion_class_of_the_module_comes_back_as_itself():
    exc = _guest_failure(MODULE, TestAnswer("failed", "StillPinned: 1030 pages pinned"))
    assert type(exc) is StillPinned and str(exc) == "StillPinned: 1030 pages pinned"


@pytest.mark.parametrize(
    "answer",
    [
        TestAnswer("failed", "AssertionError: assert 1 == 2"),  # not the module's own
        TestAnswer("failed", "helper: not an exception class"),
        TestAnswer("error", "ValueError: raised, not asserted", "Traceback ...\nValueError"),
        TestAnswer("failed", ""),
    ],
)
def test_any_other_failure_fails_the_test_with_the_guest_message(answer):
    exc = _guest_failure(MODULE, answer)
    assert isinstance(exc, pytest.fail.Exception) and answer.message in str(exc)
