"""Splats of a shared guest run reach every test that used its result."""

import pytest

from host.report.shared import SharedRuns

KEY = ("scenarios.nodev:reg_cases", "{}")
OTHER = ("scenarios.zcnic:transfer", '{"bind": 1}')


def counting_run(value):
    calls = []

    def run():
        calls.append(1)
        return value

    return run, calls


def test_runs_once_for_every_test():
    shared = SharedRuns()
    run, calls = counting_run({"ok": 0})
    assert shared.get(KEY, "t1", run) == {"ok": 0}
    assert shared.get(KEY, "t2", run) is shared.get(KEY, "t3", run)
    assert len(calls) == 1


def test_a_failed_run_is_run_again_by_the_next_test():
    shared = SharedRuns()

    def broken():
        raise AssertionError("scenario raised")

    with pytest.raises(AssertionError):
        shared.get(KEY, "t1", broken)
    run, calls = counting_run(1)
    assert shared.get(KEY, "t2", run) == 1 and calls == [1]
    shared.charge("t1", ["WARNING at x"])  # t1 ran nothing that was kept
    assert shared.inherited("t3") == []
    shared.get(KEY, "t3", run)
    assert shared.inherited("t3") == []


def test_splat_of_the_runner_fails_every_later_user():
    shared = SharedRuns()
    run, _ = counting_run(1)
    shared.get(KEY, "t1", run)
    shared.charge("t1", ["WARNING: io_uring/zcrx.c:660", "KASAN: use-after-free"])
    assert shared.inherited("t1") == [], "the runner fails with its own splat already"
    shared.get(KEY, "t2", run)
    [line] = shared.inherited("t2")
    assert line == (
        "splat during the shared batch scenarios.nodev:reg_cases({}) run by t1: "
        "WARNING: io_uring/zcrx.c:660; KASAN: use-after-free"
    )
    assert shared.inherited("t3") == [], "t3 never used the batch"


def test_only_the_batches_a_test_used():
    shared = SharedRuns()
    run, _ = counting_run(1)
    shared.get(KEY, "t1", run)
    shared.get(OTHER, "t2", run)
    shared.charge("t2", ["BUG: x"])  # t2's splat: OTHER's batch, not KEY's
    shared.get(KEY, "t3", run)
    shared.get(OTHER, "t3", run)
    assert shared.inherited("t3") == [
        'splat during the shared batch scenarios.zcnic:transfer({"bind": 1}) run by t2: BUG: x'
    ]


def test_a_clean_runner_passes_nothing_on():
    shared = SharedRuns()
    run, _ = counting_run(1)
    shared.get(KEY, "t1", run)
    shared.charge("t1", [])
    shared.get(KEY, "t2", run)
    assert shared.inherited("t2") == []


def test_a_test_that_only_reuses_is_not_a_runner():
    """A splat in a later user's own window stays with that user, not the batch."""
    shared = SharedRuns()
    run, _ = counting_run(1)
    shared.get(KEY, "t1", run)
    shared.get(KEY, "t2", run)
    shared.charge("t2", ["WARNING: y"])
    shared.get(KEY, "t3", run)
    assert shared.inherited("t3") == []
