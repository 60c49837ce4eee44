"""Kernel config fragments and the check that follows olddefconfig."""

from host import build
from host.kernel import parse_config


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
    from host.kernel import REQUIRED

    wanted = build.requested(["base", "zcrx"])
    builtin_needed = {opt for opt in REQUIRED if wanted.get(opt) != "y"}
    # PAGE_POOL is selected by virtio-net; the rest must be asked for.
    assert builtin_needed <= {"PAGE_POOL"}, builtin_needed


def test_debug_fragment_turns_on_the_detectors():
    wanted = build.requested(["base", "zcrx", "debug"])
    for opt in ("KASAN", "DEBUG_KMEMLEAK", "PROVE_LOCKING", "DEBUG_NET", "FAILSLAB", "FAIL_PAGE_ALLOC"):
        assert wanted[opt] == "y"
