"""Teardown of a NODEV ifq when its owner is SIGKILLed: pinned pages return to the
baseline (/proc/vmstat nr_foll_pin_acquired - nr_foll_pin_released), the same
registration works again at once. Splats are caught by the harness."""

import pytest

pytestmark = [pytest.mark.nodev, pytest.mark.teardown]

SCN = "scenarios.nodev:"
AREA_PAGES = 256
REGION_PAGES = 3  # 256 refill entries + header + stats, page-aligned


def sigkill(guest, mode):
    """One guest run per mode per session: `exported` is judged by two tests."""
    return guest.cached(SCN + "teardown_sigkill", mode=mode, area_pages=AREA_PAGES, timeout=300)


@pytest.mark.parametrize("mode", ["receiving", "held", "armed", "queued", "exported"])
def test_sigkill_owner(guest, mode):
    res = sigkill(guest, mode)
    assert res["ready"], res
    assert res["child_killed_by"] == 9
    assert res["pins_during"] == AREA_PAGES + REGION_PAGES, res
    if mode == "receiving":
        assert res["child"]["received_before_ready"] >= 1 << 20
    if mode == "held":
        assert res["child"]["held_buffers"] == AREA_PAGES
    assert res["pins_after"] == 0, f"pinned pages leaked: {res}"
    assert res["again"]["full_match"] and res["again"]["final"]["res"] == 0, res["again"]
    assert res["pins_final"] == 0


def test_exported_fd_keeps_ifq_alive(guest):
    """An exported zcrx fd held by another process keeps the area pinned after the
    owner dies; closing it (killing the holder) releases everything."""
    res = sigkill(guest, "exported")
    assert res["holder"] == {"fds": 1, "link": "anon_inode:[zcrx]"}
    assert res["pins_while_holder_alive"] == AREA_PAGES + REGION_PAGES, res
    assert res["pins_after"] == 0, res
