"""A minimal io_uring in ctypes: setup, SQ/CQ mapping, submit, wait, register."""

import ctypes
import errno
import os
import time

from . import uapi as U
from .ifq import Zcrx, ZcrxArgs
from .mem import (
    MAP_POPULATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
    addr_of,
    mmap,
    munmap,
    syscall,
)


def io_uring_setup(entries, params):
    return syscall(U.NR_IO_URING_SETUP, entries, ctypes.addressof(params))


def io_uring_enter(fd, to_submit, min_complete, flags, arg=0, argsz=0):
    return syscall(U.NR_IO_URING_ENTER, fd, to_submit, min_complete, flags, arg, argsz)


def io_uring_register(fd, opcode, arg, nr_args):
    return syscall(U.NR_IO_URING_REGISTER, fd, opcode, arg, nr_args)


class Cqe:
    """One completion. `big` holds the second 16 bytes of a 32-byte CQE."""

    __slots__ = ("user_data", "res", "flags", "big")

    def __init__(self, user_data, res, flags, big=None):
        self.user_data, self.res, self.flags, self.big = user_data, res, flags, big

    @property
    def more(self):
        return bool(self.flags & U.IORING_CQE_F_MORE)

    @property
    def zc_off(self):
        """io_uring_zcrx_cqe.off: area token in the top 16 bits, offset below."""
        return int.from_bytes(self.big[:8], "little") if self.big else None

    @property
    def zc_pad(self):
        return int.from_bytes(self.big[8:16], "little") if self.big else None

    @property
    def area_id(self):
        return self.zc_off >> U.IORING_ZCRX_AREA_SHIFT

    @property
    def area_off(self):
        return self.zc_off & ~U.IORING_ZCRX_AREA_MASK & 0xFFFFFFFFFFFFFFFF

    def to_dict(self):
        d = {"user_data": self.user_data, "res": self.res, "flags": self.flags}
        if self.big is not None:
            d.update(zc_off=self.zc_off, zc_pad=self.zc_pad)
        return d

    def __repr__(self):
        return f"Cqe({self.to_dict()})"


class Ring:
    """io_uring instance. Default flags are what zcrx needs."""

    def __init__(self, entries=64, flags=U.ZCRX_RING_FLAGS, cq_entries=0):
        p = U.io_uring_params()
        p.flags = flags
        if cq_entries:
            p.flags |= U.IORING_SETUP_CQSIZE
            p.cq_entries = cq_entries
        self.fd = io_uring_setup(entries, p)
        self.params, self.flags = p, p.flags
        self.cqe32 = bool(p.flags & U.IORING_SETUP_CQE32)
        self.mixed = bool(p.flags & U.IORING_SETUP_CQE_MIXED)
        self.cqe_size = 32 if self.cqe32 else 16
        sqe_size = 128 if p.flags & U.IORING_SETUP_SQE128 else 64
        self._maps = []
        try:
            sq_size = p.sq_off.array + p.sq_entries * 4
            cq_size = p.cq_off.cqes + p.cq_entries * self.cqe_size
            if p.features & U.IORING_FEAT_SINGLE_MMAP:
                sq_size = cq_size = max(sq_size, cq_size)
            self.sq_ptr = self._map(sq_size, U.IORING_OFF_SQ_RING)
            self.cq_ptr = (
                self.sq_ptr
                if p.features & U.IORING_FEAT_SINGLE_MMAP
                else self._map(cq_size, U.IORING_OFF_CQ_RING)
            )
            self.sqes = self._map(p.sq_entries * sqe_size, U.IORING_OFF_SQES)
        except Exception:
            self.close()
            raise
        self.sqe_size = sqe_size
        u32 = ctypes.c_uint32.from_address
        self.sq_head, self.sq_ktail = u32(self.sq_ptr + p.sq_off.head), u32(self.sq_ptr + p.sq_off.tail)
        self.sq_flags = u32(self.sq_ptr + p.sq_off.flags)
        self.sq_entries = p.sq_entries
        self.sq_mask = u32(self.sq_ptr + p.sq_off.ring_mask).value
        self.sq_array = self.sq_ptr + p.sq_off.array
        self.cq_khead, self.cq_ktail = u32(self.cq_ptr + p.cq_off.head), u32(self.cq_ptr + p.cq_off.tail)
        self.cq_mask = u32(self.cq_ptr + p.cq_off.ring_mask).value
        self.cq_entries = p.cq_entries
        self.cq_overflow = u32(self.cq_ptr + p.cq_off.overflow)
        self.cqes = self.cq_ptr + p.cq_off.cqes
        self.sq_tail = self.sq_ktail.value
        self.to_submit = 0
        self.next_user_data = 1
        self.zcrx = []
        self.skipped = 0  # CQE_MIXED filler CQEs seen

    def _map(self, size, off):
        ptr = mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, self.fd, off)
        self._maps.append((ptr, size))
        return ptr

    def close(self):
        for z in self.zcrx:
            z.unmap()
        for ptr, size in self._maps:
            munmap(ptr, size)
        self._maps = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- submission
    def get_sqe(self):
        if self.sq_tail - self.sq_head.value >= self.sq_entries:
            self.submit()
        idx = self.sq_tail & self.sq_mask
        sqe = U.io_uring_sqe.from_address(self.sqes + idx * self.sqe_size)
        ctypes.memset(ctypes.addressof(sqe), 0, self.sqe_size)
        ctypes.c_uint32.from_address(self.sq_array + idx * 4).value = idx
        self.sq_tail += 1
        self.to_submit += 1
        return sqe

    def submit(self, wait=0):
        self.sq_ktail.value = self.sq_tail  # x86: plain store is a release store
        n, self.to_submit = self.to_submit, 0
        flags = U.IORING_ENTER_GETEVENTS if wait else 0
        return io_uring_enter(self.fd, n, wait, flags)

    def alloc_user_data(self):
        ud, self.next_user_data = self.next_user_data, self.next_user_data + 1
        return ud

    def prep(self, opcode, fd=-1, user_data=None, **fields):
        sqe = self.get_sqe()
        sqe.opcode, sqe.fd = opcode, fd
        sqe.user_data = self.alloc_user_data() if user_data is None else user_data
        for k, v in fields.items():
            setattr(sqe, k, v)
        return sqe

    def submit_recv_zc(self, fd, zcrx_id, len=0, multishot=True, user_data=None, submit=True, **fields):
        """IORING_OP_RECV_ZC. len=0: unlimited; the kernel insists on multishot."""
        ioprio = fields.pop("ioprio", 0) | (U.IORING_RECV_MULTISHOT if multishot else 0)
        sqe = self.prep(
            U.IORING_OP_RECV_ZC, fd, user_data, len=len, ioprio=ioprio, file_index=zcrx_id, **fields
        )
        ud = sqe.user_data
        if submit:
            self.submit()
        return ud

    # --- completion
    def reap(self, max_n=1 << 30):
        """Take what is in the CQ now (no syscall)."""
        out = []
        head, tail = self.cq_khead.value, self.cq_ktail.value
        while head != tail and len(out) < max_n:
            base = self.cqes + (head & self.cq_mask) * self.cqe_size
            c = U.io_uring_cqe.from_address(base)
            ud, res, flags = c.user_data, c.res, c.flags
            if self.mixed:
                if flags & U.IORING_CQE_F_SKIP:  # filler before a 32-byte CQE at the wrap
                    self.skipped += 1
                    head += 1
                    continue
                if flags & U.IORING_CQE_F_32:
                    out.append(Cqe(ud, res, flags, ctypes.string_at(base + 16, 16)))
                    head += 2
                else:
                    out.append(Cqe(ud, res, flags))
                    head += 1
            else:
                out.append(Cqe(ud, res, flags, ctypes.string_at(base + 16, 16) if self.cqe32 else None))
                head += 1
        self.cq_khead.value = head
        return out

    def cq_ready(self):
        return (self.cq_ktail.value - self.cq_khead.value) & 0xFFFFFFFF

    def get_events(self):
        """Enter the kernel to run deferred task work and flush overflow, then reap."""
        io_uring_enter(self.fd, 0, 0, U.IORING_ENTER_GETEVENTS)
        return self.reap()

    def wait_cqes(self, nr=1, timeout=5.0):
        """Wait until nr CQEs were reaped or timeout (seconds) passed; returns what came."""
        out = self.reap()
        deadline = time.monotonic() + timeout
        while len(out) < nr:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ts = U.kernel_timespec(int(left), int((left % 1) * 1e9))
            arg = U.io_uring_getevents_arg(ts=ctypes.addressof(ts))
            try:
                io_uring_enter(
                    self.fd,
                    0,
                    nr - len(out),
                    U.IORING_ENTER_GETEVENTS | U.IORING_ENTER_EXT_ARG,
                    ctypes.addressof(arg),
                    ctypes.sizeof(arg),
                )
            except OSError as e:
                if e.errno not in (errno.ETIME, errno.EINTR, errno.EAGAIN, errno.EBUSY):
                    raise
            out += self.reap()
        return out

    # --- registration
    def register(self, opcode, arg=None, nr_args=1):
        """io_uring_register(); arg: ctypes object, raw address or None."""
        addr = arg if isinstance(arg, int) else addr_of(arg)
        return io_uring_register(self.fd, opcode, addr, nr_args)

    def register_zcrx(self, args=None, **kw):
        """Register a zcrx ifq (see ZcrxArgs for keywords); returns a Zcrx."""
        if args is None:
            args = ZcrxArgs(**kw)
        self.register(U.IORING_REGISTER_ZCRX_IFQ, args.reg)
        z = Zcrx(self, args)
        self.zcrx.append(z)
        return z

    def import_zcrx(self, zcrx_fd, areas=None, **reg_fields):
        reg = U.io_uring_zcrx_ifq_reg(flags=U.ZCRX_REG_IMPORT, if_idx=zcrx_fd)
        for k, v in reg_fields.items():
            setattr(reg, k, v)
        self.register(U.IORING_REGISTER_ZCRX_IFQ, reg)
        z = Zcrx.imported(self, reg, areas or [])
        self.zcrx.append(z)
        return z
