"""Memory for io_uring and zcrx in ctypes: libc, mmap/munmap, the Mem range."""

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MAP_FAILED = ctypes.c_void_p(-1).value
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS = 0x01, 0x02, 0x20
MAP_POPULATE, MAP_HUGETLB = 0x8000, 0x40000


def align_up(v, a=PAGE_SIZE):
    return (v + a - 1) // a * a


def oserror(err):
    return OSError(err, os.strerror(err))


def syscall(nr, *args):
    ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if ret < 0:
        raise oserror(ctypes.get_errno())
    return ret


def addr_of(obj):
    return ctypes.addressof(obj) if obj is not None else 0


def mmap(length, prot=PROT_READ | PROT_WRITE, flags=MAP_PRIVATE | MAP_ANONYMOUS, fd=-1, offset=0, addr=None):
    ptr = libc.mmap(addr, length, prot, flags, fd, offset)
    if ptr in (None, MAP_FAILED):
        raise oserror(ctypes.get_errno())
    return ptr


def munmap(addr, length):
    if libc.munmap(addr, length):
        raise oserror(ctypes.get_errno())


class Mem:
    """An mmap()ed range; anonymous by default."""

    def __init__(self, size, prot=PROT_READ | PROT_WRITE, shared=False, hugetlb=False, populate=True):
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS
        if hugetlb:
            flags |= MAP_HUGETLB
        if populate:
            flags |= MAP_POPULATE
        self.size = size
        self.addr = mmap(size, prot, flags)

    def read(self, off, n):
        return ctypes.string_at(self.addr + off, n)

    def write(self, off, data):
        ctypes.memmove(self.addr + off, data, len(data))

    def protect(self, prot):
        if libc.mprotect(self.addr, self.size, prot):
            raise oserror(ctypes.get_errno())

    def close(self):
        if self.addr:
            munmap(self.addr, self.size)
            self.addr = 0
