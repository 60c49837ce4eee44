"""Devmem TCP receive in Python, as ncdevmem does it (tools/testing/selftests/drivers/net/hw/
ncdevmem.c): recvmsg(MSG_SOCK_DEVMEM) returns the payload that sits in a dma-buf as
SCM_DEVMEM_DMABUF cmsgs (struct dmabuf_cmsg: where in the dma-buf, how long, a token), the
payload the kernel copied as SCM_DEVMEM_LINEAR cmsgs plus the bytes in the buffer;
setsockopt(SO_DEVMEM_DONTNEED) with struct dmabuf_token ranges gives frags back. And
transmit: sendmsg(MSG_ZEROCOPY) with an SCM_DEVMEM_DMABUF cmsg sends dma-buf bytes, and
the error queue says when the NIC is done with them."""

import ctypes
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from guest_tests.zcrx.mem import libc, oserror

# include/linux/socket.h, include/uapi/asm-generic/socket.h
MSG_SOCK_DEVMEM = 0x2000000
SO_DEVMEM_LINEAR = SCM_DEVMEM_LINEAR = 78
SO_DEVMEM_DMABUF = SCM_DEVMEM_DMABUF = 79
SO_DEVMEM_DONTNEED = 80
# include/uapi/linux/uio.h
DMABUF_CMSG = struct.Struct("=QIIII")  # frag_offset, frag_size, frag_token, dmabuf_id, flags
DMABUF_TOKEN = struct.Struct("=II")  # token_start, token_count
MAX_DONTNEED_TOKENS = 128  # net/core/sock.c: struct dmabuf_token entries per call


@dataclass
class Frag:
    kind: int  # SCM_DEVMEM_DMABUF or SCM_DEVMEM_LINEAR
    offset: int
    size: int
    token: int
    dmabuf_id: int
    flags: int


@dataclass
class DevmemStream:
    """What recvmsg(MSG_SOCK_DEVMEM) returned for one connection."""

    data: bytearray = field(default_factory=bytearray)  # payload, linear and dma-buf frags in order
    frags: list = field(default_factory=list)  # every cmsg as a Frag
    odd_cmsgs: list = field(default_factory=list)  # (level, type, len) of any other cmsg
    short: list = field(default_factory=list)  # (return value, sum of cmsg sizes) that differ
    ctrunc: int = 0  # calls that came back with MSG_CTRUNC
    freed: list = field(default_factory=list)  # (tokens given, SO_DEVMEM_DONTNEED's return)
    eof: bool = False
    error: int = 0  # errno of a failed recvmsg
    idle: bool = False  # stopped after `idle` seconds without data

    def dmabuf_frags(self):
        return [f for f in self.frags if f.kind == SCM_DEVMEM_DMABUF]

    def linear_frags(self):
        return [f for f in self.frags if f.kind == SCM_DEVMEM_LINEAR]


def dontneed(sock, tokens=(), raw=None) -> int:
    """setsockopt(SO_DEVMEM_DONTNEED) with (token_start, token_count) ranges (or the option
    bytes `raw`): the number of frags the kernel freed (the syscall's return, which
    Python's setsockopt drops)."""
    if raw is None:
        raw = b"".join(DMABUF_TOKEN.pack(s, n) for s, n in tokens)
    buf = ctypes.create_string_buffer(raw, len(raw))
    ret = libc.setsockopt(sock.fileno(), socket.SOL_SOCKET, SO_DEVMEM_DONTNEED, buf, len(raw))
    if ret < 0:
        raise oserror(ctypes.get_errno())
    return ret


def ranges(tokens) -> list:
    """Tokens as (start, count) ranges of consecutive values, in the given order."""
    out = []
    for t in tokens:
        if out and out[-1][0] + out[-1][1] == t:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((t, 1))
    return out


def give_back(sock, frags, st):
    """Return the tokens of `frags` in calls of at most MAX_DONTNEED_TOKENS ranges; each
    call's (tokens given, frags freed) goes to st.freed."""
    rs = ranges([f.token for f in frags])
    for i in range(0, len(rs), MAX_DONTNEED_TOKENS):
        part = rs[i : i + MAX_DONTNEED_TOKENS]
        st.freed.append((sum(n for _, n in part), dontneed(sock, part)))


def recv_devmem(sock, read_dmabuf, size, keep=False, bufsize=1 << 16, timeout=60.0, idle=None):
    """recvmsg(MSG_SOCK_DEVMEM) until EOF, `size` bytes, `idle` seconds without data or
    `timeout`: a DevmemStream. A dma-buf frag's bytes are read with read_dmabuf(offset,
    size) (the dma-buf's CPU mapping); its token is given back at once unless `keep`."""
    st = DevmemStream()
    ancbuf = socket.CMSG_SPACE(DMABUF_CMSG.size) * 2048
    deadline = time.monotonic() + timeout
    while len(st.data) < size and time.monotonic() < deadline:
        sock.settimeout(min(idle or timeout, max(0.1, deadline - time.monotonic())))
        try:
            msg, anc, flags, _ = sock.recvmsg(bufsize, ancbuf, MSG_SOCK_DEVMEM)
        except TimeoutError:
            st.idle = idle is not None
            break
        except OSError as e:
            st.error = e.errno
            break
        if not msg:
            st.eof = True
            break
        st.ctrunc += bool(flags & socket.MSG_CTRUNC)
        linear, got, cms = 0, 0, []
        for level, kind, raw in anc:
            if level != socket.SOL_SOCKET or kind not in (SCM_DEVMEM_DMABUF, SCM_DEVMEM_LINEAR):
                st.odd_cmsgs.append((level, kind, len(raw)))
                continue
            f = Frag(kind, *DMABUF_CMSG.unpack(raw[: DMABUF_CMSG.size]))
            if kind == SCM_DEVMEM_LINEAR:  # the bytes are in msg, in cmsg order
                st.data += msg[linear : linear + f.size]
                linear += f.size
            else:
                st.data += read_dmabuf(f.offset, f.size)
            cms.append(f)
            got += f.size
        if got != len(msg):
            st.short.append((len(msg), got))
        st.frags += cms
        new = [f for f in cms if f.kind == SCM_DEVMEM_DMABUF]
        if not keep and new:
            give_back(sock, new, st)
    return st


# devmem TCP transmit (ncdevmem's do_client): the payload is named by offsets into a
# dma-buf bound with netdev bind-tx, not by user memory
class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


libc.sendmsg.restype = ctypes.c_ssize_t
CMSGHDR = struct.Struct("=Qii")  # cmsg_len, cmsg_level, cmsg_type (x86_64)
MSG_ZEROCOPY = 0x4000000
SO_EE_ORIGIN_ZEROCOPY = 5  # include/uapi/linux/errqueue.h
SO_EE_CODE_ZEROCOPY_COPIED = 1
SOCK_EXTENDED_ERR = struct.Struct("=IBBBBII")  # errno, origin, type, code, pad, info, data
RECVERR = {(socket.IPPROTO_IP, 11), (socket.IPPROTO_IPV6, 25)}  # IP_RECVERR, IPV6_RECVERR


def send_devmem(sock, dmabuf_id: int, spans, flags=MSG_ZEROCOPY) -> int:
    """sendmsg() of the dma-buf's bytes at (offset, length) `spans`, with an
    SCM_DEVMEM_DMABUF cmsg naming the bind-tx binding `dmabuf_id`: the kernel takes each
    iov_base as an offset into the dma-buf (net_devmem_get_niov_at()). Bytes sent."""
    iov = (_Iovec * len(spans))(*[_Iovec(off, n) for off, n in spans])
    data = struct.pack("=I", dmabuf_id)
    cmsg = CMSGHDR.pack(CMSGHDR.size + len(data), socket.SOL_SOCKET, SCM_DEVMEM_DMABUF) + data
    control = ctypes.create_string_buffer(cmsg, socket.CMSG_SPACE(len(data)))
    msg = _Msghdr(None, 0, iov, len(spans), ctypes.cast(control, ctypes.c_void_p), len(control), 0)
    ret = libc.sendmsg(sock.fileno(), ctypes.byref(msg), flags)
    if ret < 0:
        raise oserror(ctypes.get_errno())
    return ret


def zerocopy_completions(sock, sends: int, timeout=30.0) -> list:
    """MSG_ZEROCOPY notifications from the socket's error queue until they cover `sends`
    sendmsg() calls (or `timeout`): [(first, last, copied)] per notification, the range of
    calls it completes and whether the kernel copied instead (SO_EE_CODE_ZEROCOPY_COPIED).
    Other errors on the queue come back as ('errno', origin, errno)."""
    out, done = [], 0
    deadline = time.monotonic() + timeout
    while done < sends and time.monotonic() < deadline:
        if not select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break
        try:
            _, anc, _, _ = sock.recvmsg(0, socket.CMSG_SPACE(64), socket.MSG_ERRQUEUE)
        except BlockingIOError:
            continue
        for level, kind, raw in anc:
            if (level, kind) not in RECVERR:
                continue
            err, origin, _, code, _, first, last = SOCK_EXTENDED_ERR.unpack(raw[: SOCK_EXTENDED_ERR.size])
            if origin != SO_EE_ORIGIN_ZEROCOPY or err:
                out.append(("errno", origin, err))
                continue
            out.append((first, last, bool(code & SO_EE_CODE_ZEROCOPY_COPIED)))
            done += last - first + 1
    return out
