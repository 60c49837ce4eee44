"""IORING_REGISTER_ZCRX_IFQ on a real queue (zcnic zc0): the netdev-side checks of
io_uring/zcrx.c (zcrx_register_netdev) and net/core/netdev_rx_queue.c
(netif_mp_open_rxq): queue range, device, DMA device, rx-buf-len, tcp-data-split,
hds-thresh, XDP, a queue already bound. Each failed case leaves no queue bound.
Runs in the guest (guest_tests/agent.py) on guest_tests/lib/nic.py's NicEnv.
"""

import errno
import glob
import os
import resource
import socket
import time

import pytest

from guest_tests.lib.defer import defer
from guest_tests.lib.nic import XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, sh
from guest_tests.zcrx import PAGE_SIZE, Ring, ZcrxArgs
from guest_tests.zcrx import uapi as U
from guest_tests.zcrx.dmabuf import Udmabuf
from guest_tests.zcrx.util import (
    CAP_IPC_LOCK,
    drop_cap,
    errno_of,
    in_child,
    pinned_pages,
    pinned_vm_kb,
    wait_pins,
)

pytestmark = [pytest.mark.zcnic, pytest.mark.in_guest]


def split_off(nic):
    err, extack = nic.rings(split="off")
    assert err == 0, extack
    return nic.register_errno(1)


def hds_thresh_512(nic):
    err, extack = nic.rings(hds_thresh=512)
    assert err == 0, extack
    return nic.register_errno(1)


def already_bound(nic, same_ring):
    """Queue 1 bound by one ring; a second zcrx on it, from another ring or the same one."""
    rx = nic.rx(1, area_pages=64, rq_entries=64)
    if not same_ring:
        err = nic.register_errno(1)
    else:
        args = ZcrxArgs(rq_entries=64, area_len=64 * PAGE_SIZE, nodev=False, if_idx=nic.ifindex, if_rxq=1)
        try:
            rx.ring.register_zcrx(args)
            err = 0
        except OSError as e:
            err = e.errno
        finally:
            args.close()
    rx.close()
    return err


# case -> (what it does, errno of the registration (0: success))
REG_CASES = {
    "ok": (lambda nic: nic.register_errno(1), 0),
    "last_queue": (lambda nic: nic.register_errno(nic.queues_default - 1), 0),
    # if_rxq == real_num_rx_queues (4)
    "queue_out_of_range": (lambda nic: nic.register_errno(nic.queues_default), errno.ERANGE),
    # beyond num_rx_queues (16)
    "queue_max_plus1": (lambda nic: nic.register_errno(16), errno.ERANGE),
    "bad_ifindex": (lambda nic: nic.register_errno(0, ifidx=0x7FFFFFF0), errno.ENODEV),
    # veth: no queue DMA device
    "lower_veth": (lambda nic: nic.register_errno(0, ifidx=nic.lower_ifindex), errno.EOPNOTSUPP),
    # zcnic has QCFG_RX_PAGE_SIZE (large_buffers=1, test_rx_buf_len_not_advertised for 0)
    "rx_buf_len_page": (lambda nic: nic.register_errno(1, rx_buf_len=PAGE_SIZE), 0),
    # 2-page buffers out of a 3-page area: some physically contiguous run is odd
    "rx_buf_len_2_pages_scattered_area": (
        lambda nic: nic.register_errno(1, rx_buf_len=2 * PAGE_SIZE, area_len=3 * PAGE_SIZE),
        errno.ERANGE,
    ),
    "split_off": (split_off, errno.EINVAL),
    "hds_thresh_512": (hds_thresh_512, errno.EINVAL),
    "already_bound_other_ring": (lambda nic: already_bound(nic, False), errno.EEXIST),
    "already_bound_same_ring": (lambda nic: already_bound(nic, True), errno.EEXIST),
}


@pytest.mark.parametrize("case", list(REG_CASES))
def test_register(nic, case):
    """The case's errno; once its ring is closed (at once on failure) nothing of it is
    left: no queue bound, no io_uring page pool, no page pinned (FOLL_PIN) or accounted
    to this process (VmPin)."""
    action, expected = REG_CASES[case]
    pins, pinned_vm = pinned_pages(), pinned_vm_kb()
    got = action(nic)
    assert got == expected, f"{case}: errno {got} ({errno.errorcode.get(got)})"
    assert nic.wait_unbound() == [], "a queue stayed bound"
    assert nic.wait_no_pools() == 0, "an io_uring page pool outlived the ring"
    assert wait_pins(pins)[0] == pins, "pages still pinned"
    assert pinned_vm_kb() == pinned_vm, "VmPin still charged"


def test_generic_xdp_blocks_registration(nic):
    """zcnic has no native XDP, but generic XDP (a multi-buffer XDP_PASS program) attaches
    with header split on, and then the provider is refused: EEXIST."""
    err, extack = nic.xdp(nic.xdp_prog(frags=True), XDP_FLAGS_SKB_MODE)
    assert err == 0, f"attach: errno {err}: {extack}"
    assert nic.register_errno(1) == errno.EEXIST


def test_single_buffer_xdp_refused_with_header_split(nic):
    err, extack = nic.xdp(nic.xdp_prog(frags=False), XDP_FLAGS_SKB_MODE)
    assert err == errno.EBUSY and "tcp-data-split" in extack, (err, extack)


def test_native_xdp_unsupported(nic):
    err, extack = nic.xdp(nic.xdp_prog(frags=True), XDP_FLAGS_DRV_MODE)
    assert err == errno.EOPNOTSUPP, (err, extack)


def test_register_while_down_then_up(nic):
    """Binding a queue of a down device succeeds; ndo_open then creates that queue's page
    pool with the provider (queue unreadable)."""
    nic.link_down()
    nic.rx(1, area_pages=512)
    nic.link_up()
    assert nic.bound_queues() == [1]
    st = nic.stats()
    assert st["rx1_unreadable"] == 1 and st["rx0_unreadable"] == 0 and st["rx1_posted"] > 0, st


def zcnic_dma_devices() -> list:
    """zcnic's per-device DMA devices (faux devices "zcnic-dmaID")."""
    return sorted(glob.glob("/sys/bus/faux/devices/zcnic-dma*"))


def test_link_add_failing_late_in_register_frees_once(nic):
    """zcnic's fail_register veto (NETDEV_POST_INIT) fails register_netdevice() after
    zcnic set up its DMA device and id: the core calls the destructor itself, and zcnic's
    newlink error path must not free them again (an ida_free WARN, a faux device
    use-after-free). EIO, no DMA device left; the next link add works."""
    nic.veth_pair("zct0", "zct1")
    before = zcnic_dma_devices()
    nic.set_module_param("fail_register", 1)
    err, extack = nic.add_zcnic("zcx0", "zct0")
    assert err == errno.EIO, (err, extack)
    assert nic.module_param("fail_register") == "0", "the veto was not reached"
    assert zcnic_dma_devices() == before, "the failed link's DMA device is still there"
    err, extack = nic.add_zcnic("zcx0", "zct0")
    assert err == 0, extack
    assert len(zcnic_dma_devices()) == len(before) + 1


def test_rx_buf_len_not_advertised(nic):
    """A zcnic created with large_buffers=0 does not advertise QCFG_RX_PAGE_SIZE: any
    rx_buf_len, even PAGE_SIZE, is refused (EOPNOTSUPP) before its queue is touched; the
    default (0) registers."""
    nic.veth_pair("zct0", "zct1")
    nic.set_module_param("large_buffers", 0)
    err, extack = nic.add_zcnic("zcx0", "zct0")
    assert err == 0, extack
    sh("ip link set zct0 up && ip link set zcx0 up && ethtool -G zcx0 tcp-data-split on")
    zcx0 = socket.if_nametoindex("zcx0")
    assert nic.register_errno(1, ifidx=zcx0, rx_buf_len=PAGE_SIZE) == errno.EOPNOTSUPP
    assert nic.register_errno(1, ifidx=zcx0) == 0


def attachments(dmabuf) -> list:
    """The devices attached to DMABUF, from the kernel's dma-buf debugfs table (its row
    is the one with the buffer's inode)."""
    ino = os.fstat(dmabuf.fd).st_ino
    devices: dict[int, list] = {}
    current = None
    with open("/sys/kernel/debug/dma_buf/bufinfo") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) == 7 and fields[5].isdigit():  # size flags mode count exp_name ino name
                current = devices.setdefault(int(fields[5]), [])
            elif current is not None and line.startswith("\t") and "Attached Devices" not in line:
                current.append(line.strip())
    if ino in devices:
        return devices[ino]
    raise AssertionError(f"dma-buf inode {ino} not in bufinfo")


# dma-buf area fields changed from a valid one (a 64-page udmabuf) -> errno
DMABUF_CASES = {
    "ok": ({}, 0),
    "offset_into_buffer": ({"addr": PAGE_SIZE}, errno.EINVAL),  # zcrx takes a dma-buf whole
    "len_short": ({"len": 63 * PAGE_SIZE}, errno.EINVAL),  # mapped, then its length disagrees
    "len_long": ({"len": 65 * PAGE_SIZE}, errno.EINVAL),
    "fd_not_a_dmabuf": ({"dmabuf_fd": "memfd"}, errno.EINVAL),
    "fd_closed": ({"dmabuf_fd": "closed"}, errno.EBADF),
}


@pytest.mark.parametrize("case", list(DMABUF_CASES))
def test_dmabuf_area_errors(nic, case):
    """IORING_ZCRX_AREA_DMABUF on zc0's queue 1 with one field of the area wrong: the
    errno of io_import_dmabuf's check, and after it (or after the ring of the valid one
    is closed) the dma-buf has no device attached any more (debugfs bufinfo), no queue
    is bound and no io_uring page pool is left."""
    if not os.path.exists("/dev/udmabuf"):
        pytest.skip(f"kernel {os.uname().release} has no /dev/udmabuf (CONFIG_UDMABUF)")
    if not os.path.exists("/sys/kernel/debug/dma_buf/bufinfo"):
        pytest.skip("no /sys/kernel/debug/dma_buf/bufinfo (CONFIG_DEBUG_FS)")
    fields, want = DMABUF_CASES[case]
    area = Udmabuf(64 * PAGE_SIZE)
    defer(area.close)
    args = ZcrxArgs(rq_entries=64, nodev=False, if_idx=nic.ifindex, if_rxq=1, dmabuf=area)
    defer(args.close)
    late = {"memfd": area.memfd, "closed": 4095}
    for name, value in fields.items():
        setattr(args.area, name, late.get(value, value))
    with Ring(8) as ring:
        err = errno_of(ring.register, U.IORING_REGISTER_ZCRX_IFQ, args.reg)
        attached = attachments(area)
    assert err == want, f"{case}: errno {err} ({errno.errorcode.get(err)})"
    if want == 0:
        assert len(attached) == 1 and attached[0].startswith("zcnic-dma"), f"attached: {attached}"
    assert nic.wait_unbound() == [], "a queue stayed bound"
    assert nic.wait_no_pools() == 0, "an io_uring page pool outlived the ring"
    deadline = time.monotonic() + 15  # the valid one is detached by the ring's exit work
    while (left := attachments(area)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], f"the dma-buf is still attached to {left}"


def test_register_over_rlimit_memlock_unmaps_area(nic):
    """A ring made without CAP_IPC_LOCK charges the area to RLIMIT_MEMLOCK after
    zcrx has pinned it and mapped it for zc0's DMA device: over the limit (32 pages
    for a 64-page area) the registration fails with ENOMEM, unmapping and unpinning
    it again; no queue is bound, no io_uring page pool made, nothing stays pinned."""
    pins = pinned_pages()

    def child():  # forked: the capability and the limit die with it
        drop_cap(CAP_IPC_LOCK)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (32 * PAGE_SIZE, 32 * PAGE_SIZE))
        return nic.register_errno(1)

    err = in_child(child)
    assert err == errno.ENOMEM, f"errno {err} ({errno.errorcode.get(err)})"
    assert nic.wait_unbound() == [], "a queue stayed bound"
    assert nic.wait_no_pools() == 0, "an io_uring page pool was left"
    assert wait_pins(pins)[0] == pins, "pages still pinned"
