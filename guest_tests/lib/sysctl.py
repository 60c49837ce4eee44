"""Kernel tunables for a test: read one, or set one until the test ends (defer)."""

import os

from guest_tests.lib.defer import defer


def path(name: str) -> str:
    """/proc/sys path of NAME, as sysctl(8) writes it (vm.nr_hugepages) or as a path
    under /proc/sys (kernel/timer_migration)."""
    return "/proc/sys/" + name.replace(".", "/")


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def read(name: str) -> str:
    with open(path(name)) as f:
        return f.read().strip()


def set_for_test(name: str, value) -> None:
    """Set NAME; its old value is written back when the test ends."""
    old = read(name)
    write(name, value)
    defer(write, name, old)


def write(name: str, value) -> None:
    with open(path(name), "w") as f:
        f.write(str(value))


def reserve_hugepages(count: int) -> bool:
    """At least COUNT more 2 MiB pages in vm.nr_hugepages until the test ends; False if
    the kernel could not find them."""
    old = int(read("vm.nr_hugepages"))
    set_for_test("vm.nr_hugepages", old + count)
    return int(read("vm.nr_hugepages")) >= old + count


def hugepages_free() -> int:
    """Huge pages in the pool that nothing uses (HugePages_Free of /proc/meminfo)."""
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("HugePages_Free:"))
