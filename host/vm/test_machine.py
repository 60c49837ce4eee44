"""QEMU command composition."""

from pathlib import Path

from guest_tests.contract import CONTROL_MAC
from qemu.machine import X86_64, MachineSpec


def spec(**kw) -> MachineSpec:
    base = dict(
        kernel=Path("/k/bzImage"),
        initrd=Path("/c/initrd"),
        rootfs=Path("/img/rootfs"),
        console_log=Path("/r/console.log"),
        ssh_port=2222,
    )
    base.update(kw)
    return MachineSpec(**base)


def arg_after(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == flag]


def test_tcg_is_single_threaded():
    cmd = X86_64().command(spec(accel="tcg"))
    assert arg_after(cmd, "-accel") == ["tcg,thread=single"]


def test_kvm_uses_host_cpu():
    cmd = X86_64().command(spec(accel="kvm"))
    assert arg_after(cmd, "-accel") == ["kvm"]
    assert arg_after(cmd, "-cpu") == ["host"]


def test_ssh_forward_is_loopback_only_and_guest_cannot_reach_out():
    netdevs = arg_after(X86_64().command(spec()), "-netdev")
    control = [n for n in netdevs if n.startswith("user,")]
    assert control == ["user,id=control,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22"]
    devices = arg_after(X86_64().command(spec()), "-device")
    assert f"virtio-net-pci,netdev=control,mac={CONTROL_MAC}" in devices


def test_multiqueue_test_nic_on_tap_descriptors():
    cmd = X86_64().command(spec(tap_fds=(5, 6, 7, 8)))
    assert "tap,id=test,fds=5:6:7:8" in arg_after(cmd, "-netdev")
    nic = [d for d in arg_after(cmd, "-device") if "netdev=test" in d]
    assert len(nic) == 1 and "mq=on" in nic[0] and "vectors=10" in nic[0]


def test_no_tap_no_test_nic():
    cmd = X86_64().command(spec(tap_fds=()))
    assert not [n for n in arg_after(cmd, "-netdev") if n.startswith("tap")]


def test_image_shared_read_only_results_read_write():
    cmd = X86_64().command(spec(lab_dir=Path("/repo"), results_dir=Path("/res")))
    fsdevs = arg_after(cmd, "-fsdev")
    assert "local,id=root,path=/img/rootfs,security_model=none,readonly=on" in fsdevs
    assert "local,id=lab,path=/repo,security_model=none,readonly=on" in fsdevs
    assert "local,id=results,path=/res,security_model=none" in fsdevs


def test_guest_panics_end_qemu():
    cmd = X86_64().command(spec())
    assert "-no-reboot" in cmd
    assert "panic=-1" in arg_after(cmd, "-append")[0].split()


def test_console_goes_to_file():
    cmd = X86_64().command(spec())
    assert "file,id=console,path=/r/console.log" in arg_after(cmd, "-chardev")
    assert "console=ttyS0" in arg_after(cmd, "-append")[0].split()


def test_tree_uapi_headers_shared_read_only():
    cmd = X86_64().command(spec(uapi_dir=Path("/b/usr/include")))
    assert "local,id=uapi,path=/b/usr/include,security_model=none,readonly=on" in arg_after(cmd, "-fsdev")
    assert "virtio-9p-pci,fsdev=uapi,mount_tag=uapi" in arg_after(cmd, "-device")
    assert not any("uapi" in a for a in X86_64().command(spec()))


def test_pc_machine_skips_acpi_interrupt_links():
    tcg = X86_64().command(spec(accel="tcg"))
    kvm = X86_64().command(spec(accel="kvm"))
    assert arg_after(tcg, "-machine") == ["pc"] and "acpi=noirq" in arg_after(tcg, "-append")[0].split()
    assert arg_after(kvm, "-machine") == ["q35"] and "acpi=noirq" not in arg_after(kvm, "-append")[0]


def test_known_tsc_rate_is_given_to_the_guest():
    assert "tsc_early_khz=2245780" in arg_after(X86_64().command(spec(tsc_khz=2245780)), "-append")[0]
    assert "tsc_early_khz" not in arg_after(X86_64().command(spec()), "-append")[0]
