"""Guest-side zcrx scenarios that need no netdev (ZCRX_REG_NODEV, loopback TCP).

Each public function returns observations (errnos, byte counts, CQE fields,
counters); the host-side tests in guest_tests/test_nodev_*.py judge them.
"""

import ctypes
import errno
import os
import platform
import socket

from guest_tests.zcrx import PAGE_SIZE, Mem, Ring, ZcrxArgs, layout
from guest_tests.zcrx import uapi as U
from guest_tests.zcrx.mem import MAP_SHARED, PROT_READ, libc, mmap, munmap
from guest_tests.zcrx.util import (
    CAP_NET_ADMIN,
    Sender,
    drop_cap,
    errno_of,
    has_cap_eff,
    in_child,
    pattern,
    pinned_pages,
    recv_zc,
    tcp_pair,
    wait_pins,
)

DEFER = U.IORING_SETUP_DEFER_TASKRUN | U.IORING_SETUP_SINGLE_ISSUER
RING_FLAGS = {
    "zcrx": U.ZCRX_RING_FLAGS,
    "mixed": DEFER | U.IORING_SETUP_CQE_MIXED,
    "clamp": U.ZCRX_RING_FLAGS | U.IORING_SETUP_CLAMP,
    "plain": 0,
    "no_defer": U.IORING_SETUP_SINGLE_ISSUER | U.IORING_SETUP_CQE32,
    "no_cqe32": DEFER,
    "coop_cqe32": U.IORING_SETUP_COOP_TASKRUN | U.IORING_SETUP_CQE32,
}


def env():
    return {
        "release": platform.release(),
        "page_size": PAGE_SIZE,
        "uid": os.getuid(),
        "cap_net_admin": has_cap_eff(CAP_NET_ADMIN),
        "pins": pinned_pages(),
    }


def layout_check():
    return layout.check()


# --------------------------------------------------------------------------------------
# registration: one case = one fresh ring + one IORING_REGISTER_ZCRX_IFQ


def _out(args, z=None):
    r = args.reg
    o = {
        "rq_entries": r.rq_entries,
        "rx_buf_len": r.rx_buf_len,
        "zcrx_id": r.zcrx_id,
        "offsets": {
            "head": r.offsets.head,
            "tail": r.offsets.tail,
            "rqes": r.offsets.rqes,
            "resv2": getattr(r.offsets, "__resv2"),
        },
        "area_token": args.area.rq_area_token,
        "mmap_offset": args.rd.mmap_offset,
        "region_size": args.rd.size,
    }
    if z is not None:
        o["head"], o["tail"] = z.head, z.tail
        o["stats"] = z.stats()
    return o


def _set(obj, path, value):
    """Set obj.a.b or obj.arr[i] ('__resv[1]') on ctypes structs."""
    *parents, last = path.split(".")
    for p in parents:
        obj = getattr(obj, p)
    if last.endswith("]"):
        name, idx = last[:-1].split("[")
        getattr(obj, name)[int(idx)] = value
    else:
        setattr(obj, last, value)


_GUARD = []


def _bad_ptr():
    """An inaccessible user address: a PROT_NONE page kept mapped (so nothing else lands there)."""
    if not _GUARD:
        _GUARD.append(Mem(PAGE_SIZE, prot=0, populate=False))
    return _GUARD[0].addr


# name -> (ring flags key, ZcrxArgs kwargs, {struct path: value} mutations, special)
REG_CASES = {
    "ok": ("zcrx", {}, {}),
    "ok_kernel_region": ("zcrx", {"region": "kernel"}, {}),
    "ok_no_stats": ("zcrx", {"stats": False}, {}),
    "ok_cqe_mixed": ("mixed", {}, {}),
    "ring_plain": ("plain", {}, {}),
    "ring_no_defer_taskrun": ("no_defer", {}, {}),
    "ring_no_cqe32": ("no_cqe32", {}, {}),
    "ring_coop_taskrun_cqe32": ("coop_cqe32", {}, {}),
    "flags_unknown_bit2": ("zcrx", {}, {"reg.flags": U.ZCRX_REG_NODEV | 4}),
    "flags_unknown_bit31": ("zcrx", {}, {"reg.flags": U.ZCRX_REG_NODEV | 1 << 31}),
    "reg_resv0": ("zcrx", {}, {"reg.__resv[0]": 1}),
    "reg_resv1": ("zcrx", {}, {"reg.__resv[1]": 1}),
    "reg_zcrx_id_set": ("zcrx", {}, {"reg.zcrx_id": 1}),
    "reg_offsets_resv_set": ("zcrx", {}, {"reg.offsets.__resv[0]": 1, "reg.offsets.head": 7}),
    "region_ptr_null": ("zcrx", {}, {"reg.region_ptr": 0}),
    "region_ptr_unmapped": ("zcrx", {}, {"reg.region_ptr": "BADPTR"}),
    "if_rxq_minus1": ("zcrx", {}, {"reg.if_rxq": 0xFFFFFFFF}),
    "nodev_if_idx_set": ("zcrx", {}, {"reg.if_idx": 1}),
    "nodev_if_rxq_set": ("zcrx", {}, {"reg.if_rxq": 1}),
    "netdev_if_idx_0": ("zcrx", {"nodev": False}, {}),
    "netdev_if_idx_missing": ("zcrx", {"nodev": False, "if_idx": 0x7FFFFFF0}, {}),
    "netdev_loopback": ("zcrx", {"nodev": False, "if_idx": "lo"}, {}),
    "rq_entries_0": ("zcrx", {}, {"reg.rq_entries": 0}),
    "rq_entries_1": ("zcrx", {"rq_entries": 1}, {}),
    "rq_entries_100": ("zcrx", {"rq_entries": 100}, {}),
    "rq_entries_max": ("zcrx", {"rq_entries": U.IO_RQ_MAX_ENTRIES}, {}),
    "rq_entries_max_plus1": (
        "zcrx",
        {"rq_entries": U.IO_RQ_MAX_ENTRIES},
        {"reg.rq_entries": U.IO_RQ_MAX_ENTRIES + 1},
    ),
    "rq_entries_max_plus1_clamp": (
        "clamp",
        {"rq_entries": U.IO_RQ_MAX_ENTRIES},
        {"reg.rq_entries": U.IO_RQ_MAX_ENTRIES + 1},
    ),
    "rq_entries_huge_clamp": ("clamp", {"rq_entries": U.IO_RQ_MAX_ENTRIES}, {"reg.rq_entries": 0x80000001}),
    "rq_region_too_small": ("zcrx", {"rq_entries": 512, "stats": False, "region_size": PAGE_SIZE}, {}),
    # 128 + 248 * 16 == 4096 fits one page, but the kernel rounds 248 up to 256 first
    "rq_entries_248_rounded_exceeds_region": (
        "zcrx",
        {"rq_entries": 248, "stats": False, "region_size": PAGE_SIZE},
        {"reg.rq_entries": 248},
    ),
    "rq_entries_128_one_page_region": (
        "zcrx",
        {"rq_entries": 128, "stats": False, "region_size": PAGE_SIZE},
        {},
    ),
    "area_ptr_null": ("zcrx", {}, {"reg.area_ptr": 0}),
    "area_ptr_unmapped": ("zcrx", {}, {"reg.area_ptr": "BADPTR"}),
    "area_token_set": ("zcrx", {}, {"area.rq_area_token": 1 << 48}),
    "area_flags_unknown": ("zcrx", {}, {"area.flags": 2}),
    "area_flags_dmabuf": ("zcrx", {}, {"area.flags": U.IORING_ZCRX_AREA_DMABUF}),
    "area_resv0": ("zcrx", {}, {"area.__resv2[0]": 1}),
    "area_resv1": ("zcrx", {}, {"area.__resv2[1]": 1}),
    "area_dmabuf_fd_without_flag": ("zcrx", {}, {"area.dmabuf_fd": 3}),
    "area_addr_null": ("zcrx", {}, {"area.addr": 0}),
    "area_addr_misaligned": ("zcrx", {}, {"area.addr": "+64", "area.len": "-4096"}),
    "area_len_misaligned": ("zcrx", {}, {"area.len": "-100"}),
    "area_len_0": ("zcrx", {}, {"area.len": 0}),
    "area_len_over_1T": ("zcrx", {}, {"area.len": (1 << 40) + PAGE_SIZE}),
    "area_addr_wraps": ("zcrx", {}, {"area.addr": 0xFFFFFFFFFFFFF000, "area.len": 2 * PAGE_SIZE}),
    "area_unmapped": ("zcrx", {}, {"area.addr": "BADPTR", "area.len": PAGE_SIZE}),
    "area_beyond_mapping": ("zcrx", {}, {"area.len": "+4096"}, "guard"),
    "area_read_only": ("zcrx", {"area_readonly": True}, {}),
    "area_kernel_address": ("zcrx", {}, {"area.addr": 0xFFFF888000000000, "area.len": PAGE_SIZE}),
    "event_desc_unmapped": ("zcrx", {}, {"reg.event_desc": "BADPTR"}),
    "event_type_mask_unknown": ("zcrx", {}, {"ev.type_mask": 1 << 2}),
    "event_flags_unknown": ("zcrx", {}, {"ev.flags": U.ZCRX_EVENT_DESC_FLAG_STATS | 2}),
    "event_stats_offset_without_flag": (
        "zcrx",
        {"stats": False},
        {"reg.event_desc": "EV", "ev.stats_offset": 8192},
    ),
    "event_resv0": ("zcrx", {}, {"ev.__resv2[0]": 1}),
    "event_resv8": ("zcrx", {}, {"ev.__resv2[8]": 1}),
    "event_mask_copy_ok": ("zcrx", {"event_mask": 1 << U.ZCRX_EVENT_COPY}, {}),
    "stats_misaligned": ("zcrx", {"stats_offset": PAGE_SIZE * 2 - 60}, {}),
    "stats_overlaps_rqes": (
        "zcrx",
        {"rq_entries": 128, "region_size": PAGE_SIZE, "stats_offset": 128 + 127 * 16},
        {},
    ),
    "stats_right_after_rqes": (
        "zcrx",
        {"rq_entries": 128, "region_size": 2 * PAGE_SIZE, "stats_offset": 128 + 128 * 16},
        {},
    ),
    "stats_last_16_bytes": (
        "zcrx",
        {"rq_entries": 128, "region_size": 2 * PAGE_SIZE, "stats_offset": 2 * PAGE_SIZE - 16},
        {},
    ),
    "stats_past_end": (
        "zcrx",
        {"rq_entries": 128, "region_size": 2 * PAGE_SIZE, "stats_offset": 2 * PAGE_SIZE - 8},
        {},
    ),
    "stats_offset_huge": ("zcrx", {"stats_offset": 0xFFFFFFFFFFFFFFF8}, {}),
    "region_resv": ("zcrx", {}, {"rd.__resv[3]": 1}),
    "region_flags_unknown": ("zcrx", {}, {"rd.flags": 2 | U.IORING_MEM_REGION_TYPE_USER}),
    "region_user_flag_addr_null": ("zcrx", {}, {"rd.user_addr": 0}),
    "region_kernel_with_addr": ("zcrx", {}, {"rd.flags": 0}),
    "region_size_0": ("zcrx", {}, {"rd.size": 0}),
    "region_mmap_offset_set": ("zcrx", {}, {"rd.mmap_offset": 0x30000000}),
    "region_id_set": ("zcrx", {}, {"rd.id": 1}),
    "region_addr_misaligned": ("zcrx", {}, {"rd.user_addr": "+64"}),
    "region_size_misaligned": ("zcrx", {"region_size": 3 * PAGE_SIZE}, {"rd.size": 2 * PAGE_SIZE + 100}),
    "region_unmapped": (
        "zcrx",
        {},
        {
            "rd.user_addr": "BADPTR",
            "rd.size": PAGE_SIZE,
            "ev.stats_offset": PAGE_SIZE - 64,
            "reg.rq_entries": 64,
        },
    ),
    "region_read_only": ("zcrx", {"region_readonly": True}, {}),
    "rx_buf_len_page": ("zcrx", {"rx_buf_len": PAGE_SIZE}, {}),
    "rx_buf_len_2x_page": ("zcrx", {"rx_buf_len": 2 * PAGE_SIZE}, {}),
    "rx_buf_len_2M": ("zcrx", {"rx_buf_len": 2 << 20}, {}),
    "rx_buf_len_half_page": ("zcrx", {"rx_buf_len": PAGE_SIZE // 2}, {}),
    "rx_buf_len_not_pow2": ("zcrx", {"rx_buf_len": PAGE_SIZE * 3}, {}),
    "nr_args_0": ("zcrx", {}, {}, "nr_args=0"),
    "nr_args_2": ("zcrx", {}, {}, "nr_args=2"),
    "arg_null": ("zcrx", {}, {}, "arg=null"),
    "second_ifq_same_ring": ("zcrx", {}, {}, "twice"),
}


def _ifindex(name):
    return socket.if_nametoindex(name)


def reg_case(name):
    flags_key, kw, muts, *special = REG_CASES[name]
    special = special[0] if special else ""
    kw = dict(kw)
    ro_area, ro_region = kw.pop("area_readonly", False), kw.pop("region_readonly", False)
    if kw.get("if_idx") == "lo":
        kw["if_idx"] = _ifindex("lo")
    ring = None
    try:
        ring = Ring(8, RING_FLAGS[flags_key])
    except OSError as e:
        return {"errno": None, "setup_errno": e.errno}
    args = ZcrxArgs(**kw)
    try:
        if special == "guard":  # the page after the area: mapped, then inaccessible
            size = args.area.len
            g = Mem(size + PAGE_SIZE)
            args.area_mem.close()
            libc.mprotect(g.addr + size, PAGE_SIZE, 0)
            args.area_mem = g
            args.area.addr = g.addr
        if ro_area:
            args.area_mem.protect(PROT_READ)
        if ro_region:
            args.region_mem.protect(PROT_READ)
        for path, v in muts.items():
            cur = _get(args, path)
            if v == "BADPTR":
                v = _bad_ptr()
            elif v == "EV":
                v = ctypes.addressof(args.ev)
            elif isinstance(v, str):  # relative change
                v = cur + int(v)
            _set(args, path, v)
        arg, nr = args.reg, 1
        if special == "nr_args=0":
            nr = 0
        elif special == "nr_args=2":
            nr = 2
        elif special == "arg=null":
            arg = 0
        try:
            ring.register(U.IORING_REGISTER_ZCRX_IFQ, arg, nr)
        except OSError as e:
            # what the kernel wrote back even on failure (e.g. area token)
            return {"errno": e.errno, "out": _out(args)}
        from guest_tests.zcrx.ifq import Zcrx

        z = Zcrx(ring, args)
        ring.zcrx.append(z)
        res = {"errno": 0, "out": _out(args, z)}
        if special == "twice":
            args2 = ZcrxArgs()
            ring.register(U.IORING_REGISTER_ZCRX_IFQ, args2.reg)
            res["second"] = _out(args2)
        return res
    finally:
        ring.close()
        args.close()


def _get(args, path):
    obj = args
    *parents, last = path.split(".")
    for p in parents:
        obj = getattr(obj, p)
    if last.endswith("]"):
        n, i = last[:-1].split("[")
        return getattr(obj, n)[int(i)]
    return getattr(obj, last)


def reg_cases(names=None):
    """Run registration cases; returns {name: observation}."""
    return {n: reg_case(n) for n in (names or REG_CASES)}


def reg_without_cap(method="capset"):
    """Register from a process lacking CAP_NET_ADMIN in the initial user namespace."""

    def child():
        if method == "capset":
            drop_cap(CAP_NET_ADMIN)
        else:  # a fresh user namespace: all caps there, none in init_user_ns
            os.unshare(os.CLONE_NEWUSER)
        with Ring(8) as ring:
            args = ZcrxArgs()
            e = errno_of(ring.register, U.IORING_REGISTER_ZCRX_IFQ, args.reg)
            return {"errno": e, "cap_net_admin": has_cap_eff(CAP_NET_ADMIN)}

    parent_e = None
    with Ring(8) as ring:  # the same registration with the capability, for contrast
        parent_e = errno_of(ring.register_zcrx)
    res = in_child(child)
    res["errno_with_cap"] = parent_e
    return res


# --------------------------------------------------------------------------------------
# refill region: kernel-allocated mapping, headers


def region_mmap():
    out = {}
    with Ring(8) as ring:
        z = ring.register_zcrx(region="kernel", rq_entries=64)
        rd = z.args.rd
        out["mmap_offset"] = rd.mmap_offset
        out["expected_offset"] = U.IORING_MAP_OFF_ZCRX_REGION + (z.id << U.IORING_OFF_ZCRX_SHIFT)
        out["head"], out["tail"] = z.head, z.tail
        # the kernel's view and ours are the same memory: write tail, see it via 2nd map
        p2 = mmap(rd.size, 3, MAP_SHARED, ring.fd, rd.mmap_offset)
        ctypes.c_uint32.from_address(z.region + z.reg.offsets.tail).value = 5
        out["alias_tail"] = ctypes.c_uint32.from_address(p2 + z.reg.offsets.tail).value
        ctypes.c_uint32.from_address(z.region + z.reg.offsets.tail).value = 0
        munmap(p2, rd.size)
        # a second ifq gets id 1 and its own offset
        z2 = ring.register_zcrx(region="kernel", rq_entries=64)
        out["second_id"], out["second_offset"] = z2.id, z2.args.rd.mmap_offset
        # mapping errors
        out["mmap_unknown_id_errno"] = errno_of(
            mmap,
            PAGE_SIZE,
            3,
            MAP_SHARED,
            ring.fd,
            U.IORING_MAP_OFF_ZCRX_REGION + (7 << U.IORING_OFF_ZCRX_SHIFT),
        )
        z3 = ring.register_zcrx(region="user", rq_entries=64)
        out["mmap_user_region_errno"] = errno_of(mmap, PAGE_SIZE, 3, MAP_SHARED, ring.fd, z3.mmap_offset())
        out["third_id"] = z3.id
        out["mmap_too_big_errno"] = errno_of(
            mmap, rd.size + 4 * PAGE_SIZE, 3, MAP_SHARED, ring.fd, rd.mmap_offset
        )
        z.unmap()
    return out


def headers_zeroed(region="user"):
    """Pre-fill the refill region with 0xff; what does registration reset?"""
    with Ring(8) as ring:
        if region == "user":
            args = ZcrxArgs(rq_entries=64, region="user")
            ctypes.memset(args.region_mem.addr, 0xFF, args.region_size)
            z = ring.register_zcrx(args)
        else:
            z = ring.register_zcrx(region="kernel", rq_entries=64)
        rqe0 = U.io_uring_zcrx_rqe.from_address(z.rqes)
        rqe_bytes = ctypes.string_at(z.rqes, 16 * z.rq_entries)
        return {
            "head": z.head,
            "tail": z.tail,
            "stats": z.stats(),
            "rqe0_off": rqe0.off,
            "rqes_all_ff": rqe_bytes == b"\xff" * len(rqe_bytes),
            "rqes_all_zero": rqe_bytes == bytes(len(rqe_bytes)),
        }


# --------------------------------------------------------------------------------------
# ctrl ops


def ctrl_errors():
    out = {}
    with Ring(8) as ring:
        z = ring.register_zcrx(event_mask=(1 << U.ZCRX_EVENT_COPY) | (1 << U.ZCRX_EVENT_ALLOC_FAIL))
        e = lambda *a, **k: errno_of(z.ctrl, *a, **k)  # noqa: E731
        out["flush_ok"] = e(U.ZCRX_CTRL_FLUSH_RQ)
        out["nr_args_1"] = e(U.ZCRX_CTRL_FLUSH_RQ, nr_args=1)
        out["ctrl_resv0"] = e(U.ZCRX_CTRL_FLUSH_RQ, **{"__resv": [1, 0]})
        out["ctrl_resv1"] = e(U.ZCRX_CTRL_FLUSH_RQ, **{"__resv": [0, 1]})
        out["unknown_zcrx_id"] = e(U.ZCRX_CTRL_FLUSH_RQ, zcrx_id=5)
        out["unknown_op"] = e(4)
        out["op_huge"] = e(0xFFFFFFFF)
        out["flush_resv"] = e(U.ZCRX_CTRL_FLUSH_RQ, **{"zc_flush.__resv": [0, 0, 0, 0, 0, 1]})
        out["export_resv"] = e(U.ZCRX_CTRL_EXPORT, **{"zc_export.__resv1": [0] * 10 + [1]})
        out["export_fd_preset"] = e(U.ZCRX_CTRL_EXPORT, **{"zc_export.zcrx_fd": 3})
        out["arm_type_out_of_range"] = e(U.ZCRX_CTRL_ARM_EVENT, **{"zc_arm_event.event_type": 2})
        out["arm_resv"] = e(
            U.ZCRX_CTRL_ARM_EVENT, **{"zc_arm_event.event_type": 1, "zc_arm_event.__resv": [1]}
        )
        out["arm_copy_not_fired"] = e(U.ZCRX_CTRL_ARM_EVENT, **{"zc_arm_event.event_type": U.ZCRX_EVENT_COPY})
        out["arm_alloc_fail_not_fired"] = e(
            U.ZCRX_CTRL_ARM_EVENT, **{"zc_arm_event.event_type": U.ZCRX_EVENT_ALLOC_FAIL}
        )
        bad = _bad_ptr()
        out["add_area_ptr_unmapped"] = e(U.ZCRX_CTRL_ADD_AREA, **{"zc_area.area_ptr": bad})
        out["add_area_resv"] = e(
            U.ZCRX_CTRL_ADD_AREA,
            **{
                "zc_area.area_ptr": ctypes.addressof(U.io_uring_zcrx_area_reg()),
                "zc_area.__resv": [0, 0, 0, 0, 1],
            },
        )
        m = Mem(4 * PAGE_SIZE)
        for name, fields in {
            "add_area_token_set": {"rq_area_token": 1 << 48},
            "add_area_len_0": {"len": 0},
            "add_area_misaligned": {"addr": m.addr + 64, "len": PAGE_SIZE},
            "add_area_flags_unknown": {"flags": 4},
            "add_area_dmabuf": {"flags": U.IORING_ZCRX_AREA_DMABUF},
            "add_area_unmapped": {"addr": bad, "len": PAGE_SIZE},
        }.items():
            a = U.io_uring_zcrx_area_reg(addr=m.addr, len=m.size)
            for k, v in fields.items():
                setattr(a, k, v)
            out[name] = e(U.ZCRX_CTRL_ADD_AREA, **{"zc_area.area_ptr": ctypes.addressof(a)})
            out[name + "_token_written"] = a.rq_area_token
        a = U.io_uring_zcrx_area_reg(addr=m.addr, len=m.size)
        out["add_area_ok"] = e(U.ZCRX_CTRL_ADD_AREA, **{"zc_area.area_ptr": ctypes.addressof(a)})
        out["add_area_ok_token"] = a.rq_area_token
    return out


def export_import():
    """Export an ifq, import it into another ring, close the exporter, receive."""
    out = {"pins_base": pinned_pages()}
    ring_a = Ring(8)
    args = ZcrxArgs(rq_entries=64, region="kernel", area_len=64 * PAGE_SIZE)
    za = ring_a.register_zcrx(args)
    fd = za.export()
    out["export_fd_ok"] = fd > 2
    out["fd_cloexec"] = bool(__import__("fcntl").fcntl(fd, __import__("fcntl").F_GETFD) & 1)
    out["fd_link"] = os.readlink(f"/proc/self/fd/{fd}")
    ring_b = Ring(8, cq_entries=512)
    # import validation
    e = {}
    r, w = os.pipe()
    for name, fields in {
        "import_bad_fd": {"if_idx": 9999},
        "import_pipe_fd": {"if_idx": r},
        "import_ring_fd": {"if_idx": ring_a.fd},
        "import_with_rq_entries": {"if_idx": fd, "rq_entries": 64},
        "import_with_if_rxq": {"if_idx": fd, "if_rxq": 1},
        "import_with_area_ptr": {"if_idx": fd, "area_ptr": ctypes.addressof(args.area)},
        "import_with_region_ptr": {"if_idx": fd, "region_ptr": ctypes.addressof(args.rd)},
        "import_with_event_desc": {"if_idx": fd, "event_desc": ctypes.addressof(args.ev)},
        "import_with_nodev_flag": {"if_idx": fd, "flags": U.ZCRX_REG_IMPORT | U.ZCRX_REG_NODEV},
        "import_with_resv": {"if_idx": fd, "__resv": [1, 0]},
    }.items():
        reg = U.io_uring_zcrx_ifq_reg(flags=U.ZCRX_REG_IMPORT)
        for k, v in fields.items():
            if isinstance(v, list):
                getattr(reg, k)[0] = v[0]
            else:
                setattr(reg, k, v)
        e[name] = errno_of(ring_b.register, U.IORING_REGISTER_ZCRX_IFQ, reg)
    os.close(r)
    os.close(w)
    with Ring(8, RING_FLAGS["no_defer"]) as rnd:
        e["import_ring_no_defer"] = errno_of(rnd.import_zcrx, fd)
    with Ring(8, RING_FLAGS["mixed"]) as rm:
        e["import_ring_cqe_mixed"] = errno_of(rm.import_zcrx, fd)
    out["errnos"] = e
    zb = ring_b.import_zcrx(fd, areas=za.areas)
    out["import_id"] = zb.id
    out["import_offsets"] = {
        "head": zb.reg.offsets.head,
        "tail": zb.reg.offsets.tail,
        "rqes": zb.reg.offsets.rqes,
    }
    out["import_rq_entries_out"] = zb.reg.rq_entries
    zb.attach_region(za.rq_entries, args.rd.size, stats_offset=args.ev.stats_offset)
    out["import_region_same_memory"] = ctypes.string_at(zb.region, 64) == ctypes.string_at(za.region, 64)
    os.close(fd)  # the import holds its own reference
    za.unmap()
    ring_a.close()  # exporter gone
    snd, rcv = tcp_pair()
    data = pattern(300_000, seed=7)
    s = Sender(snd, data)
    res = recv_zc(ring_b, zb, rcv.fileno(), rearm_on_error=(-errno.ENOMEM,))
    s.join()
    out["recv"] = res.summary(zb)
    out["recv"]["match"] = bytes(res.data) == data
    out["pins_while_imported"] = pinned_pages() - out["pins_base"]
    zb.unmap()
    ring_b.close()
    args.close()
    snd.close()
    rcv.close()
    out["pins_after"], out["pins_wait_s"] = wait_pins(out["pins_base"])
    out["pins_after"] -= out["pins_base"]
    return out


def max_areas():
    """ADD_AREA until the kernel refuses; tokens must carry sequential ids."""
    with Ring(8) as ring:
        z = ring.register_zcrx(area_len=PAGE_SIZE, rq_entries=16)
        m = Mem(PAGE_SIZE)  # the same page can back many areas
        tokens, err = [z.areas[0].token], 0
        for _ in range(U.ZCRX_MAX_AREAS + 1):
            a = U.io_uring_zcrx_area_reg(addr=m.addr, len=PAGE_SIZE)
            try:
                z.ctrl(U.ZCRX_CTRL_ADD_AREA, **{"zc_area.area_ptr": ctypes.addressof(a)})
            except OSError as ex:
                err = ex.errno
                fail_token = a.rq_area_token
                break
            tokens.append(a.rq_area_token)
        ids = [t >> U.IORING_ZCRX_AREA_SHIFT for t in tokens]
        low_bits = sum(1 for t in tokens if t & ~U.IORING_ZCRX_AREA_MASK)
        return {
            "n_areas": len(tokens),
            "ids_sequential": ids == list(range(len(ids))),
            "low_bits_set": low_bits,
            "errno": err,
            "fail_token_id": fail_token >> 48,
        }


# --------------------------------------------------------------------------------------
# pinned pages


def pins_registration(region="user", area_pages=64, hugetlb=False):
    """Pinned pages while an ifq is registered and after unregistering (ring close)."""
    base = pinned_pages()
    ring = Ring(8)
    try:
        z = ring.register_zcrx(area_len=area_pages * PAGE_SIZE, region=region, rq_entries=64, hugetlb=hugetlb)
    except OSError as e:
        ring.close()
        return {"errno": e.errno}
    during = pinned_pages() - base
    region_pages = z.args.rd.size // PAGE_SIZE if region == "user" else 0
    z2 = z.add_area(16 * PAGE_SIZE)
    during_add = pinned_pages() - base
    ring.close()
    z.args.close()
    z2.mem.close()
    after, waited = wait_pins(base)
    return {
        "errno": 0,
        "during": during,
        "area_pages": area_pages,
        "region_pages": region_pages,
        "during_after_add_area": during_add,
        "after": after - base,
        "wait_s": waited,
    }


def hugetlb_area(size=1 << 20):
    """An area on a 2 MiB hugetlb page: registration, pins and data integrity."""
    path = "/proc/sys/vm/nr_hugepages"
    with open(path) as f:
        old = int(f.read())
    with open(path, "w") as f:
        f.write(str(old + 2))
    try:
        with open(path) as f:
            got = int(f.read())
        if got < old + 2:
            return {"skip": f"could not reserve 2 huge pages (nr_hugepages {got})"}
        base = pinned_pages()
        try:
            area = Mem(2 << 20, hugetlb=True)
        except OSError as e:
            return {"skip": f"MAP_HUGETLB failed: {e}"}
        out = {"area_pages": (2 << 20) // PAGE_SIZE}
        with Ring(16, cq_entries=4096) as ring:
            z = ring.register_zcrx(ZcrxArgs(area_mem=area, rq_entries=256))
            out["pins_during"] = pinned_pages() - base
            out["region_pages"] = z.args.rd.size // PAGE_SIZE
            snd, rcv = tcp_pair()
            data = pattern(size, 61)
            s = Sender(snd, data)
            r = recv_zc(ring, z, rcv.fileno(), timeout=60, rearm_on_error=(-errno.ENOMEM,))
            s.join(10)
            snd.close()
            rcv.close()
            out.update(r.summary(z))
            out["match"] = bytes(r.data) == data
            z.args.close()
        out["pins_after"] = wait_pins(base)[0] - base
        return out
    finally:
        with open(path, "w") as f:
            f.write(str(old))
