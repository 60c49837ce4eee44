"""IORING_REGISTER_ZCRX_IFQ cases: a valid NODEV registration with fields changed.

A test module keeps its table of `Reg` cases with the errno each must give;
`register(nodev, reg)` runs one on a fresh ring and says what was pinned before. The placeholders below stand
for values that exist only in the guest while the test runs (see structs.py).
"""

import ctypes
import socket
from errno import errorcode
from typing import NamedTuple

from guest_tests.lib.defer import defer
from guest_tests.lib.structs import Late, put, resolve
from guest_tests.zcrx import PAGE_SIZE, Zcrx, ZcrxArgs
from guest_tests.zcrx import uapi as U
from guest_tests.zcrx.mem import PROT_NONE, libc
from guest_tests.zcrx.util import errno_of

# io_uring_setup flags of the rings the registration tables use
ZCRX = U.ZCRX_RING_FLAGS  # DEFER_TASKRUN | SINGLE_ISSUER | CQE32
DEFER = U.IORING_SETUP_DEFER_TASKRUN | U.IORING_SETUP_SINGLE_ISSUER
MIXED = DEFER | U.IORING_SETUP_CQE_MIXED
NO_DEFER = U.IORING_SETUP_SINGLE_ISSUER | U.IORING_SETUP_CQE32


def errname(err):
    """EINVAL for 22; 0 stays 0."""
    return errorcode.get(err, err)


BAD = Late("an inaccessible address (a PROT_NONE page)")
EVENTS = Late("the address of the registration's zcrx_event_desc")
LO = Late("the ifindex of lo")
GUARDED = Late("ZcrxArgs' 256-page area followed by a PROT_NONE page, all of it the area")


class Reg(NamedTuple):
    """One registration: ZcrxArgs(**args) (valid by default), then the fields in `set`
    changed ("reg.": io_uring_zcrx_ifq_reg, "area.": io_uring_zcrx_area_reg, "rd.":
    io_uring_region_desc, "ev.": zcrx_event_desc)."""

    want: int  # the errno the kernel must return (0: success)
    ring: int = U.ZCRX_RING_FLAGS  # io_uring_setup flags
    args: dict = {}  # ZcrxArgs keywords, and area_prot / region_prot: mprotect() them
    set: dict = {}
    nr_args: int = 1
    null_arg: bool = False  # pass NULL instead of the io_uring_zcrx_ifq_reg
    prior: int = 0  # ifqs registered on the ring before this one


class Registered(NamedTuple):
    err: int  # 0 or the errno of IORING_REGISTER_ZCRX_IFQ
    args: ZcrxArgs
    zcrx: Zcrx | None  # the registered ifq, if it succeeded
    pins: int  # pages pinned system-wide (FOLL_PIN) right before the syscall
    pinned_vm: int  # this process's VmPin in kB (io_uring's accounting) right before it
    base: tuple  # (pins, pinned_vm) before the ring and its `prior` ifqs existed


def register(nodev, reg: Reg) -> Registered:
    """Run one case on a fresh ring."""
    base = nodev.pins(), nodev.pinned_vm()
    ring = nodev.ring(8, flags=reg.ring)
    for _ in range(reg.prior):
        ring.register_zcrx()
    kwargs = dict(reg.args)
    area_prot, region_prot = kwargs.pop("area_prot", None), kwargs.pop("region_prot", None)
    late = {BAD: nodev.inaccessible(), LO: socket.if_nametoindex("lo")}
    if GUARDED in kwargs.values():
        late[GUARDED] = guarded = nodev.mem(257 * PAGE_SIZE)
        libc.mprotect(guarded.addr + 256 * PAGE_SIZE, PAGE_SIZE, PROT_NONE)
    args = ZcrxArgs(**{key: resolve(value, late) for key, value in kwargs.items()})
    defer(args.close)
    if area_prot is not None:
        args.area_mem.protect(area_prot)
    if region_prot is not None:
        args.region_mem.protect(region_prot)
    late[EVENTS] = ctypes.addressof(args.ev)
    put(args, reg.set, late)
    arg = 0 if reg.null_arg else args.reg
    pins, pinned_vm = nodev.pins(), nodev.pinned_vm()
    err = errno_of(ring.register, U.IORING_REGISTER_ZCRX_IFQ, arg, reg.nr_args)
    if err:
        return Registered(err, args, None, pins, pinned_vm, base)
    zcrx = Zcrx(ring, args)
    ring.zcrx.append(zcrx)  # the ring unmaps a kernel region at close
    return Registered(0, args, zcrx, pins, pinned_vm, base)
