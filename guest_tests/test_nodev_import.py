"""Sharing an ifq without a netdev (ZCRX_REG_NODEV): ZCRX_CTRL_EXPORT gives an fd,
IORING_REGISTER_ZCRX_IFQ with ZCRX_REG_IMPORT takes it on another ring: what is refused,
what the importer receives, and that the area's pins go with the last ring. Runs in
the guest (guest_tests/agent.py).
"""

import ctypes
import fcntl
import os
from errno import EBADF, EINVAL

import pytest

from guest_tests.lib.defer import defer
from guest_tests.lib.registration import EVENTS, MIXED, NO_DEFER, ZCRX, errname
from guest_tests.lib.structs import Late, put
from guest_tests.zcrx import PAGE_SIZE
from guest_tests.zcrx import uapi as U
from guest_tests.zcrx.util import errno_of, wait_pins

pytestmark = [pytest.mark.nodev, pytest.mark.in_guest]

PAGE = PAGE_SIZE


PIPE = Late("a pipe's read end")
RING = Late("the exporting ring's fd")
AREA = Late("the address of the exporter's area_reg")
REGION = Late("the address of the exporter's region_desc")

# IORING_REGISTER_ZCRX_IFQ with ZCRX_REG_IMPORT of an exported ifq's fd:
# name -> (errno, importing ring's flags, io_uring_zcrx_ifq_reg fields; if_idx: the fd)
IMPORT = {
    "import_bad_fd": (EBADF, ZCRX, {"if_idx": 9999}),
    "import_pipe_fd": (EBADF, ZCRX, {"if_idx": PIPE}),
    "import_ring_fd": (EBADF, ZCRX, {"if_idx": RING}),
    "import_with_rq_entries": (EINVAL, ZCRX, {"rq_entries": 64}),
    "import_with_if_rxq": (EINVAL, ZCRX, {"if_rxq": 1}),
    "import_with_area_ptr": (EINVAL, ZCRX, {"area_ptr": AREA}),
    "import_with_region_ptr": (EINVAL, ZCRX, {"region_ptr": REGION}),
    "import_with_event_desc": (EINVAL, ZCRX, {"event_desc": EVENTS}),
    "import_with_nodev_flag": (EINVAL, ZCRX, {"flags": U.ZCRX_REG_IMPORT | U.ZCRX_REG_NODEV}),
    "import_with_resv": (EINVAL, ZCRX, {"__resv": [1, 0]}),
    "import_ring_no_defer": (EINVAL, NO_DEFER, {}),
    "import_ring_cqe_mixed": (0, MIXED, {}),
}


def exporter(nodev):
    """A ring with an ifq (kernel region, 64-page area) and the fd exporting it."""
    ring = nodev.ring(8)
    zcrx = ring.register_zcrx(rq_entries=64, region="kernel", area_len=64 * PAGE)
    fd = zcrx.export()
    return ring, zcrx, fd, defer(os.close, fd)


@pytest.mark.parametrize("case", list(IMPORT))
def test_import_errno(nodev, case):
    want, flags, fields = IMPORT[case]
    ring_a, zcrx, fd, _ = exporter(nodev)
    pipe_r, pipe_w = os.pipe()
    defer(os.close, pipe_r)
    defer(os.close, pipe_w)
    late = {
        PIPE: pipe_r,
        RING: ring_a.fd,
        AREA: ctypes.addressof(zcrx.args.area),
        REGION: ctypes.addressof(zcrx.args.rd),
        EVENTS: ctypes.addressof(zcrx.args.ev),
    }
    reg = U.io_uring_zcrx_ifq_reg(flags=U.ZCRX_REG_IMPORT, if_idx=fd)
    put(reg, fields, late)
    ring_b = nodev.ring(8, flags=flags, cq_entries=512)
    err = errno_of(ring_b.register, U.IORING_REGISTER_ZCRX_IFQ, reg)
    assert err == want, f"got {errname(err)}, want {errname(want)}"


def test_export_fd(nodev):
    _, _, fd, _ = exporter(nodev)
    assert fd > 2
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[zcrx]"


def imported(nodev):
    """An ifq exported by ring A and imported into ring B, which maps the same region;
    then the fd and ring A are closed. Returns (ring B, its ifq)."""
    ring_a, zcrx_a, fd, close_fd = exporter(nodev)
    ring_b = nodev.ring(8, cq_entries=512)
    zcrx_b = ring_b.import_zcrx(fd, areas=zcrx_a.areas)
    assert zcrx_b.id == 0 and zcrx_b.reg.rq_entries == 0
    zcrx_b.attach_region(zcrx_a.rq_entries, zcrx_a.args.rd.size, stats_offset=zcrx_a.args.ev.stats_offset)
    assert ctypes.string_at(zcrx_b.region, 64) == ctypes.string_at(zcrx_a.region, 64)
    close_fd.exec()  # the import holds its own reference
    ring_a.close()  # the exporter is gone
    return ring_b, zcrx_b


def test_import_receives_after_exporter_closed(nodev):
    """The imported ifq outlives the exporting ring; data through it is intact."""
    ring, zcrx = imported(nodev)
    res, intact = nodev.receive(ring, zcrx, 300_000, seed=7)
    assert intact and len(res.data) == 300_000
    assert res.final.res == 0
    assert zcrx.stats()["copy_bytes"] == 300_000


def test_import_pins_released(nodev):
    base = nodev.pins()
    ring, zcrx = imported(nodev)
    nodev.receive(ring, zcrx, 300_000, seed=7)
    assert nodev.pins() - base == 64  # the 64-page area; the region is kernel memory
    nodev.close(ring)
    assert wait_pins(base)[0] - base == 0
