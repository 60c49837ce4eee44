"""`--shard I/N`: one slice of the selected tests, for a CI matrix of machines.

Every shard computes the same partition of the same selection, so the N
slices together run each selected test exactly once: the partition depends
only on the tests' node ids, their groups (parallel.group_of: tests that must
share a VM stay in one slice) and the durations file every shard is given
(`--shard-durations`, an earlier run's run.json, junit.xml or results
directory). A test that file does not know weighs the median of those it
knows; without a file every test weighs one. Heaviest unit first, each to the
slice with the least time so far (ties: the lower slice, then node id order).
"""

import json
import re
import statistics
import xml.etree.ElementTree as ET
from pathlib import Path

from host.errors import LabError

REPO = Path(__file__).resolve().parents[2]


def parse(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), 1 <= I <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise LabError(f"--shard {text}: expected I/N, e.g. 1/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise LabError(f"--shard {text}: I must be between 1 and N (N >= 1)")
    return index, count


def junit_nodeid(classname: str, name: str) -> str:
    """The pytest node id a JUnit test case stands for (junitxml writes
    'guest_tests.test_x.Class' + 'test_y[p]' for 'guest_tests/test_x.py::Class::test_y[p]').
    A dotted module path is ambiguous; a package path is the common case here."""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):  # the longest prefix that is a module file
        module = "/".join(parts[:cut]) + ".py"
        if (REPO / module).exists() or cut == 1:
            return "::".join([module, *parts[cut:], name])
    return name  # unreachable: cut == 1 always returns


def durations(path: str | Path | None) -> dict[str, float]:
    """Seconds per node id from PATH: a run.json (its tests' "seconds"), a junit.xml
    (each testcase's time) or a results directory holding either."""
    if path is None:
        return {}
    path = Path(path)
    if path.is_dir():
        for name in ("run.json", "junit.xml"):
            if (path / name).is_file():
                found = durations(path / name)
                if found:
                    return found
        raise LabError(f"--shard-durations {path}: no run.json or junit.xml with test durations")
    if not path.is_file():
        raise LabError(f"--shard-durations {path}: no such file")
    if path.suffix == ".json":
        try:
            tests = json.loads(path.read_text()).get("tests") or {}
        except (json.JSONDecodeError, AttributeError) as exc:
            raise LabError(f"--shard-durations {path}: not a run.json ({exc})") from None
        return {nodeid: float(t["seconds"]) for nodeid, t in tests.items() if "seconds" in t}
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise LabError(f"--shard-durations {path}: not a JUnit XML file ({exc})") from None
    return {
        junit_nodeid(case.get("classname", ""), case.get("name", "")): float(case.get("time", 0))
        for case in root.iter("testcase")
    }


def partition(units: dict[str, float], count: int) -> list[list[str]]:
    """UNITS (name -> weight) dealt into COUNT slices of about equal weight (LPT)."""
    slices: list[list[str]] = [[] for _ in range(count)]
    load = [0.0] * count
    for name, weight in sorted(units.items(), key=lambda unit: (-unit[1], unit[0])):
        lightest = min(range(count), key=lambda i: (load[i], i))
        slices[lightest].append(name)
        load[lightest] += weight
    return slices


def select(items: list, spec: str, durations_path: str | None) -> list:
    """The items of slice SPEC ('I/N'), in their collection order."""
    from host.report.parallel import group_of

    index, count = parse(spec)
    seconds = durations(durations_path)
    known = [seconds[item.nodeid] for item in items if item.nodeid in seconds]
    default = statistics.median(known) if known else 1.0
    unit_of = {item.nodeid: f"group:{group}" if (group := group_of(item)) else item.nodeid for item in items}
    units: dict[str, float] = {}
    for item in items:
        unit = unit_of[item.nodeid]
        units[unit] = units.get(unit, 0.0) + seconds.get(item.nodeid, default)
    mine = set(partition(units, count)[index - 1])
    return [item for item in items if unit_of[item.nodeid] in mine]
