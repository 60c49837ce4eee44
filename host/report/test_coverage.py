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


SOURCE = """\
static int area_import(struct area *a,
\t\t       int len)
{
\tint ret;

\tret = pin(a);
\tif (ret)
\t\treturn ret;   /* 8 */
\tif (len > MAX) {
\t\tunpin(a);
\t\treturn -ERANGE;
\t}
\treturn 0;
}

static void area_free(struct area *a)
{
\tkfree(a);
}

static int
area_recv(struct area *a)
{
\treturn a->len;
}
""".splitlines()


def test_unreached_lines_grouped_by_function_and_reached_lines():
    counts = {1: 5, 6: 5, 7: 5, 8: 0, 9: 5, 10: 0, 11: 0, 13: 5, 16: 0, 18: 0, 22: 0, 24: 0}
    assert coverage.unreached_blocks(counts, SOURCE) == [
        coverage.Block("area_import", 8, 8, "return ret; /* 8 */"),
        coverage.Block("area_import", 10, 11, "unpin(a);"),
        coverage.Block("area_free", 16, 18, "static void area_free(struct area *a)"),
        coverage.Block("area_recv", 22, 24, "area_recv(struct area *a)"),
    ]


def test_reasons_file_names_blocks_by_function_and_code(tmp_path):
    reasons = tmp_path / "reasons.txt"
    reasons.write_text(
        "# comment\n\narea_free | static void area_free(struct area *a) | nothing frees areas yet\n"
    )
    blocks = coverage.unreached_blocks({10: 0, 16: 0}, SOURCE)
    explained = coverage.explain(blocks, coverage.read_reasons(reasons))
    assert [why for _, why in explained] == [None, "nothing frees areas yet"]


def test_malformed_reason_is_named(tmp_path):
    reasons = tmp_path / "reasons.txt"
    reasons.write_text("area_free | no reason given\n")
    try:
        coverage.read_reasons(reasons)
    except coverage.LabError as exc:
        assert "area_free | no reason given" in str(exc)
    else:
        raise AssertionError("a line without three fields was accepted")


def test_the_repository_reasons_file_parses():
    reasons = coverage.read_reasons()
    assert all(function and code and why for (function, code), why in reasons.items())


def test_parallel_run_combined_over_workers(tmp_path):
    for worker, name in (("gw0", "harness-only.info"), ("gw1", "zcnic-run.info")):
        (tmp_path / worker / "coverage").mkdir(parents=True)
        (tmp_path / worker / "coverage" / "boot1.info").write_text((DATA / name).read_text())
    line = coverage.combined(tmp_path)
    assert line.startswith("line coverage (2 boots, every worker's): io_uring/zcrx.c 80.5% (879/1092 lines)")
    assert coverage.combined(tmp_path / "gw0" / "nothing") is None
