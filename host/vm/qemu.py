"""VM lifecycle: boot a kernel on the guest image, run commands, tear down.

One VM per test session, reused; restarted only after a crash. Every QEMU
started here dies with its parent (PR_SET_PDEATHSIG), is killed on normal exit
and on SIGTERM/SIGHUP, and its tap (in a namespace of its own, host/vm/testlink.py)
vanishes with it, so no process or interface outlives a run. Under --vm=vng
QEMU is virtme-ng's grandchild: vng runs in a PID namespace of its own that
dies with it (qemu/vng.py confined), and its process group is killed with it.
"""

import atexit
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from host.errors import BootError, LabError
from host.vm.accel import host_tsc_khz, pick_accel
from host.vm.initramfs import initramfs
from host.vm.ssh import GuestTimeout, Result, Ssh
from host.vm.testlink import TestLink
from host.vm.vmlinux import boot_image
from qemu import vng
from qemu.machine import ARCHES, MachineSpec

REPO = Path(__file__).resolve().parents[2]
# A KASAN+lockdep kernel under TCG on a loaded 2-core machine needs minutes.
BOOT_TIMEOUT = {"kvm": 60, "tcg": 300}
PORT_TRIES = 3
INIT_DONE = b"zcrx-lab: init done"  # what qemu/init and qemu/vng-init write to the console
_live: set["VM"] = set()


class _PortTaken(Exception):
    """QEMU could not bind the SSH port forward: someone took the port first."""


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setpgrp()  # Ctrl-C goes to us; we stop QEMU ourselves, in order


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cleanup_all(*_args) -> None:
    for vm in list(_live):
        vm.kill()


def _on_signal(signum, _frame) -> None:
    _cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(_cleanup_all)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    if signal.getsignal(_sig) in (signal.SIG_DFL, None):
        signal.signal(_sig, _on_signal)


def _vng_binary() -> str:
    """virtme-ng's vng, from the lab's virtual environment (requirements.txt)."""
    beside = Path(sys.executable).parent / "vng"
    found = str(beside) if beside.exists() else shutil.which("vng")
    if not found:
        raise LabError("--vm=vng: virtme-ng is not installed (python3 -m host setup installs it into .venv)")
    return found


def _vng_env() -> dict[str, str]:
    # vng runs virtme-run through a shell, by name: it must be on PATH
    return dict(os.environ, PATH=f"{Path(_vng_binary()).parent}:{os.environ.get('PATH', '')}")


def _kill_group(pgid: int, limit: float = 10.0) -> None:
    """Kill the process group PGID and wait until it is gone.

    vng's QEMU is not our child but vng's grandchild, in vng's process group
    (_die_with_parent made it one): waiting for our child is not waiting for
    QEMU, and its tap goes only with it.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _copy(pipe, path: Path) -> None:
    with open(path, "wb") as out:
        while chunk := pipe.read1(65536):
            out.write(chunk)
            out.flush()


class VM:
    def __init__(
        self,
        kernel,
        image,
        results_dir: Path,
        queues: int = 4,
        arch: str = "x86_64",
        cmdline: str = "",
        launcher: str = "qemu",
        vng_opts: str = "",
    ):
        self.kernel, self.image, self.results_dir = kernel, image, results_dir
        self.queues = queues
        self.cmdline = cmdline.split()
        self.machine = ARCHES[arch]()
        self.accel, self.accel_reason = pick_accel(self.machine.binary, kernel.image)
        self.tsc_khz = host_tsc_khz() if self.accel == "tcg" else None  # KVM guests have kvmclock
        self.proc: subprocess.Popen | None = None
        self.ssh: Ssh | None = None
        self.boots = 0
        self.boot_seconds = 0.0
        self.console_log: Path | None = None
        self.test_link: TestLink | None = None
        self.no_test_link = ""  # why there is no test NIC, when there is none
        self.launcher, self.vng_opts = launcher, vng_opts
        self.output_log: Path | None = None  # vng's output, copied by self.drain
        self.drain: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        self.boots += 1
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.console_log = self.results_dir / f"console-boot{self.boots}.log"
        # _free_port() only finds a port free a moment ago: another VM (a parallel
        # worker's, another user's) may take it before QEMU binds it. QEMU then
        # exits at once naming the forwarding rule; a fresh port is tried.
        for attempt in range(PORT_TRIES):
            try:
                return self._boot()
            except _PortTaken:
                if attempt == PORT_TRIES - 1:
                    raise LabError(f"no free SSH port for QEMU after {PORT_TRIES} tries") from None

    def _boot(self) -> None:
        self.console_log.write_text("")
        try:
            self.test_link = TestLink(self.queues, owner=str(self.results_dir))
        except LabError as exc:
            self.test_link, self.no_test_link = None, str(exc)
        modules = self.kernel.modules
        spec = MachineSpec(
            # vng boots what it is given its own way: the bzImage
            kernel=boot_image(self.kernel, self.accel) if self.launcher == "qemu" else self.kernel.image,
            initrd=initramfs(self.kernel),
            rootfs=self.image.root,
            console_log=self.console_log,
            ssh_port=_free_port(),
            accel=self.accel,
            lab_dir=REPO,
            results_dir=self.results_dir,
            modules_dir=modules if modules and not modules.is_relative_to(self.image.root) else None,
            uapi_dir=self.kernel.uapi_headers,
            tap_fds=tuple(self.test_link.tap_fds) if self.test_link else (),
            tsc_khz=self.tsc_khz,
            cmdline_extra=self.cmdline,
        )
        cmd = self._command(spec)
        join = shlex.join if self.launcher == "vng" else " ".join  # vng's has spaces in arguments
        (self.results_dir / f"qemu-boot{self.boots}.cmd").write_text(join(cmd) + "\n")
        env = None
        if self.launcher == "vng":
            env = _vng_env()
            if self.test_link:  # vng closes what we pass: qemu/qemu_with_tap.py asks for them
                env["ZCRX_LAB_TAP_SOCKET"] = str(self.test_link.offer_tap_fds())
        start = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=spec.tap_fds if self.launcher == "qemu" else (),
            preexec_fn=_die_with_parent,
            env=env,
        )
        self._drain_output()
        _live.add(self)
        if self.test_link:
            self.test_link.close_tap_fds()
        self.ssh = Ssh(spec.ssh_port, self.image.ssh_key)
        try:
            self.ssh.connect(start + BOOT_TIMEOUT[self.accel], self.alive, self._init_done)
        except LabError as exc:
            qemu_said = self._qemu_output()
            # QEMU failing before the kernel said a word (bad option, no
            # memory) is the lab's failure; anything else is the kernel's.
            qemu_failed = self.proc.poll() not in (None, 0) and not self.console_log.stat().st_size
            self.kill()
            if qemu_failed and "host forwarding rule" in qemu_said:
                raise _PortTaken() from None
            raise (LabError if qemu_failed else BootError)(
                f"kernel {self.kernel.describe()} did not boot to SSH ({exc}); "
                f"console tail:\n{self.console_tail()}"
                + (f"\n{self._launcher_name()}: {qemu_said}" if qemu_said else "")
            ) from None
        self.boot_seconds = time.monotonic() - start

    def _command(self, spec: MachineSpec) -> list[str]:
        if self.launcher == "qemu":
            return [str(a) for a in self.machine.command(spec)]
        if self.kernel.config.get("VIRTIO_CONSOLE") not in ("y", "m"):
            raise LabError(
                f"--vm=vng: kernel {self.kernel.describe()} lacks CONFIG_VIRTIO_CONSOLE: vng runs the "
                "guest's setup script over virtio serial ports and the lab's console log is a virtio console"
            )
        try:
            return vng.confined(vng.command(self.machine, spec, self.vng_opts, _vng_binary()), spec.rootfs)
        except vng.VngError as exc:
            raise LabError(f"--vm=vng: {exc}") from None

    def _drain_output(self) -> None:
        """vng's output (its guest script's, and with --vng-opts=--verbose the
        kernel's serial console) would fill the pipe and stall QEMU: copied
        to vng-bootN.log as it comes. QEMU alone says a few lines at most.
        A file is no substitute for the pipe: QEMU opens /proc/self/fd/1 and
        2 once per chardev, each at offset 0 of a file."""
        self.output_log = self.drain = None
        if self.launcher != "vng":
            return
        self.output_log = self.results_dir / f"vng-boot{self.boots}.log"
        self.drain = threading.Thread(
            target=_copy, args=(self.proc.stdout, self.output_log), name="vng-output", daemon=True
        )
        self.drain.start()

    def _launcher_name(self) -> str:
        return "QEMU" if self.launcher == "qemu" else "vng"

    def _init_done(self) -> bool:
        """The guest's init said it is done (qemu/init, qemu/vng-init): its network is up."""
        return INIT_DONE in self.console_log.read_bytes()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Power off cleanly; kill if the guest does not go in time."""
        if self.alive() and self.ssh:
            try:
                self.ssh.run("sync; busybox poweroff -f", timeout=5)
            except GuestTimeout:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        if self.ssh:
            self.ssh.close()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            if self.launcher == "vng":
                _kill_group(self.proc.pid)
                self.drain.join(timeout=5)  # the pipe's writers are gone: at its end
            if self.proc.stdout:
                self.proc.stdout.close()
        if self.test_link:
            self.test_link.close()
            self.test_link = None
        _live.discard(self)

    # -- guest I/O -------------------------------------------------------------
    def run(self, cmd: str, timeout: float = 60, stdin: bytes | None = None) -> Result:
        return self.ssh.run(cmd, timeout=timeout, stdin=stdin)

    def console_size(self) -> int:
        return self.console_log.stat().st_size if self.console_log else 0

    def console_since(self, offset: int) -> str:
        with open(self.console_log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def console_tail(self, lines: int = 25) -> str:
        text = self.console_log.read_text(errors="replace") if self.console_log else ""
        return "\n".join(text.splitlines()[-lines:]) or "(empty console)"

    def _qemu_output(self) -> str:
        if self.output_log and self.proc and self.proc.poll() is not None:
            self.drain.join(timeout=5)
            return self.output_log.read_text(errors="replace").strip()[-2000:]
        if self.proc and self.proc.poll() is not None and self.proc.stdout:
            return self.proc.stdout.read().decode(errors="replace").strip()[-2000:]
        return ""
