"""vng command composition (qemu/vng.py): the same MachineSpec as the lab's QEMU."""

import shlex
from pathlib import Path

import pytest

from guest_tests.contract import CONTROL_MAC
from host.vm.test_machine import arg_after, spec
from qemu import vng
from qemu.machine import X86_64


def options(cmd: list[str]) -> dict[str, list[str]]:
    """vng's --name=value options of CMD, by name."""
    found: dict[str, list[str]] = {}
    for word in cmd[1:]:
        name, _, value = word.partition("=")
        found.setdefault(name, []).append(value)
    return found


def qemu_opts(cmd: list[str]) -> list[str]:
    (text,) = options(cmd)["--qemu-opts"]
    return shlex.split(text)  # vng hands them to a shell


def compose(vng_opts: str = "", **kw) -> list[str]:
    return vng.command(X86_64(), spec(lab_dir=Path("/repo"), **kw), vng_opts)


def test_boots_the_kernel_on_the_image_as_root():
    opts = options(compose())
    assert opts["--run"] == ["/k/bzImage"]
    assert opts["--root"] == ["/img/rootfs"]
    assert opts["--name"] == ["zcrx-guest"]
    assert opts["--memory"] == ["2048M"] and opts["--cpus"] == ["2"]


def test_same_shares_nics_and_ssh_forward_as_the_lab_qemu():
    machine = X86_64()
    full = spec(lab_dir=Path("/repo"), results_dir=Path("/res"), uapi_dir=Path("/u"), tap_fds=(5, 6, 7, 8))
    cmd = vng.command(machine, full)
    qemu = qemu_opts(cmd)
    lab_qemu = machine.command(full)
    assert arg_after(qemu, "-fsdev") == arg_after(lab_qemu, "-fsdev")
    # the tap's descriptors: vng's QEMU (qemu_with_tap.py) puts their numbers in
    assert arg_after(qemu, "-netdev") == [
        n.replace("fds=5:6:7:8", "fds=TAP_FDS") for n in arg_after(lab_qemu, "-netdev")
    ]
    assert options(cmd)["--qemu"][0].endswith("qemu/qemu_with_tap.py")
    assert "user,id=control,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22" in arg_after(qemu, "-netdev")
    nics = [d for d in arg_after(qemu, "-device") if d.startswith("virtio-net-pci")]
    assert nics == [d for d in arg_after(lab_qemu, "-device") if d.startswith("virtio-net-pci")]
    assert f"virtio-net-pci,netdev=control,mac={CONTROL_MAC}" in nics


def test_lab_kernel_arguments_and_console_log():
    cmd = compose(cmdline_extra=["kasan.fault=panic"])
    (append,) = options(cmd)["--append"]
    args = append.split()
    assert args[-1] == "console=hvc0"  # the last console= is /dev/console
    assert {"panic=-1", "loglevel=5", "net.ifnames=0", "kasan.fault=panic"} <= set(args)
    assert "rdinit=/init" not in args  # vng's initramfs, not the lab's
    qemu = qemu_opts(cmd)
    assert "file,id=lab-console,path=/r/console.log" in arg_after(qemu, "-chardev")
    assert "virtconsole,bus=lab-serial.0,chardev=lab-console" in arg_after(qemu, "-device")


def test_guest_setup_runs_from_the_lab_share():
    (script,) = options(compose())["--exec"]
    assert " lab /mnt " in script and script.endswith("/mnt/qemu/vng-init")
    assert (Path(__file__).parents[2] / "qemu/vng-init").exists()
    with pytest.raises(vng.VngError):
        vng.command(X86_64(), spec())  # no lab share, no setup script


def test_tcg_is_single_threaded_and_kvm_left_to_vng():
    tcg = compose(accel="tcg")
    assert "--disable-kvm" in tcg
    assert arg_after(qemu_opts(tcg), "-accel") == ["tcg,thread=single"]
    kvm = compose(accel="kvm")
    assert "--disable-kvm" not in kvm
    assert "-accel" not in qemu_opts(kvm)


def test_9p_and_a_pci_machine():
    cmd = compose()
    assert "--force-9p" in cmd and "--disable-microvm" in cmd


def test_developer_options_pass_through_before_the_lab_qemu_opts():
    cmd = compose("--verbose --qemu-opts='-s -S'")
    assert "--verbose" in cmd
    # vng joins every --qemu-opts, in order, at the end of QEMU's arguments
    assert cmd.index("--qemu-opts=-s -S") < len(cmd) - 1
    assert cmd[-1].startswith("--qemu-opts=-accel")


def test_paths_vng_would_paste_unquoted_into_a_shell_are_refused():
    with pytest.raises(vng.VngError, match="unquoted"):
        compose(kernel=Path("/my kernels/bzImage"))


def test_confined_in_own_pid_namespace_with_the_image_read_only():
    cmd = vng.confined(["vng", "--run=/k"], Path("/img/rootfs"))
    assert cmd[0] == "unshare"
    assert {"--pid", "--fork", "--mount", "--kill-child=SIGKILL"} <= set(cmd)
    script = cmd[cmd.index("-c") + 1]
    assert script.startswith("mount --bind -o ro /img/rootfs /img/rootfs && ")
    assert cmd[-2:] == ["vng", "--run=/k"]
