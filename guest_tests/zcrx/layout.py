"""Check the ctypes structs in uapi.py against the uapi headers of the running kernel.

Compiles a tiny C program (gcc) that prints sizeof/offsetof of every struct and
member we use plus the value of every constant, and compares with ctypes.
"""

import ctypes
import glob
import os
import platform
import shutil
import subprocess
import tempfile

from guest_tests.contract import KERNEL_UAPI  # a tree's own `make headers` output

from . import uapi

HEADER = "linux/io_uring.h"


def header_dirs(release=None):
    """Include directories holding the kernel's uapi io_uring.h + io_uring/zcrx.h.

    Prefers the headers of the tree the kernel was built from (KERNEL_UAPI),
    then the running kernel's linux-headers package (Debian splits it into
    linux-headers-<rel> and linux-headers-<base>-common), falls back to /usr/include.
    Returns (list_of_-I_dirs, description)."""
    if os.environ.get("ZCRX_UAPI_INCLUDE"):  # explicit override: colon-separated -I dirs
        dirs = os.environ["ZCRX_UAPI_INCLUDE"].split(":")
        return dirs, dirs[0]
    if os.path.exists(os.path.join(KERNEL_UAPI, "linux", "io_uring", "zcrx.h")):
        return [KERNEL_UAPI], KERNEL_UAPI
    release = release or platform.release()
    roots = [f"/usr/src/linux-headers-{release}"]
    # the -common package the arch package points to
    build = f"/lib/modules/{release}/build"
    if os.path.isdir(build):
        roots.append(os.path.realpath(build))
    roots += sorted(glob.glob("/usr/src/linux-headers-*-common"))
    for root in roots:
        cand = [root] + [os.path.realpath(p) for p in glob.glob(os.path.join(root, "*")) if os.path.islink(p)]
        for r in cand:
            uapi_dir = os.path.join(r, "include", "uapi")
            if os.path.exists(os.path.join(uapi_dir, "linux", "io_uring", "zcrx.h")):
                dirs = [uapi_dir]
                for extra in (
                    os.path.join(r, "arch", "x86", "include", "uapi"),
                    os.path.join(roots[0], "arch", "x86", "include", "generated", "uapi"),
                    os.path.join(r, "arch", "x86", "include", "generated", "uapi"),
                ):
                    if os.path.isdir(extra) and extra not in dirs:
                        dirs.append(extra)
                return dirs, uapi_dir
    if os.path.exists("/usr/include/linux/io_uring/zcrx.h"):
        return [], "/usr/include"
    raise FileNotFoundError("no uapi linux/io_uring/zcrx.h for kernel " + release)


def _members(cls, mapping):
    if mapping is not None:
        return mapping
    return {name: name for name, *_ in cls._fields_}


def _py_offset(cls, path):
    off, cur = 0, cls
    for part in path.split("."):
        field = getattr(cur, part)
        off += field.offset
        cur = dict((n, t) for n, t, *_ in cur._fields_)[part]
    return off, ctypes.sizeof(cur)


def c_source():
    lines = ["#include <stdio.h>", "#include <stddef.h>", f"#include <{HEADER}>", "int main(void) {"]
    for sname, (cls, mapping) in uapi.LAYOUT.items():
        lines.append(f'  printf("S {sname} %zu\\n", sizeof(struct {sname}));')
        for cpath in _members(cls, mapping):
            lines.append(
                f'  printf("M {sname}.{cpath} %zu %zu\\n", '
                f"offsetof(struct {sname}, {cpath}), "
                f"sizeof(((struct {sname} *)0)->{cpath}));"
            )
    for name in uapi.CONSTANTS:
        lines.append(f'  printf("C {name} %llu\\n", (unsigned long long)({name}));')
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


def find_cc():
    for cc in ("gcc", "gcc-14", "cc", "clang"):
        if shutil.which(cc):
            return cc
    raise FileNotFoundError("no C compiler (gcc, gcc-14, cc, clang)")


def check(cc=None):
    """Returns {"headers": dir, "mismatches": [...], "checked": n, "compiler": ...}."""
    cc = cc or find_cc()
    dirs, where = header_dirs()
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "layout.c"), os.path.join(tmp, "layout")
        with open(src, "w") as f:
            f.write(c_source())
        cmd = [cc, "-Wall", "-o", exe, src] + [a for d in dirs for a in ("-I", d)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr}")
        out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    mismatches, checked = [], 0
    for line in out.splitlines():
        kind, name, *vals = line.split()
        checked += 1
        if kind == "S":
            cls = uapi.LAYOUT[name][0]
            if ctypes.sizeof(cls) != int(vals[0]):
                mismatches.append(f"sizeof({name}): C {vals[0]} ctypes {ctypes.sizeof(cls)}")
        elif kind == "M":
            sname, cpath = name.split(".", 1)
            cls, mapping = uapi.LAYOUT[sname]
            off, size = _py_offset(cls, _members(cls, mapping)[cpath])
            if (off, size) != (int(vals[0]), int(vals[1])):
                mismatches.append(f"{name}: C off/size {vals[0]}/{vals[1]} ctypes {off}/{size}")
        elif kind == "C":
            py = uapi.CONSTANTS[name] & 0xFFFFFFFFFFFFFFFF
            if py != int(vals[0]):
                mismatches.append(f"{name}: C {vals[0]} python {py}")
    cc_version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    return {
        "headers": where,
        "include_dirs": dirs,
        "checked": checked,
        "mismatches": mismatches,
        "compiler": cc_version.splitlines()[0],
    }
