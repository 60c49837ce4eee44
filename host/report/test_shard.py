"""--shard I/N: every test in exactly one slice, slices about equally long,
groups whole, the same answer on every machine; bad input is one line."""

import json
from dataclasses import dataclass, field

import pytest

from host.errors import LabError
from host.report.shard import durations, junit_nodeid, parse, partition, select


@dataclass
class Item:
    """What select() reads of a pytest item."""

    nodeid: str
    keywords: dict = field(default_factory=dict)
    fixturenames: tuple = ()

    def get_closest_marker(self, _name):
        return None


def items(n: int, module="guest_tests/test_nodev_setup.py") -> list[Item]:
    return [Item(f"{module}::test_{i:02d}") for i in range(n)]


@pytest.mark.parametrize("text", ["3/2", "0/2", "1/0", "a/b", "1", "", "2/-1"])
def test_bad_shard_is_a_lab_error(text):
    with pytest.raises(LabError, match=r"^--shard"):
        parse(text)


def test_parse():
    assert parse("1/1") == (1, 1) and parse(" 2 / 3 ") == (2, 3)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_test_in_exactly_one_slice(count):
    tests = items(20)
    slices = [[i.nodeid for i in select(tests, f"{k}/{count}", None)] for k in range(1, count + 1)]
    flat = [t for s in slices for t in s]
    assert sorted(flat) == sorted(i.nodeid for i in tests)
    assert max(map(len, slices)) - min(map(len, slices)) <= 1  # no durations: one unit each


def test_slices_keep_collection_order():
    tests = items(10)
    mine = select(tests, "2/3", None)
    assert mine == sorted(mine, key=tests.index)


def test_durations_balance_the_slices(tmp_path):
    tests = items(6)
    seconds = dict(zip([i.nodeid for i in tests], [60, 10, 10, 10, 10, 20], strict=True))
    run = {"tests": {t: {"outcome": "passed", "message": "", "seconds": s} for t, s in seconds.items()}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    one = select(tests, "1/2", str(tmp_path))  # a results directory: its run.json
    two = select(tests, "2/2", str(tmp_path / "run.json"))
    assert [i.nodeid for i in one] == [tests[0].nodeid]  # the 60 s test alone
    assert sum(seconds[i.nodeid] for i in two) == 60


def test_groups_stay_in_one_slice():
    grouped = [Item(f"guest_tests/test_traffic.py::test_{i}", keywords={"traffic": 1}) for i in range(4)]
    tests = items(4) + grouped
    for k in (1, 2, 3):
        mine = {i.nodeid for i in select(tests, f"{k}/3", None)}
        assert not mine & {g.nodeid for g in grouped} or {g.nodeid for g in grouped} <= mine


def test_partition_is_stable():
    units = {f"t{i}": float(i % 3) for i in range(30)}
    assert partition(units, 4) == partition(dict(reversed(units.items())), 4)


def test_junit_durations(tmp_path):
    (tmp_path / "junit.xml").write_text(
        '<testsuites><testsuite><testcase classname="guest_tests.test_nodev_setup" name="test_a[x]" '
        'time="3.5"/><testcase classname="host.report.test_shard" name="test_parse" time="0.1"/>'
        "</testsuite></testsuites>"
    )
    assert durations(tmp_path / "junit.xml") == {
        "guest_tests/test_nodev_setup.py::test_a[x]": 3.5,
        "host/report/test_shard.py::test_parse": 0.1,
    }


def test_junit_nodeid_of_a_class():
    nodeid = junit_nodeid("host.report.test_shard.TestX", "test_y")
    assert nodeid == "host/report/test_shard.py::TestX::test_y"


def test_missing_durations_file_is_a_lab_error(tmp_path):
    with pytest.raises(LabError, match="no such file"):
        durations(tmp_path / "nope.json")
    with pytest.raises(LabError, match="no run.json or junit.xml"):
        durations(tmp_path)
