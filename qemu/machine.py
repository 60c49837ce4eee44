"""Compose QEMU command lines: one class per architecture, one spec per VM.

Two NICs: a control NIC on QEMU user networking whose only way in is a
loopback-bound host port forward to the guest's SSH server, dropbear (no host
routing, no outbound guest traffic), and a multi-queue virtio-net test NIC on a
tap whose queues QEMU gets as descriptors (host/vm/testlink.py makes the tap in
a namespace of its own).
The root is the cached image over 9p (read-only); the repository is shared at
/lab and the results directory at /results.
"""

from dataclasses import dataclass, field
from pathlib import Path

from guest_tests.contract import CONTROL_MAC, TEST_MAC


@dataclass
class MachineSpec:
    kernel: Path
    initrd: Path
    rootfs: Path
    console_log: Path
    ssh_port: int
    accel: str = "tcg"  # "kvm" or "tcg"
    memory_mb: int = 2048
    cpus: int = 2
    lab_dir: Path | None = None  # shared read-only at /lab
    results_dir: Path | None = None  # shared read-write at /results
    modules_dir: Path | None = None  # a kernel's modules, when the image lacks them
    uapi_dir: Path | None = None  # a tree's installed uapi headers, read-only at /kernel-uapi
    tap_fds: tuple[int, ...] = ()  # the test NIC's tap queues (host/vm/testlink.py); none: no test NIC
    tsc_khz: int | None = None  # the guest's TSC rate, when known (host/vm/accel.py host_tsc_khz)
    cmdline_extra: list[str] = field(default_factory=list)


class X86_64:
    binary = "qemu-system-x86_64"
    console = "ttyS0"

    def accel_args(self, accel: str) -> list[str]:
        if accel == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        # Multi-threaded TCG with several vCPUs hits an early-boot "Oops: int3"
        # (a code-patching race in TCG, not a kernel bug); single-threaded
        # TCG never did in our measurements.
        return ["-accel", "tcg,thread=single", "-cpu", "max"]

    def firmware_args(self, accel: str) -> list[str]:
        # qboot reaches the kernel in a fraction of SeaBIOS's time: it only
        # sets up what a direct kernel boot needs.
        qboot = Path("/usr/share/qemu/qboot.rom")
        return ["-bios", str(qboot)] if qboot.exists() else []

    def cmdline(self, spec: MachineSpec) -> str:
        args = [f"console={self.console}", "rdinit=/init"]
        if self.machine_type(spec.accel) == "pc":
            # The PC's legacy PCI interrupt links are ACPI methods; the kernel runs
            # them for each device it enables, about 90 ms of TCG per device (half a
            # second for the lab's). Every lab device uses MSI-X: the BIOS's routing
            # table is enough for the rest.
            args.append("acpi=noirq")
        return " ".join(args + self.guest_kernel_args(spec))

    @staticmethod
    def machine_type(accel: str) -> str:
        return "q35" if accel == "kvm" else "pc"

    def guest_kernel_args(self, spec: MachineSpec) -> list[str]:
        """Kernel arguments of a lab guest whoever boots it (this command, vng)."""
        args = [
            "panic=-1",
            "loglevel=5",
            "printk.devkmsg=on",
            "net.ifnames=0",
            "tsc=reliable",
            "no_timer_check",
            "rcupdate.rcu_expedited=1",
            "i8042.noaux",
            "i8042.nokbd",
            "mitigations=off",
            "nokaslr",
        ]
        if spec.tsc_khz:  # not calibrated in the guest, against an emulated PIT
            args.append(f"tsc_early_khz={spec.tsc_khz}")
        return [a for a in args + spec.cmdline_extra if a]

    def command(self, spec: MachineSpec) -> list[str]:
        cmd = [
            self.binary,
            *self.accel_args(spec.accel),
            "-machine",
            self.machine_type(spec.accel),
            *self.firmware_args(spec.accel),
            "-m",
            str(spec.memory_mb),
            "-smp",
            str(spec.cpus),
            "-nographic",
            "-nodefaults",
            "-no-user-config",
            "-no-reboot",
            "-kernel",
            str(spec.kernel),
            "-initrd",
            str(spec.initrd),
            "-append",
            self.cmdline(spec),
            "-chardev",
            f"file,id=console,path={spec.console_log}",
            "-serial",
            "chardev:console",
            "-device",
            "virtio-rng-pci",
            *self.control_nic_args(spec),
        ]
        cmd += self._share("root", spec.rootfs, readonly=True)
        cmd += self.share_args(spec)
        cmd += self.test_nic_args(spec)
        return cmd

    # The pieces below are what makes a guest a lab guest; the vng composer
    # (qemu/vng.py) hands them to QEMU through vng's --qemu-opts.
    @staticmethod
    def control_nic_args(spec: MachineSpec) -> list[str]:
        return [
            "-netdev",
            f"user,id=control,restrict=on,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22",
            "-device",
            f"virtio-net-pci,netdev=control,mac={CONTROL_MAC}",
        ]

    def share_args(self, spec: MachineSpec) -> list[str]:
        """The lab's shares other than the root image, by their 9p mount tags."""
        args = []
        if spec.lab_dir:
            args += self._share("lab", spec.lab_dir, readonly=True)
        if spec.results_dir:
            args += self._share("results", spec.results_dir, readonly=False)
        if spec.modules_dir:
            args += self._share("modules", spec.modules_dir, readonly=True)
        if spec.uapi_dir:
            args += self._share("uapi", spec.uapi_dir, readonly=True)
        return args

    @staticmethod
    def test_nic_args(spec: MachineSpec, fds: str | None = None) -> list[str]:
        """The multi-queue test NIC on the tap's queue descriptors: spec.tap_fds, or FDS
        for a QEMU that gets them later (vng: qemu/qemu_with_tap.py fills them in)."""
        if not spec.tap_fds:
            return []
        return [
            "-netdev",
            f"tap,id=test,fds={fds or ':'.join(map(str, spec.tap_fds))}",
            "-device",
            f"virtio-net-pci,netdev=test,mac={TEST_MAC},mq=on,vectors={2 * len(spec.tap_fds) + 2}",
        ]

    @staticmethod
    def _share(tag: str, path: Path, readonly: bool) -> list[str]:
        opts = f"local,id={tag},path={path},security_model=none"
        if readonly:
            opts += ",readonly=on"
        return ["-fsdev", opts, "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]


ARCHES = {"x86_64": X86_64}
