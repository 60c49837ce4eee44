"""-n auto sizes, and which tests must share a worker."""

from dataclasses import dataclass, field

from host.report.parallel import auto_workers, group_of


def test_auto_workers_one_core_and_the_guest_ram_each():
    assert auto_workers(cpus=2, available_mb=24000, vm_mb=2560) == 2
    assert auto_workers(cpus=16, available_mb=8000, vm_mb=2560) == 3
    assert auto_workers(cpus=4, available_mb=1000, vm_mb=2560) == 1  # never zero


@dataclass
class Item:
    nodeid: str
    keywords: dict = field(default_factory=dict)
    fixturenames: tuple = ()
    marker: object = None

    def get_closest_marker(self, _name):
        return self.marker


def test_groups():
    assert group_of(Item("guest_tests/test_nodev_setup.py::test_a", fixturenames=("nodev",))) is None
    assert group_of(Item("guest_tests/test_traffic.py::test_a", keywords={"traffic": 1})) == "traffic"
    assert group_of(Item("guest_tests/test_upstream.py::test_a[x]", keywords={"upstream": 1})) == "upstream"
    harness = "guest_tests/test_harness.py"
    assert group_of(Item(f"{harness}::test_deliberate_panic")) == harness
