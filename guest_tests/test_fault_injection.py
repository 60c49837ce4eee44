"""The kernel's own fault injection across zcrx's setup: every allocation on the path of
IORING_REGISTER_ZCRX_IFQ (the ifq, the area's import: page array, pins, sg table, DMA
mapping or dma-buf attachment; the refill ring; on a real queue the netdev's queue
restart with its new page pools and zcnic's queue memory) and of ZCRX_REG_IMPORT fails
in turn, once per syscall (guest_tests/lib/failnth.py). Each failure must come back as
ENOMEM, or as success where the kernel has a fallback (kvmalloc to vmalloc), and leave
nothing behind once the ring is closed: no page pinned (FOLL_PIN), none charged to the
process (VmPin), no queue bound, no io_uring page pool. Then the same setup works with
nothing failing. Needs a kernel with CONFIG_FAULT_INJECTION, CONFIG_FAILSLAB and
CONFIG_FAIL_PAGE_ALLOC (--kernel=debug). Runs in the guest (guest_tests/agent.py).
"""

import errno
import os

import pytest

from guest_tests.lib import failnth
from guest_tests.lib.defer import defer
from guest_tests.lib.flow import zc_transfer
from guest_tests.zcrx import PAGE_SIZE, Mem, Ring, ZcrxArgs
from guest_tests.zcrx import uapi as U
from guest_tests.zcrx.dmabuf import Udmabuf
from guest_tests.zcrx.util import pinned_pages, pinned_vm_kb, wait_pins

pytestmark = [pytest.mark.faults, pytest.mark.in_guest]

# more fault points than any setup here passes (a few dozen): reaching it means the
# loop never found the end of the path
MAX_POINTS = 400
AREA = 64 * PAGE_SIZE


def injector() -> failnth.FailNth:
    reason = failnth.missing()
    if reason:
        pytest.skip(reason)
    return failnth.FailNth()


def every_failure(inject, setup, check):
    """For nth = 1, 2, ...: SETUP() gives (call, undo); call() runs with its nth fault
    point failing, undo() closes everything; CHECK() then names what was left behind,
    or "". Stops after the first nth the call no longer reaches: {nth: errno (0: it
    succeeded)} and {nth: what CHECK found}."""
    outcomes, leftovers = {}, {}
    for nth in range(1, MAX_POINTS + 1):
        call, undo = setup()
        try:
            out, fired = inject.call(nth, call)
        finally:
            undo()
        left = check()
        if not fired:  # the call got through: its setup, closed, leaves nothing either
            if left:
                leftovers["none failing"] = left
            return outcomes, leftovers
        outcomes[nth] = out.errno if isinstance(out, OSError) else 0
        if left:
            leftovers[nth] = left
    pytest.fail(f"the setup still reached fault point {MAX_POINTS}: the loop found no end")


def assert_failed_cleanly(outcomes, leftovers, propagates=True):
    """PROPAGATES: the path has allocations whose failure must reach the caller as
    ENOMEM (others, like kmemleak's own metadata or kvmalloc's kmalloc attempt, fall
    back and succeed). Always: no failure comes back as another errno, nothing is left
    behind, the kernel's checkers are still on."""
    names = {nth: errno.errorcode.get(err, err) for nth, err in outcomes.items()}
    if propagates:
        assert names, "no fault point reached: fail-nth injected nothing"
        assert errno.ENOMEM in outcomes.values(), f"no failure came back as ENOMEM: {names}"
    odd = {nth: name for nth, name in names.items() if name not in (0, "ENOMEM")}
    assert not odd, f"allocation failures that came back as another errno: {odd} (all: {names})"
    assert not leftovers, f"left behind after a failed allocation: {leftovers}"
    off = failnth.checkers_off()
    assert not off, f"the injected failures switched off the kernel's checker: {off}"


def pins_check(pins, pinned_vm):
    def check():
        left = []
        got = wait_pins(pins)[0]
        if got != pins:
            left.append(f"{got - pins} pages still pinned")
        if pinned_vm_kb() != pinned_vm:
            left.append(f"VmPin {pinned_vm_kb()} kB, {pinned_vm} kB before")
        return ", ".join(left)

    return check


def registration(ring_flags=U.ZCRX_RING_FLAGS, ifqs_before=0, **kw):
    """(call, undo) of one IORING_REGISTER_ZCRX_IFQ on a fresh ring that already has
    IFQS_BEFORE ifqs (a second id needs a node in the ring's xarray)."""
    ring = Ring(8, flags=ring_flags)
    before = [ZcrxArgs(rq_entries=64, area_len=AREA) for _ in range(ifqs_before)]
    for earlier in before:
        ring.register(U.IORING_REGISTER_ZCRX_IFQ, earlier.reg)
    args = ZcrxArgs(rq_entries=64, **kw)

    def undo():
        ring.close()
        for each in [args, *before]:
            each.close()

    return (lambda: ring.register(U.IORING_REGISTER_ZCRX_IFQ, args.reg)), undo


@pytest.mark.nodev
@pytest.mark.parametrize("region,ifqs_before", [("user", 0), ("kernel", 0), ("user", 1)])
def test_nodev_register_fails_cleanly_at_every_allocation(nodev, region, ifqs_before):
    """ZCRX_REG_NODEV with a 64-page user area and the refill ring in user memory or a
    kernel region, as the ring's first ifq or its second; then it registers and takes
    256 KiB of loopback TCP intact."""
    inject = injector()
    pins, pinned_vm = nodev.pins(), nodev.pinned_vm()

    def setup():
        return registration(area_len=AREA, region=region, ifqs_before=ifqs_before)

    outcomes, leftovers = every_failure(inject, setup, pins_check(pins, pinned_vm))
    assert_failed_cleanly(outcomes, leftovers)
    ring = nodev.ring(8, cq_entries=512)
    zcrx = ring.register_zcrx(rq_entries=64, area_len=AREA, region=region)
    res, intact = nodev.receive(ring, zcrx, 256 << 10)
    assert intact and len(res.data) == 256 << 10, f"{len(res.data)} bytes, intact: {intact}"
    assert res.final.res == 0, res.final
    assert zcrx.stats()["copy_bytes"] == 256 << 10, zcrx.stats()


@pytest.mark.nodev
def test_nodev_import_fails_cleanly_at_every_allocation(nodev):
    """ZCRX_REG_IMPORT of an exported ifq into a fresh ring, each allocation it passes
    failing in turn. On 7.3.4 none of them reaches the caller (the walk meets only
    allocations that fall back, e.g. kmemleak's metadata), so the check is what they
    must not do: no other errno, and the exporter's area stays pinned exactly once (the
    importer's ring, closed, takes nothing with it and leaves nothing). Then an import
    succeeds."""
    inject = injector()
    pins, pinned_vm = nodev.pins(), nodev.pinned_vm()
    exporter = nodev.ring(8)
    zcrx = exporter.register_zcrx(rq_entries=64, region="kernel", area_len=AREA)
    fd = zcrx.export()
    close_fd = defer(os.close, fd)
    held = nodev.pins()
    assert held - pins == AREA // PAGE_SIZE, f"the exporter pins {held - pins} pages"

    def setup():
        ring = Ring(8)
        return (lambda: ring.import_zcrx(fd)), ring.close

    outcomes, leftovers = every_failure(inject, setup, pins_check(held, nodev.pinned_vm()))
    assert_failed_cleanly(outcomes, leftovers, propagates=False)
    importer = nodev.ring(8)
    importer.import_zcrx(fd)
    close_fd.exec()
    nodev.close(exporter)
    nodev.close(importer)
    assert wait_pins(pins)[0] == pins, "pages still pinned after both rings closed"
    assert nodev.pinned_vm() == pinned_vm, "VmPin still charged after both rings closed"


@pytest.mark.nodev
@pytest.mark.parametrize("op", ["export", "add_area"])
def test_nodev_ctrl_fails_cleanly_at_every_allocation(nodev, op):
    """IORING_REGISTER_ZCRX_CTRL on a registered ifq, each allocation failing in turn:
    ZCRX_CTRL_EXPORT (the ifq's file) or ZCRX_CTRL_ADD_AREA (a second 64-page area:
    its import, pins and accounting). With the ring closed nothing stays pinned or
    charged."""
    inject = injector()
    pins, pinned_vm = nodev.pins(), nodev.pinned_vm()

    def setup():
        ring = Ring(8)
        args = ZcrxArgs(rq_entries=64, area_len=AREA)
        zcrx = ring.register_zcrx(args)
        mem, made = Mem(AREA), []

        def call():
            if op == "export":
                made.append(zcrx.export())
            else:
                zcrx.add_area(mem=mem)

        def undo():
            for fd in made:
                os.close(fd)
            ring.close()
            args.close()
            mem.close()

        return call, undo

    outcomes, leftovers = every_failure(inject, setup, pins_check(pins, pinned_vm))
    assert_failed_cleanly(outcomes, leftovers)


@pytest.mark.zcnic
@pytest.mark.parametrize("area,mode", [("user", "whole"), ("user", "header_pool"), ("dmabuf", "whole")])
def test_zcnic_register_fails_cleanly_at_every_allocation(nic, area, mode):
    """zc0's queue 1 in zcnic's buffer mode `mode`, with a 64-page user area or a
    udmabuf: after each failure (or success), once the ring is closed no queue is bound,
    no io_uring page pool is left, nothing pinned or charged; then a flow on queue 1
    arrives intact and zero copy."""
    inject = injector()
    if area == "dmabuf" and not os.path.exists("/dev/udmabuf"):
        pytest.skip(f"kernel {os.uname().release} has no /dev/udmabuf (CONFIG_UDMABUF)")
    nic.mode(mode)
    dmabuf = None
    if area == "dmabuf":
        dmabuf = Udmabuf(AREA)
        defer(dmabuf.close)
    pins, pinned_vm = pinned_pages(), pinned_vm_kb()
    pins_left = pins_check(pins, pinned_vm)

    def check():
        left = [pins_left()]
        if nic.wait_unbound():
            left.append(f"queues {nic.bound_queues()} still bound")
        if nic.wait_no_pools():
            left.append(f"{len(nic.io_uring_pools())} io_uring page pools left")
        return ", ".join(s for s in left if s)

    kw = {"dmabuf": dmabuf} if dmabuf else {"area_len": AREA}
    outcomes, leftovers = every_failure(
        inject, lambda: registration(nodev=False, if_idx=nic.ifindex, if_rxq=1, **kw), check
    )
    assert_failed_cleanly(outcomes, leftovers)
    again = zc_transfer(nic, bind=1, steer=1)
    assert again["final"] == 0 and again["bytes"] == again["sent"] and again["match"], again
    assert again["stats"]["copy_count"] == 0, again["stats"]
    assert again["bound_after"] == [] and again["pins_after"] == 0, again


def xa_alloc_injector() -> failnth.FailSlabUnder:
    """failslab under __xa_alloc for the test's thread; a skip where the kernel cannot."""
    reason = failnth.missing()
    if reason:
        pytest.skip(reason)
    if not os.path.exists(f"{failnth.DEBUGFS}/failslab/require-start"):
        pytest.skip(
            f"kernel {os.uname().release} has no fault injection stack trace filter "
            "(CONFIG_FAULT_INJECTION_STACKTRACE_FILTER): failslab cannot be held to __xa_alloc"
        )
    try:
        return failnth.FailSlabUnder("__xa_alloc")
    except LookupError as e:
        pytest.skip(str(e))


@pytest.mark.nodev
@pytest.mark.parametrize("times,expected", [(1, 0), (2, errno.ENOMEM)])
def test_nodev_register_when_the_rings_id_cannot_be_allocated(nodev, times, expected):
    """A ring's first ifq allocates the node of the ring's xarray of ifqs (traced on
    7.3.4: kmem_cache_alloc_lru from xas_alloc under __xa_alloc, in the registration of
    id 0; later ids reuse it). xa_alloc() tries it GFP_NOWAIT under the xa_lock, then
    GFP_KERNEL (__xas_nomem). With both failing (failslab under __xa_alloc, times 2)
    IORING_REGISTER_ZCRX_IFQ fails ENOMEM before it imports the area (io_register_zcrx's
    `goto ifq_free`): nothing pinned or charged. With only the first failing the retry
    takes over and the ifq registers as id 0. Then the next registration gets the next id
    (a failure took none) and receives 64 KiB intact."""
    inject = xa_alloc_injector()
    pins, pinned_vm = nodev.pins(), nodev.pinned_vm()
    ring = nodev.ring(8, cq_entries=512)
    first = ZcrxArgs(rq_entries=64, area_len=AREA)
    defer(first.close)
    out, injected = inject.call(lambda: ring.register(U.IORING_REGISTER_ZCRX_IFQ, first.reg), times)
    err = out.errno if isinstance(out, OSError) else 0
    left = pins_check(pins, pinned_vm)() if err else ""
    ids = [first.reg.zcrx_id] if not err else []
    after = ring.register_zcrx(rq_entries=64, area_len=AREA)
    res, intact = nodev.receive(ring, after, 64 << 10)
    assert injected == times, f"failslab injected {injected} of {times} failures under __xa_alloc"
    assert err == expected, f"{errno.errorcode.get(err, err)}, not {errno.errorcode.get(expected, expected)}"
    assert not left, f"left behind by the failed registration: {left}"
    assert ids + [after.id] == list(range(len(ids) + 1)), (ids, after.id)
    assert intact and len(res.data) == 64 << 10, f"{len(res.data)} bytes, intact: {intact}"


@pytest.mark.nodev
def test_nodev_import_when_the_rings_id_cannot_be_allocated(nodev):
    """ZCRX_REG_IMPORT into a fresh ring allocates the node of that ring's xarray of ifqs
    for id 0: both of xa_alloc()'s attempts failing (failslab under __xa_alloc), the
    import fails ENOMEM (import_zcrx's `goto err`) and gives back the references it took
    on the exported ifq: closing the exporter's ring and the export fd then unpins the
    exporter's area although the importing ring lives on. Then an import into that ring
    succeeds, as id 0."""
    inject = xa_alloc_injector()
    pins = nodev.pins()
    exporter = nodev.ring(8)
    zcrx = exporter.register_zcrx(rq_entries=64, region="kernel", area_len=AREA)
    fd = zcrx.export()
    close_fd = defer(os.close, fd)
    importer = nodev.ring(8)
    held = nodev.pins()
    out, injected = inject.call(lambda: importer.import_zcrx(fd), 2)
    err = out.errno if isinstance(out, OSError) else 0
    close_fd.exec()
    nodev.close(exporter)
    left = wait_pins(pins)[0] - pins
    exporter2 = nodev.ring(8)
    fd2 = exporter2.register_zcrx(rq_entries=64, region="kernel", area_len=AREA).export()
    defer(os.close, fd2)
    imported = importer.import_zcrx(fd2)
    assert injected == 2, f"failslab injected {injected} of 2 failures under __xa_alloc"
    assert err == errno.ENOMEM, errno.errorcode.get(err, err)
    assert held - pins == AREA // PAGE_SIZE, f"the exporter pins {held - pins} pages"
    assert left == 0, f"{left} pages pinned with the exporter closed: the failed import kept its area"
    assert imported.id == 0, imported.id
