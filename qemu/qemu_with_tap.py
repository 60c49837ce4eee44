#!/usr/bin/env python3
"""QEMU as vng starts it (--vm=vng), with the test NIC's tap.

vng starts QEMU through a shell and virtme-run, which close every descriptor the
lab passes on: given to vng as its QEMU (--qemu), this asks the lab for the tap's
queue descriptors over the unix socket named in ZCRX_LAB_TAP_SOCKET
(host/vm/testlink.py TestLink.offer_tap_fds), puts their numbers where an argument
says TAP_FDS, and becomes QEMU. Without TAP_FDS in its arguments (vng asking for
QEMU's version) it is QEMU at once.
"""

import os
import shutil
import socket
import sys
from pathlib import Path

PLACEHOLDER = "TAP_FDS"
QEMU = "qemu-system-x86_64"


def main(args: list[str]) -> None:
    if any(PLACEHOLDER in a for a in args):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from host.vm.testlink import recv_fds

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lab:
            lab.connect(os.environ["ZCRX_LAB_TAP_SOCKET"])
            fds = recv_fds(lab, 64)
        for fd in fds:
            os.set_inheritable(fd, True)
        args = [a.replace(PLACEHOLDER, ":".join(map(str, fds))) for a in args]
    qemu = shutil.which(QEMU)
    if not qemu:
        sys.exit(f"{QEMU} not found")
    os.execv(qemu, [qemu, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
