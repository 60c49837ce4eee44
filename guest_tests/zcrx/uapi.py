"""io_uring and zcrx uapi: constants and ctypes structs (x86_64, Linux 7.3).

Mirrors include/uapi/linux/io_uring.h and include/uapi/linux/io_uring/zcrx.h;
layout.py checks every struct here against the headers of the running kernel.
"""

import ctypes
from ctypes import c_int32 as s32
from ctypes import c_uint8 as u8
from ctypes import c_uint16 as u16
from ctypes import c_uint32 as u32
from ctypes import c_uint64 as u64

# syscalls (x86_64)
NR_IO_URING_SETUP = 425
NR_IO_URING_ENTER = 426
NR_IO_URING_REGISTER = 427

# io_uring_setup() flags
IORING_SETUP_IOPOLL = 1 << 0
IORING_SETUP_SQPOLL = 1 << 1
IORING_SETUP_CQSIZE = 1 << 3
IORING_SETUP_CLAMP = 1 << 4
IORING_SETUP_R_DISABLED = 1 << 6
IORING_SETUP_SUBMIT_ALL = 1 << 7
IORING_SETUP_COOP_TASKRUN = 1 << 8
IORING_SETUP_TASKRUN_FLAG = 1 << 9
IORING_SETUP_SQE128 = 1 << 10
IORING_SETUP_CQE32 = 1 << 11
IORING_SETUP_SINGLE_ISSUER = 1 << 12
IORING_SETUP_DEFER_TASKRUN = 1 << 13
IORING_SETUP_NO_MMAP = 1 << 14
IORING_SETUP_NO_SQARRAY = 1 << 16
IORING_SETUP_CQE_MIXED = 1 << 18

# the flag set zcrx wants
ZCRX_RING_FLAGS = IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQE32

IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_FEAT_NODROP = 1 << 1
IORING_FEAT_EXT_ARG = 1 << 8

# mmap offsets
IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
IORING_OFF_MMAP_MASK = 0xF8000000
IORING_MAP_OFF_ZCRX_REGION = 0x30000000  # io_uring/memmap.h (not uapi)
IORING_OFF_ZCRX_SHIFT = 16  # io_uring/memmap.h (not uapi)

IORING_SQ_NEED_WAKEUP = 1 << 0
IORING_SQ_CQ_OVERFLOW = 1 << 1
IORING_SQ_TASKRUN = 1 << 2

IORING_ENTER_GETEVENTS = 1 << 0
IORING_ENTER_EXT_ARG = 1 << 3

IORING_CQE_F_BUFFER = 1 << 0
IORING_CQE_F_MORE = 1 << 1
IORING_CQE_F_SOCK_NONEMPTY = 1 << 2
IORING_CQE_F_NOTIF = 1 << 3
IORING_CQE_F_SKIP = 1 << 5
IORING_CQE_F_32 = 1 << 15

# opcodes used here
IORING_OP_NOP = 0
IORING_OP_RECV = 27
IORING_OP_RECV_ZC = 58
IORING_OP_LAST = 65

IORING_RECVSEND_POLL_FIRST = 1 << 0
IORING_RECV_MULTISHOT = 1 << 1

# io_uring_register() opcodes
IORING_REGISTER_PROBE = 8
IORING_REGISTER_ZCRX_IFQ = 32
IORING_REGISTER_MEM_REGION = 34
IORING_REGISTER_ZCRX_CTRL = 36

IORING_MEM_REGION_TYPE_USER = 1

# zcrx.h
IORING_ZCRX_AREA_SHIFT = 48
IORING_ZCRX_AREA_MASK = ~((1 << IORING_ZCRX_AREA_SHIFT) - 1) & 0xFFFFFFFFFFFFFFFF
IORING_ZCRX_AREA_DMABUF = 1
ZCRX_REG_IMPORT = 1
ZCRX_REG_NODEV = 2
ZCRX_FEATURE_RX_PAGE_SIZE = 1 << 0
ZCRX_FEATURE_EVENT = 1 << 1
ZCRX_EVENT_ALLOC_FAIL = 0
ZCRX_EVENT_COPY = 1
ZCRX_EVENT_DESC_FLAG_STATS = 1 << 0
ZCRX_CTRL_FLUSH_RQ = 0
ZCRX_CTRL_EXPORT = 1
ZCRX_CTRL_ARM_EVENT = 2
ZCRX_CTRL_ADD_AREA = 3

# kernel-internal limits (io_uring/zcrx.c), observable through the uapi
IO_RQ_MAX_ENTRIES = 32768
ZCRX_MAX_AREAS = 1024
ZCRX_FLUSH_BATCH = 32


class Struct(ctypes.Structure):
    def __repr__(self):
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n, *_ in self._fields_)
        return f"{type(self).__name__}({fields})"


class io_uring_sqe(Struct):
    _fields_ = [
        ("opcode", u8),
        ("flags", u8),
        ("ioprio", u16),
        ("fd", s32),
        ("off", u64),  # union: off / addr2 / {cmd_op, __pad1}
        ("addr", u64),  # union: addr / splice_off_in / {level, optname}
        ("len", u32),
        ("op_flags", u32),  # union: rw_flags / msg_flags / ...
        ("user_data", u64),
        ("buf_index", u16),
        ("personality", u16),
        ("file_index", u32),  # union: splice_fd_in / file_index / zcrx_ifq_idx / ...
        ("addr3", u64),
        ("__pad2", u64 * 1),
    ]


class io_uring_cqe(Struct):
    _fields_ = [("user_data", u64), ("res", s32), ("flags", u32)]


class io_sqring_offsets(Struct):
    _fields_ = [
        (n, u32) for n in ("head", "tail", "ring_mask", "ring_entries", "flags", "dropped", "array", "resv1")
    ] + [("user_addr", u64)]


class io_cqring_offsets(Struct):
    _fields_ = [
        (n, u32) for n in ("head", "tail", "ring_mask", "ring_entries", "overflow", "cqes", "flags", "resv1")
    ] + [("user_addr", u64)]


class io_uring_params(Struct):
    _fields_ = [
        ("sq_entries", u32),
        ("cq_entries", u32),
        ("flags", u32),
        ("sq_thread_cpu", u32),
        ("sq_thread_idle", u32),
        ("features", u32),
        ("wq_fd", u32),
        ("resv", u32 * 3),
        ("sq_off", io_sqring_offsets),
        ("cq_off", io_cqring_offsets),
    ]


class io_uring_getevents_arg(Struct):
    _fields_ = [("sigmask", u64), ("sigmask_sz", u32), ("min_wait_usec", u32), ("ts", u64)]


class kernel_timespec(Struct):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


class io_uring_region_desc(Struct):
    _fields_ = [
        ("user_addr", u64),
        ("size", u64),
        ("flags", u32),
        ("id", u32),
        ("mmap_offset", u64),
        ("__resv", u64 * 4),
    ]


class io_uring_zcrx_rqe(Struct):
    _fields_ = [("off", u64), ("len", u32), ("__pad", u32)]


class io_uring_zcrx_cqe(Struct):
    _fields_ = [("off", u64), ("__pad", u64)]


class io_uring_zcrx_offsets(Struct):
    _fields_ = [("head", u32), ("tail", u32), ("rqes", u32), ("__resv2", u32), ("__resv", u64 * 2)]


class io_uring_zcrx_area_reg(Struct):
    _fields_ = [
        ("addr", u64),
        ("len", u64),
        ("rq_area_token", u64),
        ("flags", u32),
        ("dmabuf_fd", u32),
        ("__resv2", u64 * 2),
    ]


class zcrx_stats(Struct):
    _fields_ = [("copy_count", u64), ("copy_bytes", u64)]


class zcrx_event_desc(Struct):
    _fields_ = [
        ("user_data", u64),
        ("type_mask", u32),
        ("flags", u32),
        ("stats_offset", u64),
        ("__resv2", u64 * 9),
    ]


class io_uring_zcrx_ifq_reg(Struct):
    _fields_ = [
        ("if_idx", u32),
        ("if_rxq", u32),
        ("rq_entries", u32),
        ("flags", u32),
        ("area_ptr", u64),
        ("region_ptr", u64),
        ("offsets", io_uring_zcrx_offsets),
        ("zcrx_id", u32),
        ("rx_buf_len", u32),
        ("event_desc", u64),
        ("__resv", u64 * 2),
    ]


class zcrx_ctrl_flush_rq(Struct):
    _fields_ = [("__resv", u64 * 6)]


class zcrx_ctrl_export(Struct):
    _fields_ = [("zcrx_fd", u32), ("__resv1", u32 * 11)]


class zcrx_ctrl_arm_event(Struct):
    _fields_ = [("event_type", u32), ("__resv", u32 * 11)]


class zcrx_ctrl_add_area(Struct):
    _fields_ = [("area_ptr", u64), ("__resv", u64 * 5)]


class _zcrx_ctrl_union(ctypes.Union):
    _fields_ = [
        ("zc_export", zcrx_ctrl_export),
        ("zc_flush", zcrx_ctrl_flush_rq),
        ("zc_arm_event", zcrx_ctrl_arm_event),
        ("zc_area", zcrx_ctrl_add_area),
    ]


class zcrx_ctrl(Struct):
    _anonymous_ = ("u",)
    _fields_ = [("zcrx_id", u32), ("op", u32), ("__resv", u64 * 2), ("u", _zcrx_ctrl_union)]


# struct name -> (ctypes class, {C member path: python attribute path}) for layout.py.
# The C path is what offsetof() takes; only members we touch are listed.
LAYOUT = {
    "io_uring_sqe": (
        io_uring_sqe,
        {
            "opcode": "opcode",
            "flags": "flags",
            "ioprio": "ioprio",
            "fd": "fd",
            "off": "off",
            "addr": "addr",
            "len": "len",
            "msg_flags": "op_flags",
            "user_data": "user_data",
            "buf_index": "buf_index",
            "personality": "personality",
            "zcrx_ifq_idx": "file_index",
            "addr3": "addr3",
        },
    ),
    "io_uring_cqe": (io_uring_cqe, {"user_data": "user_data", "res": "res", "flags": "flags"}),
    "io_sqring_offsets": (io_sqring_offsets, None),
    "io_cqring_offsets": (io_cqring_offsets, None),
    "io_uring_params": (io_uring_params, None),
    "io_uring_getevents_arg": (io_uring_getevents_arg, None),
    "io_uring_region_desc": (io_uring_region_desc, None),
    "io_uring_zcrx_rqe": (io_uring_zcrx_rqe, None),
    "io_uring_zcrx_cqe": (io_uring_zcrx_cqe, None),
    "io_uring_zcrx_offsets": (io_uring_zcrx_offsets, None),
    "io_uring_zcrx_area_reg": (io_uring_zcrx_area_reg, None),
    "zcrx_stats": (zcrx_stats, None),
    "zcrx_event_desc": (zcrx_event_desc, None),
    "io_uring_zcrx_ifq_reg": (io_uring_zcrx_ifq_reg, None),
    "zcrx_ctrl_flush_rq": (zcrx_ctrl_flush_rq, None),
    "zcrx_ctrl_export": (zcrx_ctrl_export, None),
    "zcrx_ctrl_arm_event": (zcrx_ctrl_arm_event, None),
    "zcrx_ctrl_add_area": (zcrx_ctrl_add_area, None),
    "zcrx_ctrl": (
        zcrx_ctrl,
        {
            "zcrx_id": "zcrx_id",
            "op": "op",
            "__resv": "__resv",
            "zc_export.zcrx_fd": "u.zc_export.zcrx_fd",
            "zc_flush": "u.zc_flush",
            "zc_arm_event.event_type": "u.zc_arm_event.event_type",
            "zc_area.area_ptr": "u.zc_area.area_ptr",
        },
    ),
}

# constants whose value layout.py also checks against the headers
CONSTANTS = {
    n: globals()[n]
    for n in (
        "IORING_SETUP_CLAMP",
        "IORING_SETUP_CQSIZE",
        "IORING_SETUP_CQE32",
        "IORING_SETUP_SINGLE_ISSUER",
        "IORING_SETUP_DEFER_TASKRUN",
        "IORING_SETUP_CQE_MIXED",
        "IORING_SETUP_COOP_TASKRUN",
        "IORING_SETUP_SUBMIT_ALL",
        "IORING_SETUP_NO_SQARRAY",
        "IORING_OFF_SQ_RING",
        "IORING_OFF_CQ_RING",
        "IORING_OFF_SQES",
        "IORING_OFF_MMAP_MASK",
        "IORING_SQ_CQ_OVERFLOW",
        "IORING_ENTER_GETEVENTS",
        "IORING_ENTER_EXT_ARG",
        "IORING_CQE_F_MORE",
        "IORING_CQE_F_SKIP",
        "IORING_CQE_F_32",
        "IORING_OP_NOP",
        "IORING_OP_RECV",
        "IORING_OP_RECV_ZC",
        "IORING_OP_LAST",
        "IORING_RECV_MULTISHOT",
        "IORING_RECVSEND_POLL_FIRST",
        "IORING_REGISTER_ZCRX_IFQ",
        "IORING_REGISTER_ZCRX_CTRL",
        "IORING_REGISTER_PROBE",
        "IORING_REGISTER_MEM_REGION",
        "IORING_MEM_REGION_TYPE_USER",
        "IORING_ZCRX_AREA_SHIFT",
        "IORING_ZCRX_AREA_DMABUF",
        "ZCRX_REG_IMPORT",
        "ZCRX_REG_NODEV",
        "ZCRX_FEATURE_RX_PAGE_SIZE",
        "ZCRX_FEATURE_EVENT",
        "ZCRX_EVENT_ALLOC_FAIL",
        "ZCRX_EVENT_COPY",
        "ZCRX_EVENT_DESC_FLAG_STATS",
        "ZCRX_CTRL_FLUSH_RQ",
        "ZCRX_CTRL_EXPORT",
        "ZCRX_CTRL_ARM_EVENT",
        "ZCRX_CTRL_ADD_AREA",
    )
}
