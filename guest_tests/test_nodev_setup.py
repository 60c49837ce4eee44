"""ifq setup without a netdev (ZCRX_REG_NODEV): IORING_REGISTER_ZCRX_IFQ validation,
refill regions, ctrl ops, areas, capability, pinned pages (export/import:
test_nodev_import.py). Runs in
the guest (guest_tests/agent.py).

Expected errnos come from io_uring/zcrx.c, io_uring/memmap.c, io_uring/rsrc.c and
io_uring/register.c of Linux 7.3.
"""

import ctypes
import os
import platform
import resource
import time
from errno import EFAULT, EINVAL, ENODEV, ENOMEM, ENXIO, EOPNOTSUPP, EOVERFLOW, EPERM, ERANGE

import pytest

from guest_tests.contract import KERNEL_UAPI
from guest_tests.lib import sysctl
from guest_tests.lib.defer import defer
from guest_tests.lib.registration import (
    BAD,
    DEFER,
    EVENTS,
    GUARDED,
    LO,
    MIXED,
    NO_DEFER,
    ZCRX,
    Reg,
    errname,
    register,
)
from guest_tests.lib.structs import plus, put, resolve
from guest_tests.zcrx import PAGE_SIZE, Ring, ZcrxArgs, layout
from guest_tests.zcrx import uapi as U
from guest_tests.zcrx.mem import MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap
from guest_tests.zcrx.util import CAP_IPC_LOCK, CAP_NET_ADMIN, drop_cap, errno_of, in_child, wait_pins

pytestmark = [pytest.mark.nodev, pytest.mark.in_guest]

PAGE = PAGE_SIZE
CLAMP = ZCRX | U.IORING_SETUP_CLAMP
NO_STATS = {"stats": False, "region_size": PAGE}  # a one-page region, rqes only


def test_uapi_layout_matches_kernel_headers(nodev):
    """Every ctypes struct/constant of the client equals the running kernel's uapi header:
    a tree's own `make headers` output (shared as /kernel-uapi), else Debian's headers
    package of the running kernel."""
    release = platform.release()
    shared = os.path.ismount(KERNEL_UAPI)
    if not shared and not os.path.isdir(f"/usr/src/linux-headers-{release}"):
        pytest.skip(
            f"no uapi headers of kernel {release}: {KERNEL_UAPI} is not shared (a kernel tree "
            "without `make headers` output in usr/include; python3 -m host build-kernel runs it) "
            f"and there is no linux-headers-{release} package"
        )
    res = layout.check()
    if shared:
        assert res["headers"] == KERNEL_UAPI, res
    assert res["checked"] > 100, res
    assert res["mismatches"] == [], res


# name -> Reg(errno, ...): see guest_tests/lib/registration.py
REG = {
    "ok": Reg(0),
    "ok_kernel_region": Reg(0, args={"region": "kernel"}),
    "ok_no_stats": Reg(0, args={"stats": False}),
    "ok_cqe_mixed": Reg(0, ring=MIXED),  # CQE_MIXED is an alternative to CQE32
    "ring_plain": Reg(EINVAL, ring=0),  # no DEFER_TASKRUN
    "ring_no_defer_taskrun": Reg(EINVAL, ring=NO_DEFER),
    "ring_no_cqe32": Reg(EINVAL, ring=DEFER),  # neither CQE32 nor CQE_MIXED
    "ring_coop_taskrun_cqe32": Reg(EINVAL, ring=U.IORING_SETUP_COOP_TASKRUN | U.IORING_SETUP_CQE32),
    "flags_unknown_bit2": Reg(EINVAL, set={"reg.flags": U.ZCRX_REG_NODEV | 4}),
    "flags_unknown_bit31": Reg(EINVAL, set={"reg.flags": U.ZCRX_REG_NODEV | 1 << 31}),
    "reg_resv0": Reg(EINVAL, set={"reg.__resv[0]": 1}),
    "reg_resv1": Reg(EINVAL, set={"reg.__resv[1]": 1}),
    "reg_zcrx_id_set": Reg(EINVAL, set={"reg.zcrx_id": 1}),  # zcrx_id is an output
    # offsets are output only: the kernel overwrites them
    "reg_offsets_resv_set": Reg(0, set={"reg.offsets.__resv[0]": 1, "reg.offsets.head": 7}),
    "region_ptr_null": Reg(EFAULT, set={"reg.region_ptr": 0}),
    "region_ptr_unmapped": Reg(EFAULT, set={"reg.region_ptr": BAD}),
    "if_rxq_minus1": Reg(EINVAL, set={"reg.if_rxq": 0xFFFFFFFF}),
    "nodev_if_idx_set": Reg(EINVAL, set={"reg.if_idx": 1}),  # NODEV wants if_idx == if_rxq == 0
    "nodev_if_rxq_set": Reg(EINVAL, set={"reg.if_rxq": 1}),
    "netdev_if_idx_0": Reg(ENODEV, args={"nodev": False}),  # without NODEV: no such device
    "netdev_if_idx_missing": Reg(ENODEV, args={"nodev": False, "if_idx": 0x7FFFFFF0}),
    "netdev_loopback": Reg(EOPNOTSUPP, args={"nodev": False, "if_idx": LO}),  # lo: no DMA device
    "rq_entries_0": Reg(EINVAL, set={"reg.rq_entries": 0}),
    "rq_entries_1": Reg(0, args={"rq_entries": 1}),
    "rq_entries_100": Reg(0, args={"rq_entries": 100}),
    "rq_entries_max": Reg(0, args={"rq_entries": U.IO_RQ_MAX_ENTRIES}),  # 32768
    # without IORING_SETUP_CLAMP
    "rq_entries_max_plus1": Reg(
        EINVAL, args={"rq_entries": U.IO_RQ_MAX_ENTRIES}, set={"reg.rq_entries": U.IO_RQ_MAX_ENTRIES + 1}
    ),
    "rq_entries_max_plus1_clamp": Reg(
        0, CLAMP, {"rq_entries": U.IO_RQ_MAX_ENTRIES}, {"reg.rq_entries": U.IO_RQ_MAX_ENTRIES + 1}
    ),
    "rq_entries_huge_clamp": Reg(
        0, CLAMP, {"rq_entries": U.IO_RQ_MAX_ENTRIES}, {"reg.rq_entries": 0x80000001}
    ),
    "rq_region_too_small": Reg(EINVAL, args={"rq_entries": 512, **NO_STATS}),
    # 128 + 248 * 16 == 4096 fits one page, but the kernel rounds 248 up to 256 first
    "rq_entries_248_rounded_exceeds_region": Reg(
        EINVAL, args={"rq_entries": 248, **NO_STATS}, set={"reg.rq_entries": 248}
    ),
    "rq_entries_128_one_page_region": Reg(0, args={"rq_entries": 128, **NO_STATS}),
    "area_ptr_null": Reg(EFAULT, set={"reg.area_ptr": 0}),
    "area_ptr_unmapped": Reg(EFAULT, set={"reg.area_ptr": BAD}),
    "area_token_set": Reg(EINVAL, set={"area.rq_area_token": 1 << 48}),  # rq_area_token is an output
    "area_flags_unknown": Reg(EINVAL, set={"area.flags": 2}),
    "area_flags_dmabuf": Reg(EINVAL, set={"area.flags": U.IORING_ZCRX_AREA_DMABUF}),  # needs a device
    "area_resv0": Reg(EINVAL, set={"area.__resv2[0]": 1}),
    "area_resv1": Reg(EINVAL, set={"area.__resv2[1]": 1}),
    "area_dmabuf_fd_without_flag": Reg(EINVAL, set={"area.dmabuf_fd": 3}),
    "area_addr_null": Reg(EFAULT, set={"area.addr": 0}),
    "area_addr_misaligned": Reg(EINVAL, set={"area.addr": plus(64), "area.len": plus(-PAGE)}),
    "area_len_misaligned": Reg(EINVAL, set={"area.len": plus(-100)}),
    "area_len_0": Reg(EFAULT, set={"area.len": 0}),  # io_validate_user_buf_range
    "area_len_over_1T": Reg(EINVAL, set={"area.len": (1 << 40) + PAGE}),
    "area_addr_wraps": Reg(EOVERFLOW, set={"area.addr": 0xFFFFFFFFFFFFF000, "area.len": 2 * PAGE}),
    "area_unmapped": Reg(EFAULT, set={"area.addr": BAD, "area.len": PAGE}),
    "area_beyond_mapping": Reg(EFAULT, args={"area_mem": GUARDED}),  # last page: a partial pin
    "area_read_only": Reg(EFAULT, args={"area_prot": PROT_READ}),  # FOLL_WRITE pin of read-only memory
    "area_kernel_address": Reg(EFAULT, set={"area.addr": 0xFFFF888000000000, "area.len": PAGE}),
    "event_desc_unmapped": Reg(EFAULT, set={"reg.event_desc": BAD}),
    "event_type_mask_unknown": Reg(EINVAL, set={"ev.type_mask": 1 << 2}),
    "event_flags_unknown": Reg(EINVAL, set={"ev.flags": U.ZCRX_EVENT_DESC_FLAG_STATS | 2}),
    "event_stats_offset_without_flag": Reg(
        EINVAL, args={"stats": False}, set={"reg.event_desc": EVENTS, "ev.stats_offset": 8192}
    ),
    "event_resv0": Reg(EINVAL, set={"ev.__resv2[0]": 1}),
    "event_resv8": Reg(EINVAL, set={"ev.__resv2[8]": 1}),
    "event_mask_copy_ok": Reg(0, args={"event_mask": 1 << U.ZCRX_EVENT_COPY}),
    "stats_misaligned": Reg(EINVAL, args={"stats_offset": PAGE * 2 - 60}),
    "stats_overlaps_rqes": Reg(
        ERANGE, args={"rq_entries": 128, "region_size": PAGE, "stats_offset": 128 + 127 * 16}
    ),
    "stats_right_after_rqes": Reg(
        0, args={"rq_entries": 128, "region_size": 2 * PAGE, "stats_offset": 128 + 128 * 16}
    ),
    "stats_last_16_bytes": Reg(
        0, args={"rq_entries": 128, "region_size": 2 * PAGE, "stats_offset": 2 * PAGE - 16}
    ),
    "stats_past_end": Reg(
        ERANGE, args={"rq_entries": 128, "region_size": 2 * PAGE, "stats_offset": 2 * PAGE - 8}
    ),
    "stats_offset_huge": Reg(ERANGE, args={"stats_offset": 0xFFFFFFFFFFFFFFF8}),  # offset + 16 overflows
    "region_resv": Reg(EINVAL, set={"rd.__resv[3]": 1}),
    "region_flags_unknown": Reg(EINVAL, set={"rd.flags": 2 | U.IORING_MEM_REGION_TYPE_USER}),
    "region_user_flag_addr_null": Reg(EFAULT, set={"rd.user_addr": 0}),
    "region_kernel_with_addr": Reg(EFAULT, set={"rd.flags": 0}),  # user_addr set IFF TYPE_USER
    "region_size_0": Reg(EINVAL, set={"rd.size": 0}),
    "region_mmap_offset_set": Reg(EINVAL, set={"rd.mmap_offset": 0x30000000}),
    "region_id_set": Reg(EINVAL, set={"rd.id": 1}),
    "region_addr_misaligned": Reg(EINVAL, set={"rd.user_addr": plus(64)}),
    "region_size_misaligned": Reg(EINVAL, args={"region_size": 3 * PAGE}, set={"rd.size": 2 * PAGE + 100}),
    "region_unmapped": Reg(
        EFAULT,
        set={"rd.user_addr": BAD, "rd.size": PAGE, "ev.stats_offset": PAGE - 64, "reg.rq_entries": 64},
    ),
    "region_read_only": Reg(EFAULT, args={"region_prot": PROT_READ}),
    "rx_buf_len_page": Reg(0, args={"rx_buf_len": PAGE}),
    "rx_buf_len_2x_page": Reg(EOPNOTSUPP, args={"rx_buf_len": 2 * PAGE}),  # NODEV: only PAGE_SIZE buffers
    "rx_buf_len_2M": Reg(EOPNOTSUPP, args={"rx_buf_len": 2 << 20}),
    "rx_buf_len_half_page": Reg(EINVAL, args={"rx_buf_len": PAGE // 2}),
    "rx_buf_len_not_pow2": Reg(EINVAL, args={"rx_buf_len": PAGE * 3}),
    "nr_args_0": Reg(EINVAL, nr_args=0),
    "nr_args_2": Reg(EINVAL, nr_args=2),
    "arg_null": Reg(EINVAL, null_arg=True),
    "second_ifq_same_ring": Reg(0, prior=1),
}


@pytest.mark.parametrize("case", list(REG))
def test_register_errno(nodev, case):
    """The case's errno; a failure leaves nothing pinned (FOLL_PIN) or accounted (VmPin),
    a success pins and accounts at least its area until the ring closes."""
    got = register(nodev, REG[case])
    assert got.err == REG[case].want, f"got {errname(got.err)}, want {errname(REG[case].want)}"
    if got.err:
        assert nodev.pins() == got.pins, "pages still pinned after a failed registration"
        assert nodev.pinned_vm() == got.pinned_vm, "VmPin still charged after a failed registration"
        return
    area_pages = got.args.area.len // PAGE
    assert nodev.pins() - got.pins >= area_pages
    assert nodev.pinned_vm() - got.pinned_vm >= area_pages * PAGE // 1024
    nodev.close(got.zcrx.ring)
    pins, pinned_vm = got.base
    assert wait_pins(pins)[0] == pins, "pins left after the ring closed"
    assert nodev.pinned_vm() == pinned_vm, "VmPin left after the ring closed"


def test_register_outputs(nodev):
    """Successful NODEV registration fills zcrx_id, offsets, rx_buf_len, area token."""
    _, args, zcrx, *_ = register(nodev, REG["ok"])
    assert args.reg.zcrx_id == 0
    assert args.reg.rx_buf_len == PAGE
    assert args.area.rq_area_token == 0  # area id 0 << IORING_ZCRX_AREA_SHIFT
    off = args.reg.offsets
    assert off.head < off.tail < off.rqes and off.rqes % 16 == 0
    assert args.rd.mmap_offset == 0  # user-provided region: nothing to mmap
    assert (zcrx.head, zcrx.tail) == (0, 0)
    assert zcrx.stats() == {"copy_count": 0, "copy_bytes": 0}


@pytest.mark.parametrize(
    "case,want",
    [
        ("rq_entries_1", 1),
        ("rq_entries_100", 128),
        ("rq_entries_max", 32768),
        ("rq_entries_max_plus1_clamp", 32768),
        ("rq_entries_huge_clamp", 32768),
    ],
)
def test_rq_entries_rounded_and_clamped(nodev, case, want):
    err, args, *_ = register(nodev, REG[case])
    assert err == 0, errname(err)
    assert args.reg.rq_entries == want


def test_second_ifq_on_same_ring_gets_next_id(nodev):
    ring = nodev.ring(8)
    assert ring.register_zcrx().id == 0 and ring.register_zcrx().id == 1


def test_rx_buf_len_reported_back(nodev):
    assert register(nodev, REG["rx_buf_len_page"]).args.reg.rx_buf_len == PAGE
    assert register(nodev, REG["ok"]).args.reg.rx_buf_len == PAGE  # 0 in, PAGE_SIZE out


@pytest.mark.parametrize("method", ["capset", "userns"])
def test_register_needs_cap_net_admin(nodev, method):
    """capable(CAP_NET_ADMIN) in the initial user namespace; a user namespace is not enough."""
    if method == "userns" and not os.path.exists("/proc/self/ns/user"):
        pytest.skip(f"kernel {platform.release()} has no user namespaces (CONFIG_USER_NS)")

    def child():  # forked: exits without the test's undo steps
        if method == "capset":
            drop_cap(CAP_NET_ADMIN)
        else:  # a fresh user namespace: all caps there, none in init_user_ns
            os.unshare(os.CLONE_NEWUSER)
        with Ring(8) as ring:
            return errno_of(ring.register_zcrx)

    assert errno_of(nodev.ring(8).register_zcrx) == 0  # the same registration with the capability
    err = in_child(child)
    assert err == EPERM, errname(err)


def test_register_without_cap_ipc_lock_charged_to_rlimit_memlock(nodev):
    """A ring made without CAP_IPC_LOCK charges what it pins to its user (ctx->user,
    io_account_mem against RLIMIT_MEMLOCK). Limit 32 pages: a 64-page area is refused
    with ENOMEM and nothing stays pinned. Limit 100 pages: one 64-page area registers,
    a second one on another ring is refused while the first is held, and registers once
    the first ring is closed and its ifq freed (the charge goes back)."""
    base = nodev.pins()

    def child(limit_pages):  # forked: the capability and the limit die with it
        drop_cap(CAP_IPC_LOCK)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit_pages * PAGE, limit_pages * PAGE))
        area = dict(rq_entries=64, area_len=64 * PAGE)
        if limit_pages < 64:
            with Ring(8) as ring:
                return [errno_of(ring.register_zcrx, **area)]
        first, second = Ring(8), Ring(8)
        got = [errno_of(first.register_zcrx, **area), errno_of(second.register_zcrx, **area)]
        first.close()
        deadline = time.monotonic() + 15  # the ifq is freed by the ring's exit work
        while (err := errno_of(second.register_zcrx, **area)) == ENOMEM and time.monotonic() < deadline:
            time.sleep(0.1)
        second.close()
        return got + [err]

    low = in_child(child, 32)
    assert low == [ENOMEM], f"limit 32 pages: {list(map(errname, low))}"
    assert wait_pins(base)[0] == base, "the refused area stayed pinned"
    high = in_child(child, 100)
    assert high == [0, ENOMEM, 0], f"limit 100 pages (first, second, again): {list(map(errname, high))}"
    assert wait_pins(base)[0] == base, "pages still pinned after the child exited"


@pytest.mark.parametrize("struct", ["ifq_reg", "region_desc", "area_reg"])
def test_results_unwritable_unwinds_published_ifq(nodev, struct):
    """The registration writes its results back last (io_uring_zcrx_ifq_reg, then the
    region_desc, then the area_reg), after the ifq is set up and published in the
    ring's table. One of them in a read-only page: EFAULT, and everything is undone:
    the area unpinned, VmPin back, the table slot free (the next ifq on the ring gets
    id 0)."""
    ring = nodev.ring(8)
    args = ZcrxArgs(rq_entries=64, area_len=64 * PAGE)
    defer(args.close)
    page = nodev.mem(PAGE)
    obj = {"ifq_reg": args.reg, "region_desc": args.rd, "area_reg": args.area}[struct]
    ctypes.memmove(page.addr, ctypes.addressof(obj), ctypes.sizeof(obj))
    if struct == "region_desc":
        args.reg.region_ptr = page.addr
    elif struct == "area_reg":
        args.reg.area_ptr = page.addr
    page.protect(PROT_READ)
    arg = page.addr if struct == "ifq_reg" else args.reg
    pins, pinned_vm = nodev.pins(), nodev.pinned_vm()
    err = errno_of(ring.register, U.IORING_REGISTER_ZCRX_IFQ, arg)
    assert err == EFAULT, errname(err)
    assert wait_pins(pins)[0] == pins, "the area stayed pinned"
    assert nodev.pinned_vm() == pinned_vm, "VmPin still charged"
    assert ring.register_zcrx(rq_entries=64, area_len=64 * PAGE).id == 0, "the ifq's table slot stayed taken"


def zcrx_region_offset(zcrx_id):
    """The mmap offset of ifq zcrx_id's kernel-allocated refill region."""
    return U.IORING_MAP_OFF_ZCRX_REGION + (zcrx_id << U.IORING_OFF_ZCRX_SHIFT)


def test_kernel_region_mmap_offset(nodev):
    ring = nodev.ring(8)
    zcrx = ring.register_zcrx(region="kernel", rq_entries=64)
    rd = zcrx.args.rd
    assert rd.mmap_offset == zcrx_region_offset(zcrx.id) == 0x30000000  # ZCRX_REGION, id 0
    assert (zcrx.head, zcrx.tail) == (0, 0)
    # the kernel's view and ours are the same memory: write tail, read it through a 2nd map
    alias = mmap(rd.size, PROT_READ | PROT_WRITE, MAP_SHARED, ring.fd, rd.mmap_offset)
    defer(munmap, alias, rd.size)
    zcrx.ktail.value = 5
    alias_tail = ctypes.c_uint32.from_address(alias + zcrx.reg.offsets.tail).value
    zcrx.ktail.value = 0
    assert alias_tail == 5, "two mappings of the region must share memory"
    second = ring.register_zcrx(region="kernel", rq_entries=64)
    assert second.id == 1 and second.args.rd.mmap_offset == 0x30000000 + (1 << 16)


@pytest.mark.parametrize("what", ["mmap_unknown_id_errno", "mmap_user_region_errno"])
def test_region_mmap_refused(nodev, what):
    """No region behind the offset, or a user-provided region: mmap fails with EINVAL."""
    ring = nodev.ring(8)
    ring.register_zcrx(region="kernel", rq_entries=64)  # ifq 0: a region the kernel can map
    if what == "mmap_unknown_id_errno":
        offset = zcrx_region_offset(7)
    else:
        offset = ring.register_zcrx(region="user", rq_entries=64).mmap_offset()
    err = errno_of(mmap, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ring.fd, offset)
    assert err == EINVAL, errname(err)


@pytest.mark.parametrize("region", ["user", "kernel"])
def test_refill_headers_zeroed_at_registration(nodev, region):
    """A user region is pre-filled with 0xff: registration resets head, tail and stats."""
    ring = nodev.ring(8)
    args = ZcrxArgs(rq_entries=64, region=region)
    defer(args.close)
    if region == "user":
        ctypes.memset(args.region_mem.addr, 0xFF, args.region_size)
    zcrx = ring.register_zcrx(args)
    assert (zcrx.head, zcrx.tail) == (0, 0)
    assert zcrx.stats() == {"copy_count": 0, "copy_bytes": 0}
    if region == "kernel":
        rqes = ctypes.string_at(zcrx.rqes, 16 * zcrx.rq_entries)
        assert not any(rqes), "kernel-allocated region must start zeroed"


FLUSH, EXPORT = U.ZCRX_CTRL_FLUSH_RQ, U.ZCRX_CTRL_EXPORT
ARM, ADD_AREA = U.ZCRX_CTRL_ARM_EVENT, U.ZCRX_CTRL_ADD_AREA

# IORING_REGISTER_ZCRX_CTRL on an ifq (COPY and ALLOC_FAIL events in its mask):
# name -> (errno, op, zcrx_ctrl fields); "area": an io_uring_zcrx_area_reg over 4 fresh
# pages with these fields changed, passed as zc_area.area_ptr
CTRL = {
    "flush_ok": (0, FLUSH, {}),
    "nr_args_1": (EINVAL, FLUSH, {"nr_args": 1}),
    "ctrl_resv0": (EFAULT, FLUSH, {"__resv": [1, 0]}),  # zcrx_ctrl.__resv: EFAULT, not EINVAL, in 7.3
    "ctrl_resv1": (EFAULT, FLUSH, {"__resv": [0, 1]}),
    "unknown_zcrx_id": (ENXIO, FLUSH, {"zcrx_id": 5}),
    "unknown_op": (EOPNOTSUPP, 4, {}),
    "op_huge": (EOPNOTSUPP, 0xFFFFFFFF, {}),
    "flush_resv": (EINVAL, FLUSH, {"zc_flush.__resv": [0, 0, 0, 0, 0, 1]}),
    "export_resv": (EINVAL, EXPORT, {"zc_export.__resv1": [0] * 10 + [1]}),
    "export_fd_preset": (EINVAL, EXPORT, {"zc_export.zcrx_fd": 3}),
    "arm_type_out_of_range": (EINVAL, ARM, {"zc_arm_event.event_type": 2}),
    "arm_resv": (EINVAL, ARM, {"zc_arm_event.event_type": 1, "zc_arm_event.__resv": [1]}),
    "arm_copy_not_fired": (EINVAL, ARM, {"zc_arm_event.event_type": U.ZCRX_EVENT_COPY}),
    "arm_alloc_fail_not_fired": (EINVAL, ARM, {"zc_arm_event.event_type": U.ZCRX_EVENT_ALLOC_FAIL}),
    "add_area_ptr_unmapped": (EFAULT, ADD_AREA, {"zc_area.area_ptr": BAD}),
    "add_area_resv": (EINVAL, ADD_AREA, {"area": {"addr": 0, "len": 0}, "zc_area.__resv": [0, 0, 0, 0, 1]}),
    "add_area_token_set": (EINVAL, ADD_AREA, {"area": {"rq_area_token": 1 << 48}}),
    "add_area_len_0": (EFAULT, ADD_AREA, {"area": {"len": 0}}),
    "add_area_misaligned": (EINVAL, ADD_AREA, {"area": {"addr": plus(64), "len": PAGE}}),
    "add_area_flags_unknown": (EINVAL, ADD_AREA, {"area": {"flags": 4}}),
    "add_area_dmabuf": (EINVAL, ADD_AREA, {"area": {"flags": U.IORING_ZCRX_AREA_DMABUF}}),
    "add_area_unmapped": (EFAULT, ADD_AREA, {"area": {"addr": BAD, "len": PAGE}}),
    "add_area_ok": (0, ADD_AREA, {"area": {}}),
}


def ctrl_ifq(nodev):
    ring = nodev.ring(8)
    return ring.register_zcrx(event_mask=(1 << U.ZCRX_EVENT_COPY) | (1 << U.ZCRX_EVENT_ALLOC_FAIL))


def ctrl(nodev, zcrx, case):
    """Issue CTRL[case] on zcrx: (errno, the area_reg it passed or None)."""
    _, op, fields = CTRL[case]
    fields, area = dict(fields), None
    late = {BAD: nodev.inaccessible()}
    if "area" in fields:
        mem = nodev.mem(4 * PAGE)
        area = U.io_uring_zcrx_area_reg(addr=mem.addr, len=mem.size)
        put(area, fields.pop("area"), late)
        fields["zc_area.area_ptr"] = ctypes.addressof(area)
    fields = {name: resolve(value, late) for name, value in fields.items()}
    return errno_of(zcrx.ctrl, op, **fields), area


@pytest.mark.parametrize("case", list(CTRL))
def test_ctrl_errno(nodev, case):
    err, _ = ctrl(nodev, ctrl_ifq(nodev), case)
    assert err == CTRL[case][0], f"got {errname(err)}, want {errname(CTRL[case][0])}"


def test_add_area_failures_do_not_consume_area_ids(nodev):
    """ADD_AREA copies the next token out before creating the area; failed attempts
    must not use up ids: after every failing case of CTRL, the first successful
    ADD_AREA is area 1."""
    zcrx = ctrl_ifq(nodev)
    areas = {case: ctrl(nodev, zcrx, case)[1] for case in CTRL}
    assert areas["add_area_ok"].rq_area_token == 1 << 48
    assert areas["add_area_len_0"].rq_area_token == 1 << 48  # written back although it failed


def test_max_areas(nodev):
    """ZCRX_MAX_AREAS (1024) areas with sequential ids, then EINVAL."""
    ring = nodev.ring(8)
    zcrx = ring.register_zcrx(area_len=PAGE, rq_entries=16)
    page = nodev.mem(PAGE)  # the same page can back many areas
    tokens = [zcrx.area.token]
    for _ in range(U.ZCRX_MAX_AREAS + 1):
        area = U.io_uring_zcrx_area_reg(addr=page.addr, len=PAGE)
        err = errno_of(zcrx.ctrl, ADD_AREA, **{"zc_area.area_ptr": ctypes.addressof(area)})
        if err:
            break
        tokens.append(area.rq_area_token)
    assert len(tokens) == 1024
    assert [token >> U.IORING_ZCRX_AREA_SHIFT for token in tokens] == list(range(len(tokens)))
    assert [token for token in tokens if token & ~U.IORING_ZCRX_AREA_MASK] == []
    assert err == EINVAL, errname(err)


@pytest.mark.parametrize("region", ["user", "kernel"])
def test_pins_while_registered(nodev, region):
    """FOLL_PIN counts: area pages (+ user region pages), + ADD_AREA pages; all released."""
    base = nodev.pins()
    ring = nodev.ring(8)
    zcrx = ring.register_zcrx(area_len=64 * PAGE, region=region, rq_entries=64)
    region_pages = zcrx.args.rd.size // PAGE if region == "user" else 0
    during = nodev.pins() - base
    assert during == 64 + region_pages
    zcrx.add_area(16 * PAGE)
    assert nodev.pins() - base == during + 16
    nodev.close(ring)
    assert wait_pins(base)[0] - base == 0


def test_hugetlb_area(nodev):
    """A 2 MiB hugetlb page as the area: every 4 KiB page is pinned (FOLL_PIN counts per
    page), NODEV still uses 4 KiB buffers, data is intact, pins are released."""
    if not os.path.exists("/proc/sys/vm/nr_hugepages"):
        pytest.skip(f"kernel {platform.release()} has no hugetlb pages (CONFIG_HUGETLBFS)")
    if not sysctl.reserve_hugepages(2):
        pytest.skip(f"could not reserve 2 huge pages (nr_hugepages {sysctl.read('vm.nr_hugepages')})")
    base = nodev.pins()
    try:
        area = nodev.mem(2 << 20, hugetlb=True)
    except OSError as exc:
        pytest.skip(f"MAP_HUGETLB failed: {exc}")
    ring = nodev.ring(16, cq_entries=4096)
    zcrx = ring.register_zcrx(ZcrxArgs(area_mem=area, rq_entries=256))
    assert nodev.pins() - base == 512 + zcrx.args.rd.size // PAGE
    res, intact = nodev.receive(ring, zcrx, 1 << 20, seed=61)
    assert intact and len(res.data) == 1 << 20
    summary = res.summary(zcrx)
    assert summary["off_page_misaligned"] == 0 and summary["outside_area"] == 0
    nodev.close(ring)
    assert wait_pins(base)[0] - base == 0
