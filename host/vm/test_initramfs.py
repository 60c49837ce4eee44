"""The initramfs's module and applet handling."""

from host.vm.initramfs import SIG_MAGIC, archive, unsigned


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
