"""Pure-Python (ctypes) io_uring + zcrx client for the guest.

    from guest_tests.zcrx import Ring, ZcrxArgs, uapi
    with Ring(64) as ring:
        zcrx = ring.register_zcrx(rq_entries=128, area_len=1 << 20)   # NODEV by default
        ring.submit_recv_zc(sock.fileno(), zcrx.id)
        for cqe in ring.wait_cqes(1):
            data = zcrx.read(cqe.zc_off, cqe.res)
            zcrx.refill(cqe.zc_off, cqe.res); zcrx.flush()

Syscall failures raise OSError with the kernel's errno.
"""

from . import uapi
from .ifq import Area, Zcrx, ZcrxArgs
from .mem import PAGE_SIZE, Mem
from .ring import Cqe, Ring

__all__ = ["uapi", "Area", "Zcrx", "ZcrxArgs", "PAGE_SIZE", "Cqe", "Mem", "Ring"]
