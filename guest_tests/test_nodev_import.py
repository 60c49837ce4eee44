"""Sharing an ifq without a netdev (ZCRX_REG_NODEV): ZCRX_CTRL_EXPORT gives an fd,
IORING_REGISTER_ZCRX_IFQ with ZCRX_REG_IMPORT takes it on another ring: what is refused,
what the importer receives, and that the area's pins go with the last ring. Runs in
the guest (guest_tests/agent.py).
"""

import ctypes
import fcntl
import os
import resource
from errno import EBADF, EFAULT, EINVAL, EMFILE

import pytest

from guest_tests.lib.defer import defer
from guest_tests.lib.registration import EVENTS, MIXED, NO_DEFER, ZCRX, errname
from guest_tests.lib.structs import Late, put
from guest_tests.zcrx import PAGE_SIZE, Ring
from guest_tests.zcrx import uapi as U
from guest_tests.zcrx.mem import PROT_READ
from guest_tests.zcrx.util import errno_of, in_child, wait_pins

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


def test_import_result_unwritable_leaves_exporter_whole(nodev):
    """ZCRX_REG_IMPORT writes the new id back to its io_uring_zcrx_ifq_reg: in a
    read-only page that fails with EFAULT after the import took its references. They
    must be dropped exactly once: the exporter's ifq still receives 300 000 bytes
    intact, the area stays pinned once, and the importing ring's table is empty (its
    next import gets id 0)."""
    base = nodev.pins()
    ring_a = nodev.ring(8, cq_entries=512)
    zcrx = ring_a.register_zcrx(rq_entries=64, region="kernel", area_len=64 * PAGE)
    fd = zcrx.export()
    defer(os.close, fd)
    page = nodev.mem(PAGE)
    reg = U.io_uring_zcrx_ifq_reg(flags=U.ZCRX_REG_IMPORT, if_idx=fd)
    ctypes.memmove(page.addr, ctypes.addressof(reg), ctypes.sizeof(reg))
    page.protect(PROT_READ)
    ring_b = nodev.ring(8, cq_entries=512)
    err = errno_of(ring_b.register, U.IORING_REGISTER_ZCRX_IFQ, page.addr)
    assert err == EFAULT, errname(err)
    assert nodev.pins() - base == 64, f"{nodev.pins() - base} pages pinned, the area is 64"
    res, intact = nodev.receive(ring_a, zcrx, 300_000, seed=9)
    assert intact and len(res.data) == 300_000, f"{len(res.data)} bytes, intact: {intact}"
    assert ring_b.import_zcrx(fd).id == 0, "the failed import kept its table slot"


def test_export_without_a_free_fd(nodev):
    """ZCRX_CTRL_EXPORT with every descriptor under RLIMIT_NOFILE taken: EMFILE, the
    ifq's file dropped again; one descriptor freed, the export succeeds. Once the child
    is gone, nothing stays pinned."""
    base = nodev.pins()

    def child():  # forked: the limit and the descriptors die with it
        ring = Ring(8)
        zcrx = ring.register_zcrx(rq_entries=64, area_len=64 * PAGE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        taken = []
        try:
            while True:
                taken.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == EMFILE, exc
        full = errno_of(zcrx.export)
        os.close(taken.pop())
        return [full, errno_of(zcrx.export)]

    got = in_child(child)
    assert got == [EMFILE, 0], list(map(errname, got))
    assert wait_pins(base)[0] == base, "pages still pinned after the child exited"
