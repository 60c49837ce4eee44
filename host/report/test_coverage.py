"""Coverage summary and merging, on real lcov tracefiles (host/report/testdata/coverage/).

Both were captured with `--kernel=debug --coverage` (7.3.4 + kconfigs/coverage)
and cut down to the three files the summary names: harness-only.info from a run
of the harness tests alone (no zcrx ifq ever registered), zcnic-run.info from a
run of the zcnic, traffic, nodev rx/refill and teardown tests.
"""

from pathlib import Path

from host.report import coverage

DATA = Path(__file__).parent / "testdata" / "coverage"


def info(name: str) -> dict[str, dict[int, int]]:
    return coverage.parse_info((DATA / name).read_text())


def test_summary_of_a_zcnic_run():
    assert coverage.summary(info("zcnic-run.info")) == (
        "io_uring/zcrx.c 80.5% (879/1092 lines), net/core/page_pool.c 68.5% (378/552 lines), "
        "net/core/netdev_rx_queue.c 45.4% (79/174 lines)"
    )


def test_no_zcrx_registered_means_no_zcrx_lines():
    assert coverage.line_coverage(info("harness-only.info"), "io_uring/zcrx.c") == (0, 1092)


def test_boots_merge_line_by_line():
    harness, run = info("harness-only.info"), info("zcnic-run.info")
    merged = coverage.merge([harness, run])
    hit = {name: coverage.line_coverage(merged, name)[0] for name in coverage.FOCUS}
    for name in coverage.FOCUS:
        alone = max(coverage.line_coverage(i, name)[0] for i in (harness, run))
        assert hit[name] >= alone
    pp = next(p for p in merged if p.endswith("net/core/page_pool.c"))
    line = next(iter(run[pp]))
    assert merged[pp][line] == harness[pp][line] + run[pp][line]


def test_a_file_not_profiled_is_named():
    assert coverage.summary({}).startswith("io_uring/zcrx.c not profiled")


def test_each_gcda_gets_its_notes_from_the_build_dir(tmp_path):
    build = tmp_path / "build" / "io_uring"
    build.mkdir(parents=True)
    (build / "zcrx.gcno").write_bytes(b"notes")
    # the guest names the build dir's host path below /sys/kernel/debug/gcov
    copied = tmp_path / "boot1" / str(build).lstrip("/")
    copied.mkdir(parents=True)
    (copied / "zcrx.gcda").write_bytes(b"counts")
    (copied / "orphan.gcda").write_bytes(b"counts")
    assert coverage.link_notes(tmp_path / "boot1") == 1
    assert (copied / "zcrx.gcno").read_bytes() == b"notes"
    assert not (copied / "orphan.gcno").exists()
