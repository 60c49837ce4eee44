"""Kernel config fragments and the check that follows olddefconfig."""

from pathlib import Path

from host.kernels import build
from host.kernels.kconfig import parse_config


def test_fragments_parse_and_later_ones_win(tmp_path, monkeypatch):
    (tmp_path / "a.config").write_text("CONFIG_X=y\n# CONFIG_Y is not set\nCONFIG_Z=m\n")
    (tmp_path / "b.config").write_text("# comment\nCONFIG_Z=y\nCONFIG_N=16\n")
    monkeypatch.setattr(build, "KCONFIGS", tmp_path)
    assert build.requested(["a", "b"]) == {"X": "y", "Y": "n", "Z": "y", "N": "16"}


def test_dropped_names_what_olddefconfig_changed():
    config = parse_config("CONFIG_X=y\nCONFIG_N=0\n# CONFIG_Y is not set\n")
    wanted = {"X": "y", "Y": "n", "N": "1", "GONE": "y"}
    assert build.dropped(config, wanted) == ["CONFIG_N=1 (got 0)", "CONFIG_GONE=y (got n)"]


def test_shipped_fragments_ask_for_the_lab_requirements():
    from host.kernels.kernel import REQUIRED

    wanted = build.requested(["base", "zcrx"])
    builtin_needed = {opt for opt in REQUIRED if wanted.get(opt) != "y"}
    # PAGE_POOL is selected by virtio-net; the rest must be asked for.
    assert builtin_needed <= {"PAGE_POOL"}, builtin_needed


def test_debug_fragment_turns_on_the_detectors():
    wanted = build.requested(["base", "zcrx", "debug"])
    for opt in ("KASAN", "DEBUG_KMEMLEAK", "PROVE_LOCKING", "DEBUG_NET", "FAILSLAB", "FAIL_PAGE_ALLOC"):
        assert wanted[opt] == "y"


def test_make_progress_counts_what_was_compiled(tmp_path):
    # kbuild's own step lines (V=0), as a no-op rebuild and a real one print them
    steps = [
        "CALL    scripts/checksyscalls.sh",
        "CC      io_uring/zcrx.o",
        "CC [M]  drivers/net/veth.o",
        "AR      io_uring/built-in.a",
        "LD      vmlinux.o",
        "HDRINST usr/include/linux/io_uring/zcrx.h",
    ]
    lines = "".join(f"  {s}\\n" for s in steps)
    log = tmp_path / "build.log"
    assert build._make_with_progress(["sh", "-c", f"printf '{lines}'"], log) == 2
    assert "io_uring/zcrx.o" in log.read_text()


def test_make_failure_names_the_compiler_error(tmp_path):
    import pytest

    from host.errors import LabError

    cmd = ["sh", "-c", "echo '  CC      nic/zcnic.o'; echo 'nic/zcnic.c:12:1: error: expected ;'; exit 2"]
    with pytest.raises(LabError, match=r"make failed \(exit 2\): nic/zcnic.c:12:1: error: expected ;"):
        build._make_with_progress(cmd, tmp_path / "build.log")


def test_warnings_in_touched_files_from_a_real_w1_compile():
    # gcc 12 on io_uring/zcrx.c of e2e_tree.py's fourth commit, O= build of a worktree
    wt = "/root/.cache/zcrx-lab/worktrees/linux-dd81a3df9e65"
    log = (
        "  CC      io_uring/zcrx.o\n"
        f"{wt}/io_uring/zcrx.c: In function ‘io_register_zcrx’:\n"
        f"{wt}/io_uring/zcrx.c:1012:13: warning: unused variable ‘rounded’ [-Wunused-variable]\n"
        "../io_uring/rsrc.c:10:5: warning: no previous prototype for ‘f’ [-Wmissing-prototypes]\n"
    )
    src = Path(wt)
    assert build.warnings_in(log, ["io_uring/zcrx.c"], src) == [
        "io_uring/zcrx.c: unused variable 'rounded' [-Wunused-variable]"
    ]
    assert build.warnings_in(log, ["io_uring/rsrc.c"], src) == [
        "io_uring/rsrc.c: no previous prototype for 'f' [-Wmissing-prototypes]"
    ]
