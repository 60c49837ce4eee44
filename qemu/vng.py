"""Compose a virtme-ng (vng) command line for the same MachineSpec (--vm=vng).

vng boots the kernel under test its own way (its QEMU machine, its initramfs
when the transport modules are modular, virtme-ng-init) with the lab's image as
its root; the lab adds what makes the guest a lab guest through vng's own
options: the shares, the control NIC and the multi-queue test NIC as
--qemu-opts (the very arguments qemu/machine.py gives QEMU; the tap's
descriptors fetched by vng's QEMU, qemu/qemu_with_tap.py), a second serial
console (hvc0) as the console log, the lab's kernel arguments (--append), and the guest
setup of qemu/init as the script vng runs (--exec: qemu/vng-init, read from
the lab share). The developer's own vng options (--verbose, --debug,
--qemu-opts, ...) go in VNG_OPTS.
"""

import os
import shlex
from pathlib import Path

from qemu import qemu_with_tap
from qemu.machine import MachineSpec

HOSTNAME = "zcrx-guest"
# vng's console is the serial port (to /dev/null, or vng's output with
# --verbose), and the kernel's 8250 driver drives one serial console only: the
# lab's console log is a virtio console, whose driver replays the kernel log
# from its start when it comes up. The last console= makes it /dev/console.
LAB_CONSOLE = "hvc0"
# --exec: mount the lab share and run the setup script from it. Short on
# purpose: vng passes it base64-encoded on the kernel command line.
BOOTSTRAP = (
    "mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro,cache=loose lab /mnt"
    " && exec /bin/sh /mnt/qemu/vng-init"
)


class VngError(ValueError):
    """A spec vng cannot be given."""


def _raw(value) -> str:
    """VALUE for an option vng pastes into a shell command line unquoted."""
    text = str(value)
    if shlex.quote(text) != text:
        raise VngError(f"vng cannot be given {text!r}: it passes it to a shell unquoted")
    return text


def command(machine, spec: MachineSpec, vng_opts: str = "", vng: str = "vng") -> list[str]:
    """The vng command that boots SPEC on MACHINE's QEMU (an ARCHES class instance)."""
    if not spec.lab_dir:
        raise VngError("vng runs the guest setup from the lab share: the spec needs lab_dir")
    qemu_opts = [
        *(["-accel", "tcg,thread=single"] if spec.accel != "kvm" else []),
        "-chardev",
        f"file,id=lab-console,path={spec.console_log}",
        "-device",
        "virtio-serial-pci,id=lab-serial",
        "-device",
        "virtconsole,bus=lab-serial.0,chardev=lab-console",
        *machine._share("root", spec.rootfs, readonly=True),
        *machine.share_args(spec),
        *machine.control_nic_args(spec),
        *machine.test_nic_args(spec, fds=qemu_with_tap.PLACEHOLDER),
    ]
    cmd = [
        vng,
        f"--run={_raw(spec.kernel)}",
        f"--root={_raw(spec.rootfs)}",
        f"--name={HOSTNAME}",
        f"--memory={spec.memory_mb}M",
        f"--cpus={spec.cpus}",
        # The lab's shares are 9p; vng's virtio-fs attempt costs seconds per
        # share where only QEMU's old C virtiofsd exists (Debian 12), and
        # microvm (vng's choice with virtio-fs and KVM) has no PCI for the NICs.
        "--force-9p",
        "--disable-microvm",
        # --append values starting with "-" would read as options to vng: use =
        f"--append={' '.join([*machine.guest_kernel_args(spec), f'console={LAB_CONSOLE}'])}",
        f"--exec={BOOTSTRAP}",
    ]
    if spec.tap_fds:
        # vng closes the descriptors the lab passes: its QEMU fetches the tap's itself
        cmd.append(f"--qemu={_raw(Path(qemu_with_tap.__file__).resolve())}")
    if spec.accel != "kvm":
        cmd.append("--disable-kvm")  # the lab found KVM unusable here (host/vm/accel.py)
    cmd += shlex.split(vng_opts)
    # vng pastes --qemu-opts into a shell command line: quoted here, split there
    cmd.append(f"--qemu-opts={shlex.join(qemu_opts)}")
    return cmd


def confined(cmd: list[str], image_root) -> list[str]:
    """CMD run so that vng can neither outlive the lab nor write to the image.

    vng's QEMU is its grandchild (vng -> sh -> virtme-run -> QEMU), out of
    reach of the PR_SET_PDEATHSIG the lab gives its own child: in a PID
    namespace of their own, all of them die with the namespace's first
    process, and unshare kills that one when it dies itself (--kill-child).
    And when its kernel command line is long (ours is), vng writes a
    temporary init script into the root directory: the image, shared by
    every VM and cached. A private read-only bind mount of the image turns
    that write into a failure, which vng handles by keeping the command line.
    """
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    root = _raw(image_root)
    return [
        "unshare",
        *user,
        "--mount",
        "--pid",
        "--fork",
        "--kill-child=SIGKILL",
        "--",
        "sh",
        "-c",
        f'mount --bind -o ro {root} {root} && exec "$@"',
        "vng-confined",
        *cmd,
    ]
