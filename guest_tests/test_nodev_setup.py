"""ifq setup without a netdev (ZCRX_REG_NODEV): IORING_REGISTER_ZCRX_IFQ validation,
refill regions, ctrl ops, export/import, areas, capability, pinned pages.

Expected errnos come from io_uring/zcrx.c, io_uring/memmap.c, io_uring/rsrc.c and
io_uring/register.c of Linux 7.3. Guest side: guest_tests/scenarios/nodev.py.
"""

import errno

import pytest

pytestmark = pytest.mark.nodev

PAGE = 4096
SCN = "scenarios.nodev:"


def cached(guest, func, **kw):
    """One guest call per (function, kwargs) per session; tests then judge parts of it
    (a splat while the first test ran it fails each of them)."""
    return guest.cached(SCN + func, **kw)


def test_uapi_layout_matches_kernel_headers(lab, guest):
    """Every ctypes struct/constant of the client equals the running kernel's uapi header:
    a tree's own `make headers` output (shared as /kernel-uapi), else Debian's headers
    package for the default kernel."""
    if lab.kernel.tree and lab.kernel.uapi_headers is None:
        pytest.skip(f"kernel tree {lab.kernel.tree} has no installed uapi headers (usr/include); "
                    "run `make headers` there (python3 -m host build-kernel does)")  # fmt: skip
    res = cached(guest, "layout_check")
    if lab.kernel.uapi_headers:
        assert res["headers"] == "/kernel-uapi", res
    assert res["checked"] > 100, res
    assert res["mismatches"] == [], res


# case name in scenarios/nodev.py REG_CASES -> errno the kernel must return (0: success)
REG_ERRNO = {
    "ok": 0,
    "ok_kernel_region": 0,
    "ok_no_stats": 0,
    "ok_cqe_mixed": 0,  # CQE_MIXED is an alternative to CQE32
    "ring_plain": errno.EINVAL,  # no DEFER_TASKRUN
    "ring_no_defer_taskrun": errno.EINVAL,
    "ring_no_cqe32": errno.EINVAL,  # neither CQE32 nor CQE_MIXED
    "ring_coop_taskrun_cqe32": errno.EINVAL,
    "flags_unknown_bit2": errno.EINVAL,
    "flags_unknown_bit31": errno.EINVAL,
    "reg_resv0": errno.EINVAL,
    "reg_resv1": errno.EINVAL,
    "reg_zcrx_id_set": errno.EINVAL,  # zcrx_id is an output
    "reg_offsets_resv_set": 0,  # offsets are output only: the kernel overwrites them
    "region_ptr_null": errno.EFAULT,
    "region_ptr_unmapped": errno.EFAULT,
    "if_rxq_minus1": errno.EINVAL,
    "nodev_if_idx_set": errno.EINVAL,  # NODEV wants if_idx == if_rxq == 0
    "nodev_if_rxq_set": errno.EINVAL,
    "netdev_if_idx_0": errno.ENODEV,  # without NODEV: no such device
    "netdev_if_idx_missing": errno.ENODEV,
    "netdev_loopback": errno.EOPNOTSUPP,  # lo has no DMA device
    "rq_entries_0": errno.EINVAL,
    "rq_entries_1": 0,
    "rq_entries_100": 0,
    "rq_entries_max": 0,  # IO_RQ_MAX_ENTRIES = 32768
    "rq_entries_max_plus1": errno.EINVAL,  # without IORING_SETUP_CLAMP
    "rq_entries_max_plus1_clamp": 0,
    "rq_entries_huge_clamp": 0,
    "rq_region_too_small": errno.EINVAL,
    "rq_entries_248_rounded_exceeds_region": errno.EINVAL,
    "rq_entries_128_one_page_region": 0,
    "area_ptr_null": errno.EFAULT,
    "area_ptr_unmapped": errno.EFAULT,
    "area_token_set": errno.EINVAL,  # rq_area_token is an output
    "area_flags_unknown": errno.EINVAL,
    "area_flags_dmabuf": errno.EINVAL,  # dmabuf needs a device
    "area_resv0": errno.EINVAL,
    "area_resv1": errno.EINVAL,
    "area_dmabuf_fd_without_flag": errno.EINVAL,
    "area_addr_null": errno.EFAULT,
    "area_addr_misaligned": errno.EINVAL,
    "area_len_misaligned": errno.EINVAL,
    "area_len_0": errno.EFAULT,  # io_validate_user_buf_range
    "area_len_over_1T": errno.EINVAL,
    "area_addr_wraps": errno.EOVERFLOW,
    "area_unmapped": errno.EFAULT,
    "area_beyond_mapping": errno.EFAULT,  # last page inaccessible: partial pin
    "area_read_only": errno.EFAULT,  # FOLL_WRITE pin of read-only memory
    "area_kernel_address": errno.EFAULT,
    "event_desc_unmapped": errno.EFAULT,
    "event_type_mask_unknown": errno.EINVAL,
    "event_flags_unknown": errno.EINVAL,
    "event_stats_offset_without_flag": errno.EINVAL,
    "event_resv0": errno.EINVAL,
    "event_resv8": errno.EINVAL,
    "event_mask_copy_ok": 0,
    "stats_misaligned": errno.EINVAL,
    "stats_overlaps_rqes": errno.ERANGE,
    "stats_right_after_rqes": 0,
    "stats_last_16_bytes": 0,
    "stats_past_end": errno.ERANGE,
    "stats_offset_huge": errno.ERANGE,  # offset + 16 overflows
    "region_resv": errno.EINVAL,
    "region_flags_unknown": errno.EINVAL,
    "region_user_flag_addr_null": errno.EFAULT,
    "region_kernel_with_addr": errno.EFAULT,  # user_addr set IFF TYPE_USER
    "region_size_0": errno.EINVAL,
    "region_mmap_offset_set": errno.EINVAL,
    "region_id_set": errno.EINVAL,
    "region_addr_misaligned": errno.EINVAL,
    "region_size_misaligned": errno.EINVAL,
    "region_unmapped": errno.EFAULT,
    "region_read_only": errno.EFAULT,
    "rx_buf_len_page": 0,
    "rx_buf_len_2x_page": errno.EOPNOTSUPP,  # NODEV: only PAGE_SIZE buffers
    "rx_buf_len_2M": errno.EOPNOTSUPP,
    "rx_buf_len_half_page": errno.EINVAL,
    "rx_buf_len_not_pow2": errno.EINVAL,
    "nr_args_0": errno.EINVAL,
    "nr_args_2": errno.EINVAL,
    "arg_null": errno.EINVAL,
    "second_ifq_same_ring": 0,
}


def reg(guest, name):
    return cached(guest, "reg_cases")[name]


@pytest.mark.parametrize("case", list(REG_ERRNO))
def test_register_errno(guest, case):
    res = reg(guest, case)
    want = REG_ERRNO[case]
    assert res.get("setup_errno") is None, f"io_uring_setup failed: {res}"
    assert res["errno"] == want, (
        f"{case}: got {errno.errorcode.get(res['errno'], res['errno'])}, "
        f"want {errno.errorcode.get(want, want)}: {res}"
    )


def test_register_outputs(guest):
    """Successful NODEV registration fills zcrx_id, offsets, rx_buf_len, area token."""
    out = reg(guest, "ok")["out"]
    assert out["zcrx_id"] == 0
    assert out["rx_buf_len"] == PAGE
    assert out["area_token"] == 0  # area id 0 << IORING_ZCRX_AREA_SHIFT
    off = out["offsets"]
    assert off["head"] < off["tail"] < off["rqes"] and off["rqes"] % 16 == 0, off
    assert out["mmap_offset"] == 0  # user-provided region: nothing to mmap
    assert (out["head"], out["tail"]) == (0, 0)
    assert out["stats"] == {"copy_count": 0, "copy_bytes": 0}


@pytest.mark.parametrize(
    "case,want",
    [("rq_entries_1", 1), ("rq_entries_100", 128), ("rq_entries_max", 32768),
     ("rq_entries_max_plus1_clamp", 32768), ("rq_entries_huge_clamp", 32768)],
)  # fmt: skip
def test_rq_entries_rounded_and_clamped(guest, case, want):
    res = reg(guest, case)
    assert res["errno"] == 0, res
    assert res["out"]["rq_entries"] == want


def test_second_ifq_on_same_ring_gets_next_id(guest):
    res = reg(guest, "second_ifq_same_ring")
    assert res["out"]["zcrx_id"] == 0 and res["second"]["zcrx_id"] == 1


def test_rx_buf_len_reported_back(guest):
    assert reg(guest, "rx_buf_len_page")["out"]["rx_buf_len"] == PAGE
    assert reg(guest, "ok")["out"]["rx_buf_len"] == PAGE  # 0 in, PAGE_SIZE out


@pytest.mark.parametrize("method", ["capset", "userns"])
def test_register_needs_cap_net_admin(lab, guest, method):
    """capable(CAP_NET_ADMIN) in the initial user namespace; a user namespace is not enough."""
    if method == "userns" and lab.kernel.config.get("USER_NS") != "y":
        pytest.skip(f"kernel {lab.kernel.release} has no user namespaces (CONFIG_USER_NS)")
    res = guest.call(SCN + "reg_without_cap", method=method)
    assert res["errno_with_cap"] == 0
    assert res["errno"] == errno.EPERM, res


def test_kernel_region_mmap_offset(guest):
    res = cached(guest, "region_mmap")
    assert res["mmap_offset"] == res["expected_offset"] == 0x30000000  # ZCRX_REGION, id 0
    assert res["second_id"] == 1 and res["second_offset"] == 0x30000000 + (1 << 16)
    assert (res["head"], res["tail"]) == (0, 0)
    assert res["alias_tail"] == 5, "two mappings of the region must share memory"


@pytest.mark.parametrize("what", ["mmap_unknown_id_errno", "mmap_user_region_errno"])
def test_region_mmap_refused(guest, what):
    """No region behind the offset, or a user-provided region: mmap fails with EINVAL."""
    assert cached(guest, "region_mmap")[what] == errno.EINVAL


@pytest.mark.parametrize("region", ["user", "kernel"])
def test_refill_headers_zeroed_at_registration(guest, region):
    res = guest.call(SCN + "headers_zeroed", region=region)
    assert (res["head"], res["tail"]) == (0, 0), res
    assert res["stats"] == {"copy_count": 0, "copy_bytes": 0}
    if region == "kernel":
        assert res["rqes_all_zero"], "kernel-allocated region must start zeroed"


CTRL_ERRNO = {
    "flush_ok": 0,
    "nr_args_1": errno.EINVAL,
    "ctrl_resv0": errno.EFAULT,  # zcrx_ctrl.__resv: EFAULT, not EINVAL, in 7.3
    "ctrl_resv1": errno.EFAULT,
    "unknown_zcrx_id": errno.ENXIO,
    "unknown_op": errno.EOPNOTSUPP,
    "op_huge": errno.EOPNOTSUPP,
    "flush_resv": errno.EINVAL,
    "export_resv": errno.EINVAL,
    "export_fd_preset": errno.EINVAL,
    "arm_type_out_of_range": errno.EINVAL,
    "arm_resv": errno.EINVAL,
    "arm_copy_not_fired": errno.EINVAL,
    "arm_alloc_fail_not_fired": errno.EINVAL,
    "add_area_ptr_unmapped": errno.EFAULT,
    "add_area_resv": errno.EINVAL,
    "add_area_token_set": errno.EINVAL,
    "add_area_len_0": errno.EFAULT,
    "add_area_misaligned": errno.EINVAL,
    "add_area_flags_unknown": errno.EINVAL,
    "add_area_dmabuf": errno.EINVAL,
    "add_area_unmapped": errno.EFAULT,
    "add_area_ok": 0,
}


@pytest.mark.parametrize("case", list(CTRL_ERRNO))
def test_ctrl_errno(guest, case):
    got = cached(guest, "ctrl_errors")[case]
    assert got == CTRL_ERRNO[case], f"{case}: got {errno.errorcode.get(got, got)}"


def test_add_area_failures_do_not_consume_area_ids(guest):
    """ADD_AREA copies the next token out before creating the area; failed attempts
    must not use up ids: the first successful ADD_AREA is area 1."""
    res = cached(guest, "ctrl_errors")
    assert res["add_area_ok_token"] == 1 << 48
    assert res["add_area_len_0_token_written"] == 1 << 48  # written back although it failed


def test_max_areas(guest):
    """ZCRX_MAX_AREAS (1024) areas with sequential ids, then EINVAL."""
    res = guest.call(SCN + "max_areas")
    assert res["n_areas"] == 1024 and res["ids_sequential"] and res["low_bits_set"] == 0, res
    assert res["errno"] == errno.EINVAL


IMPORT_ERRNO = {
    "import_bad_fd": errno.EBADF,
    "import_pipe_fd": errno.EBADF,
    "import_ring_fd": errno.EBADF,
    "import_with_rq_entries": errno.EINVAL,
    "import_with_if_rxq": errno.EINVAL,
    "import_with_area_ptr": errno.EINVAL,
    "import_with_region_ptr": errno.EINVAL,
    "import_with_event_desc": errno.EINVAL,
    "import_with_nodev_flag": errno.EINVAL,
    "import_with_resv": errno.EINVAL,
    "import_ring_no_defer": errno.EINVAL,
    "import_ring_cqe_mixed": 0,
}


@pytest.mark.parametrize("case", list(IMPORT_ERRNO))
def test_import_errno(guest, case):
    got = cached(guest, "export_import")["errnos"][case]
    assert got == IMPORT_ERRNO[case], f"{case}: got {errno.errorcode.get(got, got)}"


def test_export_fd(guest):
    res = cached(guest, "export_import")
    assert res["export_fd_ok"] and res["fd_cloexec"]
    assert res["fd_link"] == "anon_inode:[zcrx]"


def test_import_receives_after_exporter_closed(guest):
    """The imported ifq outlives the exporting ring; data through it is intact."""
    res = cached(guest, "export_import")
    assert res["import_id"] == 0 and res["import_rq_entries_out"] == 0
    assert res["import_region_same_memory"]
    assert res["recv"]["match"] and res["recv"]["bytes"] == 300_000, res["recv"]
    assert res["recv"]["final"]["res"] == 0
    assert res["recv"]["stats"]["copy_bytes"] == 300_000


def test_import_pins_released(guest):
    res = cached(guest, "export_import")
    assert res["pins_while_imported"] == 64  # the 64-page area; the region is kernel memory
    assert res["pins_after"] == 0, res


@pytest.mark.parametrize("region", ["user", "kernel"])
def test_pins_while_registered(guest, region):
    """FOLL_PIN counts: area pages (+ user region pages), + ADD_AREA pages; all released."""
    res = guest.call(SCN + "pins_registration", region=region)
    assert res["errno"] == 0
    assert res["during"] == res["area_pages"] + res["region_pages"], res
    assert res["during_after_add_area"] == res["during"] + 16
    assert res["after"] == 0, res


def test_hugetlb_area(guest):
    """A 2 MiB hugetlb page as the area: every 4 KiB page is pinned (FOLL_PIN counts per
    page), NODEV still uses 4 KiB buffers, data is intact, pins are released."""
    res = guest.call(SCN + "hugetlb_area")
    if "skip" in res:
        pytest.skip(res["skip"])
    assert res["pins_during"] == res["area_pages"] + res["region_pages"], res
    assert res["match"] and res["bytes"] == 1 << 20
    assert res["off_page_misaligned"] == 0 and res["outside_area"] == 0
    assert res["pins_after"] == 0
