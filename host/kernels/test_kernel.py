"""Kernel providers: config checks and image recognition."""

import os
import shutil

import pytest

from host.errors import LabError
from host.kernels import kconfig, kernel


def test_parse_config():
    cfg = kconfig.parse_config('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_D="x y"\n')
    assert cfg == {"A": "y", "C": "m", "D": '"x y"'}


def make(config: dict, modules=None) -> kernel.Kernel:
    return kernel.Kernel("test", None, "7.3.4-test", config, modules, None)


FULL = {opt: "y" for opt in kernel.REQUIRED}


def test_complete_config_passes():
    kernel.check(make(FULL))


def test_missing_zcrx_is_named():
    cfg = dict(FULL)
    del cfg["IO_URING_ZCRX"]
    with pytest.raises(LabError, match=r"lacks required options: CONFIG_IO_URING_ZCRX$"):
        kernel.check(make(cfg))


def test_modules_need_a_modules_directory(tmp_path):
    cfg = dict(FULL, **{"9P_FS": "m"})
    with pytest.raises(LabError, match="CONFIG_9P_FS=y"):
        kernel.check(make(cfg))
    kernel.check(make(cfg, modules=tmp_path))


def test_io_uring_as_module_is_not_enough(tmp_path):
    cfg = dict(FULL, IO_URING="m")
    with pytest.raises(LabError, match="CONFIG_IO_URING=y"):
        kernel.check(make(cfg, modules=tmp_path))


def test_nonexistent_path():
    with pytest.raises(LabError, match="no such file or directory"):
        kernel.resolve("/nonexistent/bzImage", None)


def test_not_a_kernel(tmp_path):
    bogus = tmp_path / "bzImage"
    bogus.write_bytes(b"\x7fELF" + b"\0" * 4096)
    with pytest.raises(LabError, match="not a kernel image"):
        kernel.resolve(str(bogus), None)


def test_tree_without_build(tmp_path):
    with pytest.raises(LabError, match="no arch/x86/boot/bzImage"):
        kernel.resolve(str(tmp_path), None)


def source_tree(path, built=False):
    """A kernel source tree's shape: Makefile, Kconfig, one source; built: an in-tree
    bzImage and .config."""
    (path / "kernel").mkdir(parents=True)
    for name in ("Makefile", "Kconfig", "kernel/fork.c"):
        (path / name).write_text("x\n")
    if built:
        (path / "arch/x86/boot").mkdir(parents=True)
        (path / ".config").write_text("")
        (path / "arch/x86/boot/bzImage").write_bytes(b"")
    return path


def age(path, seconds):
    st = path.stat()
    os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))


def test_tree_with_fresh_in_tree_build_is_used_as_is(tmp_path):
    tree = source_tree(tmp_path / "linux", built=True)
    age(tree / "kernel/fork.c", 60)
    assert kernel.tree_build(tree, build=False) == tree


def test_stale_tree_with_no_build_refuses_with_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ZCRX_LAB_CACHE", str(tmp_path / "cache"))
    tree = source_tree(tmp_path / "linux", built=True)
    age(tree / "arch/x86/boot/bzImage", 60)  # a source changed since the last build
    with pytest.raises(
        LabError, match=f"--no-build was given; build it with: python3 -m host build-kernel {tree}"
    ):
        kernel.tree_build(tree, build=False)


def test_unbuilt_tree_is_built_out_of_tree(tmp_path, monkeypatch):
    from host.kernels import build

    monkeypatch.setenv("ZCRX_LAB_CACHE", str(tmp_path / "cache"))
    tree = source_tree(tmp_path / "linux")
    built = []
    monkeypatch.setattr(
        build, "build", lambda spec, fragments, coverage: built.append((spec, fragments)) or "out"
    )
    assert kernel.tree_build(tree) == "out"
    assert built == [(str(tree), ["base", "zcrx"])]


def test_the_labs_own_fresh_build_is_found(tmp_path, monkeypatch):
    from host.kernels import build

    monkeypatch.setenv("ZCRX_LAB_CACHE", str(tmp_path / "cache"))
    tree = source_tree(tmp_path / "linux")
    age(tree / "kernel/fork.c", 60)
    out = build.build_dir(str(tree), ["base", "zcrx"])
    source_tree(out, built=True)  # what build-kernel TREE left there
    assert kernel.tree_build(tree, build=False) == out


def test_tree_lacking_options_says_how_to_add_them():
    cfg = dict(FULL)
    del cfg["IO_URING_ZCRX"]
    tree = kernel.Kernel("/src/linux", None, "7.3.4", cfg, None, "/src/linux")
    with pytest.raises(LabError, match="vng --build --configitem CONFIG_IO_URING_ZCRX=y; or let the lab"):
        kernel.check(tree)


@pytest.fixture(scope="module")
def default_image():
    from host.guestimage.image import images_dir

    metas = sorted(images_dir().glob("*/image.json"))
    if not metas:
        pytest.skip("no guest image built yet (python3 -m host setup builds it)")
    from host.guestimage.image import _load

    return _load(metas[-1].parent)


def test_release_read_from_real_bzimage(default_image):
    assert kernel.bzimage_release(default_image.vmlinuz) == default_image.kernel_version


def test_default_kernel_passes(default_image):
    k = kernel.resolve("default", default_image)
    assert k.modules == default_image.modules


def test_bzimage_with_config_beside_it(default_image, tmp_path):
    release = default_image.kernel_version
    shutil.copy(default_image.vmlinuz, tmp_path / f"vmlinuz-{release}")
    text = default_image.kernel_config.read_text().replace("CONFIG_IO_URING_ZCRX=y", "")
    (tmp_path / f"config-{release}").write_text(text)
    with pytest.raises(LabError, match="lacks required options: CONFIG_IO_URING_ZCRX$"):
        kernel.resolve(str(tmp_path / f"vmlinuz-{release}"), default_image)
