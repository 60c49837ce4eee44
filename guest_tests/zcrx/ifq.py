"""zcrx interface queue: registration arguments, refill ring, areas, ctrl ops, stats."""

import ctypes

from . import uapi as U
from .mem import MAP_POPULATE, MAP_SHARED, PAGE_SIZE, PROT_READ, PROT_WRITE, Mem, align_up, mmap, munmap

RQ_HDR_RESERVE = PAGE_SIZE  # head/tail live in the first bytes; rqes start at offsets.rqes


def rq_rounded(n):
    n = min(n, U.IO_RQ_MAX_ENTRIES) if n else 0
    return 1 << (n - 1).bit_length() if n else 0


class Area:
    def __init__(self, mem, addr, length, token):
        self.mem, self.addr, self.len, self.token = mem, addr, length, token

    @property
    def id(self):
        return self.token >> U.IORING_ZCRX_AREA_SHIFT

    def to_dict(self):
        return {"addr": self.addr, "len": self.len, "token": self.token, "id": self.id}


class ZcrxArgs:
    """Everything IORING_REGISTER_ZCRX_IFQ reads, valid by default (NODEV, user memory).

    The ctypes structs (reg, area, rd, ev) are public: negative tests mutate them.
    region: "user" (region_ptr with IORING_MEM_REGION_TYPE_USER) or "kernel" (mmap later).
    stats: place struct zcrx_stats at the end of the refill region.
    dmabuf: a dmabuf.Udmabuf as the area (IORING_ZCRX_AREA_DMABUF, instead of user memory);
    the caller closes it.
    """

    def __init__(
        self,
        rq_entries=128,
        area_len=256 * PAGE_SIZE,
        nodev=True,
        region="user",
        region_size=None,
        stats=True,
        stats_offset=None,
        event_mask=0,
        event_user_data=0,
        rx_buf_len=0,
        area_mem=None,
        area_shared=False,
        hugetlb=False,
        if_idx=0,
        if_rxq=0,
        dmabuf=None,
    ):
        if dmabuf is not None:
            area_mem, area_len = None, 0
        self.area_mem = (
            area_mem
            if area_mem is not None
            else (Mem(area_len, shared=area_shared, hugetlb=hugetlb) if area_len else None)
        )
        self.dmabuf = dmabuf
        n = rq_rounded(rq_entries)
        if region_size is None:
            region_size = align_up(RQ_HDR_RESERVE + n * 16 + (64 if stats else 0))
        self.region_size = region_size
        self.region_mem = Mem(region_size) if region == "user" and region_size else None
        self.area = U.io_uring_zcrx_area_reg(
            addr=self.area_mem.addr if self.area_mem else 0, len=self.area_mem.size if self.area_mem else 0
        )
        if dmabuf is not None:  # addr: the offset into the dma-buf
            self.area.len, self.area.dmabuf_fd = dmabuf.size, dmabuf.fd
            self.area.flags = U.IORING_ZCRX_AREA_DMABUF
        self.rd = U.io_uring_region_desc(size=region_size)
        if self.region_mem:
            self.rd.user_addr = self.region_mem.addr
            self.rd.flags = U.IORING_MEM_REGION_TYPE_USER
        self.ev = U.zcrx_event_desc(user_data=event_user_data, type_mask=event_mask)
        if stats:
            self.ev.flags = U.ZCRX_EVENT_DESC_FLAG_STATS
            self.ev.stats_offset = region_size - 64 if stats_offset is None else stats_offset
        self.reg = U.io_uring_zcrx_ifq_reg(
            if_idx=if_idx,
            if_rxq=if_rxq,
            rq_entries=rq_entries,
            flags=U.ZCRX_REG_NODEV if nodev else 0,
            area_ptr=ctypes.addressof(self.area),
            region_ptr=ctypes.addressof(self.rd),
            rx_buf_len=rx_buf_len,
            event_desc=ctypes.addressof(self.ev) if (stats or event_mask) else 0,
        )

    def close(self):
        for m in (self.area_mem, self.region_mem):
            if m is not None:
                m.close()


class Zcrx:
    """A registered ifq as seen from one ring."""

    def __init__(self, ring, args, region_addr=None):
        self.ring, self.args = ring, args
        self.reg = args.reg if args is not None else None
        self.id = self.reg.zcrx_id
        self.rq_entries = self.reg.rq_entries
        self._own_map = None
        if args is not None:
            # a dma-buf area is read through its memfd's mapping
            addr = args.dmabuf.addr if args.dmabuf is not None else args.area.addr
            self.areas = [Area(args.area_mem, addr, args.area.len, args.area.rq_area_token)]
            self.region_size = args.rd.size
            if args.rd.flags & U.IORING_MEM_REGION_TYPE_USER:
                region_addr = args.rd.user_addr
            else:
                region_addr = self.map_region(args.rd.mmap_offset, args.rd.size)
            self.stats_offset = args.ev.stats_offset if args.ev.flags & U.ZCRX_EVENT_DESC_FLAG_STATS else None
        self._set_region(region_addr)

    @classmethod
    def imported(cls, ring, reg, areas, region_addr=None, region_size=None, stats_offset=None):
        z = cls.__new__(cls)
        z.ring, z.args, z.reg, z.id = ring, None, reg, reg.zcrx_id
        z.rq_entries, z.areas, z._own_map = None, list(areas), None
        z.region_size, z.stats_offset = region_size, stats_offset
        z.region = None
        if region_addr is not None:
            z._set_region(region_addr)
        return z

    def attach_region(self, rq_entries, region_size, region_addr=None, stats_offset=None):
        """For an imported ifq: mmap the kernel region (or use a given address)."""
        self.rq_entries, self.region_size, self.stats_offset = rq_entries, region_size, stats_offset
        if region_addr is None:
            region_addr = self.map_region(self.mmap_offset(), region_size)
        self._set_region(region_addr)

    def mmap_offset(self):
        return U.IORING_MAP_OFF_ZCRX_REGION + (self.id << U.IORING_OFF_ZCRX_SHIFT)

    def map_region(self, offset, size):
        ptr = mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, self.ring.fd, offset)
        self._own_map = (ptr, size)
        return ptr

    def _set_region(self, addr):
        self.region = addr
        off = self.reg.offsets
        u32 = ctypes.c_uint32.from_address
        self.khead, self.ktail = u32(addr + off.head), u32(addr + off.tail)
        self.rqes = addr + off.rqes
        self.rq_tail = self.ktail.value

    def unmap(self):
        if self._own_map:
            munmap(*self._own_map)
            self._own_map = None

    # --- data
    @property
    def area(self):
        """The area registered with the ifq (id 0); ADD_AREA ones follow in .areas."""
        return self.areas[0]

    def read(self, zc_off, n):
        """Bytes a zcrx CQE points at (off carries the area token)."""
        area = self.areas[zc_off >> U.IORING_ZCRX_AREA_SHIFT]
        off = zc_off & ~U.IORING_ZCRX_AREA_MASK
        if off + n > area.len:
            raise ValueError(f"CQE range {off}+{n} outside area of {area.len}")
        return ctypes.string_at(area.addr + off, n)

    # --- refill ring
    @property
    def head(self):
        return self.khead.value

    @property
    def tail(self):
        return self.ktail.value

    def rq_space(self):
        return self.rq_entries - ((self.rq_tail - self.khead.value) & 0xFFFFFFFF)

    def refill(self, off, length=PAGE_SIZE, pad=0, publish=True):
        """Write one refill entry (off includes the area token) and publish the tail."""
        idx = self.rq_tail & (self.rq_entries - 1)
        rqe = U.io_uring_zcrx_rqe.from_address(self.rqes + idx * ctypes.sizeof(U.io_uring_zcrx_rqe))
        rqe.off, rqe.len = off, length
        setattr(rqe, "__pad", pad)  # setattr: a plain attribute name would be mangled
        self.rq_tail = (self.rq_tail + 1) & 0xFFFFFFFF
        if publish:
            self.publish()

    def publish(self):
        self.ktail.value = self.rq_tail  # x86 TSO: a plain store orders after the rqe stores

    def refill_cqe(self, cqe):
        self.refill(cqe.zc_off, cqe.res)

    # --- ctrl ops
    def ctrl(self, op, zcrx_id=None, nr_args=0, **fields):
        c = U.zcrx_ctrl(zcrx_id=self.id if zcrx_id is None else zcrx_id, op=op)
        for k, v in fields.items():
            obj, attr = c, k
            if "." in k:
                head, attr = k.rsplit(".", 1)
                for part in head.split("."):
                    obj = getattr(obj, part)
            if isinstance(v, (list, tuple)):
                arr = getattr(obj, attr)
                for i, x in enumerate(v):
                    arr[i] = x
            else:
                setattr(obj, attr, v)
        self.ring.register(U.IORING_REGISTER_ZCRX_CTRL, c, nr_args)
        return c

    def flush(self):
        self.ctrl(U.ZCRX_CTRL_FLUSH_RQ)

    def export(self):
        return self.ctrl(U.ZCRX_CTRL_EXPORT).zc_export.zcrx_fd

    def arm_event(self, event_type):
        self.ctrl(U.ZCRX_CTRL_ARM_EVENT, **{"zc_arm_event.event_type": event_type})

    def add_area(self, length=None, mem=None, area=None):
        """ZCRX_CTRL_ADD_AREA with user memory; returns the new Area."""
        if mem is None and area is None:
            mem = Mem(length)
        if area is None:
            area = U.io_uring_zcrx_area_reg(addr=mem.addr, len=mem.size)
        self._last_area_reg = area
        self.ctrl(U.ZCRX_CTRL_ADD_AREA, **{"zc_area.area_ptr": ctypes.addressof(area)})
        a = Area(mem, area.addr, area.len, area.rq_area_token)
        self.areas.append(a)
        return a

    # --- stats
    def stats(self):
        if self.stats_offset is None:
            return None
        s = U.zcrx_stats.from_address(self.region + self.stats_offset)
        return {"copy_count": s.copy_count, "copy_bytes": s.copy_bytes}
