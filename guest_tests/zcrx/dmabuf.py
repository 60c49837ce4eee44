"""A dma-buf for a zcrx area (IORING_ZCRX_AREA_DMABUF): udmabuf over a sealed memfd,
the memfd mapped so the CPU reads what the NIC wrote."""

import ctypes
import fcntl
import os
import struct

from .mem import MAP_POPULATE, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap

F_ADD_SEALS, F_SEAL_SHRINK = 1033, 0x0002  # fcntl.h: udmabuf refuses a memfd that may shrink
UDMABUF_FLAGS_CLOEXEC = 0x01
# _IOW('u', 0x42, struct udmabuf_create { __u32 memfd, flags; __u64 offset, size; })
UDMABUF_CREATE = (1 << 30) | (24 << 16) | (ord("u") << 8) | 0x42


class Udmabuf:
    """`size` bytes of a memfd exported as a dma-buf (fd), and mapped at `addr`."""

    def __init__(self, size: int):
        self.size, self.fd, self.addr = size, -1, 0
        self.memfd = os.memfd_create("zcrx-area", os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.memfd, size)
            fcntl.fcntl(self.memfd, F_ADD_SEALS, F_SEAL_SHRINK)
            dev = os.open("/dev/udmabuf", os.O_RDWR)
            try:
                arg = bytearray(struct.pack("=IIQQ", self.memfd, UDMABUF_FLAGS_CLOEXEC, 0, size))
                self.fd = fcntl.ioctl(dev, UDMABUF_CREATE, arg, True)  # the new dma-buf's fd
            finally:
                os.close(dev)
            self.addr = mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd=self.memfd)
        except BaseException:
            self.close()
            raise

    def read(self, offset: int, size: int) -> bytes:
        """`size` bytes at `offset` of the dma-buf, through the memfd's mapping."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ValueError(f"[{offset}, {offset + size}) is outside the {self.size}-byte dma-buf")
        return ctypes.string_at(self.addr + offset, size)

    def write(self, offset: int, data: bytes) -> None:
        """Put `data` at `offset` of the dma-buf, through the memfd's mapping."""
        if offset < 0 or offset + len(data) > self.size:
            raise ValueError(f"[{offset}, {offset + len(data)}) is outside the {self.size}-byte dma-buf")
        ctypes.memmove(self.addr + offset, data, len(data))

    def close(self):
        if self.addr:
            munmap(self.addr, self.size)
            self.addr = 0
        for fd in (self.fd, self.memfd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.memfd = -1
