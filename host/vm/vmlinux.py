"""The kernel QEMU boots under TCG: the bzImage's payload, uncompressed, entered via PVH.

A bzImage starts by decompressing itself, and under TCG that is most of a second of
emulated CPU for a distribution kernel (zstd or xz of some 60 MB) before the kernel's
own clock starts. A kernel built with CONFIG_PVH carries an ELF note with a 32-bit
entry point that QEMU's -kernel can jump to directly (its PVH boot), so the lab boots
the ELF itself: extracted once per bzImage (as the kernel's scripts/extract-vmlinux
does: find the compressed payload by its magic) and cached by the bzImage's content.
Anything else (no CONFIG_PVH, a compression not handled here) boots the bzImage.
"""

import bz2
import hashlib
import lzma
import os
import subprocess
import zlib
from pathlib import Path

from host.cache import StatMemo, cache_root, input_key

ELF = b"\x7fELF"


def _gunzip(data: bytes) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)


def _unxz(data: bytes) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data)


def _unbz2(data: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(data)


def _unzstd(data: bytes) -> bytes:
    proc = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True)
    return proc.stdout  # zstd exits non-zero on the bzImage's trailing bytes, after the output


# magic -> decompressor of the payload's bytes (trailing data after the stream ignored)
PAYLOADS = {
    b"\x28\xb5\x2f\xfd": _unzstd,
    b"\xfd7zXZ\x00": _unxz,
    b"\x1f\x8b\x08": _gunzip,
    b"BZh": _unbz2,
}


def extract(bzimage: bytes) -> bytes | None:
    """The ELF vmlinux inside BZIMAGE, or None."""
    for magic, decompress in PAYLOADS.items():
        at = bzimage.find(magic)
        while at >= 0:
            try:
                out = decompress(bzimage[at:])
            except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError):
                out = b""
            if out.startswith(ELF):
                return out
            at = bzimage.find(magic, at + 1)
    return None


def boot_image(kernel, accel: str) -> Path:
    """What QEMU's -kernel gets: under TCG, for a CONFIG_PVH kernel, its uncompressed
    ELF (cached); otherwise the bzImage."""
    if accel != "tcg" or kernel.config.get("PVH") != "y":
        return kernel.image
    memo = StatMemo(cache_root() / "vmlinux" / f"{input_key(str(kernel.image.resolve()))}.stat")
    made = memo.get()
    if made:
        return made
    stats = memo.stats([kernel.image])
    data = kernel.image.read_bytes()
    out = cache_root() / "vmlinux" / f"{hashlib.sha256(data).hexdigest()[:16]}.elf"
    if out.exists():
        memo.put(out, stats)
        return out
    elf = extract(data)
    if elf is None:
        return kernel.image
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")  # parallel workers: a name each
    tmp.write_bytes(elf)
    tmp.rename(out)
    memo.put(out, stats)
    return out
