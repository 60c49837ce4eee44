"""bpf(2) without clang or libbpf: the XDP programs the zcnic tests attach."""

import ctypes
import errno
import os
import struct

from guest_tests.zcrx.mem import libc

NR_BPF, BPF_PROG_LOAD, BPF_PROG_TYPE_XDP, BPF_F_XDP_HAS_FRAGS = 321, 5, 6, 1 << 5
XDP_PASS_INSNS = struct.pack("=BBhi", 0xB7, 0, 0, 2) + struct.pack("=BBhi", 0x95, 0, 0, 0)  # r0 = 2; exit


def xdp_pass_prog(frags=True):
    """Load `return XDP_PASS`; frags: BPF_F_XDP_HAS_FRAGS (multi-buffer aware). Returns the fd."""
    insns = ctypes.create_string_buffer(XDP_PASS_INSNS)
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("=IIQQ", attr, 0, BPF_PROG_TYPE_XDP, 2, ctypes.addressof(insns), ctypes.addressof(lic))
    struct.pack_into("=I", attr, 44, BPF_F_XDP_HAS_FRAGS if frags else 0)  # prog_flags
    attr[48:56] = b"zc_pass\0"  # prog_name
    for _ in range(5):  # EAGAIN: a signal interrupted the verifier; libbpf retries too
        fd = libc.syscall(ctypes.c_long(NR_BPF), ctypes.c_long(BPF_PROG_LOAD), attr, ctypes.c_long(128))
        if fd >= 0:
            return fd
        e = ctypes.get_errno()
        if e != errno.EAGAIN:
            break
    raise OSError(e, f"BPF_PROG_LOAD: {os.strerror(e)}")
