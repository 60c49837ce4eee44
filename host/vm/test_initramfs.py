"""The initramfs's module and applet handling."""

from pathlib import Path

import pytest

from host.errors import LabError
from host.kernels.kernel import Kernel
from host.vm import initramfs as initramfs_module
from host.vm.initramfs import SIG_MAGIC, archive, find_busybox, initramfs, unsigned


def signed(module: bytes, signature: bytes) -> bytes:
    # struct module_signature: algo, hash, id_type, signer_len, key_id_len, pad[3], sig_len (be32)
    info = bytes([0, 0, 2, 0, 0, 0, 0, 0]) + len(signature).to_bytes(4, "big")
    return module + signature + info + SIG_MAGIC


def test_signature_stripped_to_the_module():
    elf = b"\x7fELF" + bytes(range(256)) * 40
    assert unsigned(signed(elf, b"\x30\x82" + b"s" * 500)) == elf


def test_unsigned_module_left_alone():
    elf = b"\x7fELF" + b"x" * 1000
    assert unsigned(elf) == elf


def test_links_are_cpio_symlinks():
    blob = archive(("bin",), {"bin/mount": (b"busybox", 0o120777)})
    entry = blob.index(b"bin/mount\0")
    header = blob[entry - 110 : entry]
    assert int(header[14:22], 16) == 0o120777  # c_mode
    assert int(header[54:62], 16) == len(b"busybox")  # c_filesize: the link's target
    assert b"busybox" in blob[entry : entry + 20]


def test_initramfs_found_again_by_its_files_made_again_when_one_changes(tmp_path, monkeypatch):
    try:
        find_busybox()
    except LabError:
        pytest.skip("no static busybox on this host (apt-get install busybox-static)")
    monkeypatch.setenv("ZCRX_LAB_CACHE", str(tmp_path / "cache"))
    modules = tmp_path / "lib/modules/7.0.0"
    (modules / "kernel").mkdir(parents=True)
    (modules / "modules.dep").write_text("kernel/virtio_net.ko: kernel/failover.ko\nkernel/failover.ko:\n")
    for name in ("virtio_net", "failover"):
        (modules / f"kernel/{name}.ko").write_bytes(b"\x7fELF " + name.encode())
    kernel = Kernel("test", Path("bzImage"), "7.0.0", {"VIRTIO_NET": "m"}, modules, None)
    first = initramfs(kernel)
    assert b"\x7fELF virtio_net" in first.read_bytes()

    def unread(kernel):
        raise AssertionError("the modules were read again")

    with monkeypatch.context() as patch:
        patch.setattr(initramfs_module, "_module_order", unread)
        assert initramfs(kernel) == first

    (modules / "kernel/virtio_net.ko").write_bytes(b"\x7fELF virtio_net, rebuilt")
    again = initramfs(kernel)
    assert again != first and b"\x7fELF virtio_net, rebuilt" in again.read_bytes()

    # another checkout's qemu/init, the same kernel: its own archive
    other = tmp_path / "other-checkout/qemu"
    other.mkdir(parents=True)
    (other / "init").write_text("#!/bin/busybox sh\n# another checkout's init\n")
    monkeypatch.setattr(initramfs_module, "QEMU_DIR", other)
    assert b"# another checkout's init" in initramfs(kernel).read_bytes()
