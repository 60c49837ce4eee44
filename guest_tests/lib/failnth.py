"""Kernel fault injection in the test's own thread: /proc/thread-self/fail-nth, and
failslab filtered to the thread and to one kernel function (FailSlabUnder).

Writing N there makes the Nth fault-injection point this thread passes in the kernel
fail, once, and no other (Documentation/fault-injection/fault-injection.rst; syzkaller
hunts error paths this way). Reading it back says whether the point was reached: 0
once it fired, what is left of N if the call ended first. Running one syscall with
N = 1, 2, ... until a call no longer reaches its Nth point fails every allocation on
its path in turn, and only there: other tasks, softirqs and the test's own Python
never see a failure.

failslab and fail_page_alloc skip sleeping (GFP_KERNEL) allocations and order-0 pages
by default, which is nearly all of zcrx's: `FailNth` lets them count those too for
the test (probability stays 0, so nothing fails outside fail-nth) and restores them.

The kernel's own checkers must survive the test: DMA-API debug switches itself off
for good when its cacheline bookkeeping (add_dma_entry) cannot allocate ("DMA-API:
cacheline tracking ENOMEM, dma-debug disabled"). Allocations made under that function
are left alone (the stack trace filter's reject range), and `checkers_off()` says
whether it went off anyway. kmemleak falls back to its own pool: its metadata
allocations are fault points whose failure the caller never sees.
"""

import gc
import os

from guest_tests.lib.defer import defer

FAIL_NTH = "/proc/thread-self/fail-nth"
DEBUGFS = "/sys/kernel/debug"
# debugfs file -> the value for the test: count sleeping allocations, order-0 and
# highmem pages; one line per injected failure in the kernel log, no stack dump
SETTINGS = {
    "failslab/ignore-gfp-wait": "N",
    "failslab/verbose": "1",
    "fail_page_alloc/ignore-gfp-wait": "N",
    "fail_page_alloc/ignore-gfp-highmem": "N",
    "fail_page_alloc/min-order": "0",
    "fail_page_alloc/verbose": "1",
}


def missing() -> str | None:
    """Why this kernel cannot inject allocation failures per task, or None."""
    release = os.uname().release
    if not os.path.exists(FAIL_NTH):
        return (
            f"kernel {release} has no fault injection (CONFIG_FAULT_INJECTION, "
            "/proc/thread-self/fail-nth): use --kernel=debug or kconfigs/debug.config"
        )
    for name in ("failslab", "fail_page_alloc"):
        if not os.path.isdir(f"{DEBUGFS}/{name}"):
            option = "CONFIG_FAILSLAB" if name == "failslab" else "CONFIG_FAIL_PAGE_ALLOC"
            return f"kernel {release} has no {DEBUGFS}/{name} ({option}, CONFIG_FAULT_INJECTION_DEBUG_FS)"
    return None


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _text_extent(symbol: str) -> tuple[int, int] | None:
    """[start, end) of a kernel function: its address and the next symbol's."""
    addresses, start = [], None
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, kind, name = line.split()[:3]
            if kind in "tT":
                addresses.append(int(addr, 16))
                if name == symbol:
                    start = int(addr, 16)
    if not start:  # absent, or addresses hidden (kptr_restrict)
        return None
    return start, min(a for a in addresses if a > start)


def checkers_off() -> list[str]:
    """The kernel's bug checkers that have switched themselves off."""
    off = []
    try:
        with open(f"{DEBUGFS}/dma-api/disabled") as f:
            if f.read().strip() == "Y":
                off.append("DMA-API debug (dma-api/disabled is Y)")
    except FileNotFoundError:
        pass
    return off


class FailNth:
    """Allocation failure injection for the calling thread, undone after the test."""

    def __init__(self):
        settings = dict(SETTINGS)
        spared = _text_extent("add_dma_entry")
        if spared:
            for name in ("failslab", "fail_page_alloc"):
                settings[f"{name}/reject-start"] = hex(spared[0])
                settings[f"{name}/reject-end"] = hex(spared[1])
        for name, value in settings.items():
            path = f"{DEBUGFS}/{name}"
            if not os.path.exists(path):  # the reject range needs the stack trace filter
                continue
            with open(path) as f:
                old = f.read().strip()
            _write(path, value)
            defer(_write, path, old)
        self.fd = os.open(FAIL_NTH, os.O_RDWR)
        defer(os.close, self.fd)

    def call(self, nth: int, fn, *args):
        """fn(*args) with the nth fault-injection point it passes failing:
        (its value or the OSError it raised, whether that point was reached)."""
        # Nothing of Python's own may run into the kernel between arming and the call:
        # a collection could unmap an arena. The descriptor is open already.
        gc.disable()
        try:
            os.pwrite(self.fd, str(nth).encode(), 0)
            try:
                out = fn(*args)
            except OSError as exc:
                out = exc
            finally:  # disarmed whatever fn raised: a later allocation must not fail
                left = int(os.pread(self.fd, 32, 0))
                os.pwrite(self.fd, b"0", 0)
        finally:
            gc.enable()
        return out, left == 0


class FailSlabUnder:
    """failslab for the calling thread (task-filter, /proc/thread-self/make-it-fail), for
    slab allocations made under one kernel function (the stack trace filter's require
    range): `call(fn, times)` fails the first `times` of them, each allocation a retry
    makes included. fail-nth cannot do that: it fails one point per call, so an
    allocation retried after a failure (xa_alloc's node: GFP_NOWAIT under the xa_lock,
    then GFP_KERNEL in __xas_nomem()) always succeeds the second time."""

    def __init__(self, symbol: str):
        self.symbol = symbol
        extent = _text_extent(symbol)
        if extent is None:
            raise LookupError(f"{symbol} is not in /proc/kallsyms (or addresses are hidden)")
        settings = {
            "failslab/ignore-gfp-wait": "N",
            "failslab/verbose": "1",
            "failslab/task-filter": "Y",
            "failslab/interval": "1",
            "failslab/space": "0",
            "failslab/require-start": hex(extent[0]),
            "failslab/require-end": hex(extent[1]),
            "failslab/times": "0",
            "failslab/probability": "0",
        }
        for name, value in settings.items():
            path = f"{DEBUGFS}/{name}"
            with open(path) as f:
                old = f.read().strip()
            _write(path, value)
            defer(_write, path, old)

    def call(self, fn, times: int):
        """fn() with the first `times` slab allocations under the symbol failing: (its
        value or the OSError it raised, how many failures the kernel injected)."""
        _write(f"{DEBUGFS}/failslab/times", str(times))
        _write(f"{DEBUGFS}/failslab/probability", "100")
        gc.disable()  # nothing of Python's own between arming and the call (see FailNth)
        try:
            _write("/proc/thread-self/make-it-fail", "1")
            try:
                out = fn()
            except OSError as exc:
                out = exc
            finally:
                _write("/proc/thread-self/make-it-fail", "0")
        finally:
            gc.enable()
            _write(f"{DEBUGFS}/failslab/probability", "0")
            with open(f"{DEBUGFS}/failslab/times") as f:
                left = int(f.read())
            _write(f"{DEBUGFS}/failslab/times", "0")
        return out, times - left
