"""Extracting the ELF kernel from a bzImage-shaped blob (header, compressed payload,
trailer), for every compression handled."""

import bz2
import gzip
import lzma
import shutil
import subprocess

import pytest

from host.vm.vmlinux import boot_image, extract

ELF = b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 64


def bzimage(payload: bytes) -> bytes:
    # the setup code may hold a magic's first bytes by chance: a false start comes first
    return b"MZ" + b"\x1f\x8b\x08garbage" + b"\x00" * 500 + payload + b"\x00" * 64


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_payload_found_and_decompressed(compress):
    assert extract(bzimage(compress(ELF))) == ELF


def test_zstd_payload():
    if not shutil.which("zstd"):
        pytest.skip("no zstd on this host (apt-get install zstd)")
    packed = subprocess.run(["zstd", "-q", "-c"], input=ELF, capture_output=True, check=True).stdout
    assert extract(bzimage(packed)) == ELF


def test_no_elf_inside_is_none():
    assert extract(bzimage(gzip.compress(b"not an ELF file" * 10))) is None


class FakeKernel:
    def __init__(self, image, pvh):
        self.image, self.config = image, {"PVH": "y"} if pvh else {}


def test_tcg_pvh_kernel_boots_its_elf_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ZCRX_LAB_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "bzImage"
    image.write_bytes(bzimage(gzip.compress(ELF)))
    elf = boot_image(FakeKernel(image, pvh=True), "tcg")
    assert elf.parent == tmp_path / "cache" / "vmlinux" and elf.read_bytes() == ELF
    assert boot_image(FakeKernel(image, pvh=True), "tcg") == elf


def test_bzimage_under_kvm_without_pvh_or_without_elf(tmp_path, monkeypatch):
    monkeypatch.setenv("ZCRX_LAB_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "bzImage"
    image.write_bytes(bzimage(gzip.compress(ELF)))
    assert boot_image(FakeKernel(image, pvh=True), "kvm") == image
    assert boot_image(FakeKernel(image, pvh=False), "tcg") == image
    image.write_bytes(bzimage(b"no payload"))
    assert boot_image(FakeKernel(image, pvh=True), "tcg") == image


def test_kernel_rebuilt_in_place_is_extracted_again(tmp_path, monkeypatch):
    monkeypatch.setenv("ZCRX_LAB_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "bzImage"
    image.write_bytes(bzimage(gzip.compress(ELF)))
    first = boot_image(FakeKernel(image, pvh=True), "tcg")
    image.write_bytes(bzimage(gzip.compress(ELF + b"rebuilt")))
    again = boot_image(FakeKernel(image, pvh=True), "tcg")
    assert again != first and again.read_bytes() == ELF + b"rebuilt"
