"""Several runs' reports as one: run.json, junit.xml and a Markdown summary.

Used twice: the xdist controller merges its workers' parts of run.json
(host/report/parallel.py), and `python3 -m host merge-results OUT DIR...` merges
results directories of separate runs (CI shards, `--shard I/N`) into OUT.
The merged run.json has the schema a single run writes (plugin.write_run_json),
so series, bisect and testrun.read_run read it unchanged.
"""

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from host.errors import LabError

# run.json keys whose values are one per run: the first run that has one speaks for all
FIRST = ("kernel", "release", "accel", "boot_failure", "debian_package")
COUNTS = ("tests", "errors", "failures", "skipped")
FAILED = ("failed", "error")


def merge_runs(runs: list[dict]) -> dict:
    """One run.json from RUNS (in order): per-test maps joined (a later run's entry
    for the same test wins), lists concatenated, per-run values from the first."""
    merged: dict = {
        "kernel": None,
        "release": None,
        "accel": None,
        "boot_seconds": [],
        "splats": {},
        "iou_exit_waits": {},
        "boot_splats": [],
        "boot_failure": None,
        "coverage": None,
        "tests": {},
    }
    coverage = []
    for run in runs:
        for key in FIRST:
            if merged.get(key) is None and run.get(key) is not None:
                merged[key] = run[key]
        for key in ("boot_seconds", "boot_splats"):
            merged[key] += run.get(key) or []
        for key in ("splats", "iou_exit_waits", "tests"):
            merged[key].update(run.get(key) or {})
        if run.get("coverage"):
            coverage.append(run["coverage"])
    merged["coverage"] = "; ".join(coverage) or None
    if merged.get("debian_package") is None:
        merged.pop("debian_package", None)
    return merged


def merge_junit(paths: list[Path], out: Path) -> None:
    """One junit.xml at OUT from PATHS: one <testsuite> with every test case, the
    counts and times summed, the properties (kernel, release) of the first."""
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name="pytest")
    totals = dict.fromkeys(COUNTS, 0)
    seconds = 0.0
    properties = None
    for path in paths:
        try:
            tree = ET.parse(path)
        except (OSError, ET.ParseError) as exc:
            raise LabError(f"{path}: not a JUnit XML file ({exc})") from None
        top = tree.getroot()
        for part in [top] if top.tag == "testsuite" else top.iter("testsuite"):
            for key in COUNTS:
                totals[key] += int(part.get(key, 0))
            seconds += float(part.get("time", 0))
            if properties is None and part.find("properties") is not None:
                properties = part.find("properties")
                suite.append(properties)
            for case in part.findall("testcase"):
                suite.append(case)
            if suite.get("timestamp") is None and part.get("timestamp"):
                suite.set("timestamp", part.get("timestamp"))
    for key, value in totals.items():
        suite.set(key, str(value))
    suite.set("time", f"{seconds:.3f}")
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)


def summary_markdown(run: dict, sources: list[str]) -> str:
    """A short Markdown report of RUN: counts, failures with their first line, splats."""
    counts: dict[str, int] = {}
    for test in run["tests"].values():
        counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
    lines = [
        f"# zcrx-lab results: kernel {run.get('kernel')} ({run.get('release')})",
        "",
        f"Merged from {len(sources)} results directories: {', '.join(sources)}.",
        "",
        "| outcome | tests |",
        "|---|---|",
        *(f"| {outcome} | {n} |" for outcome, n in sorted(counts.items())),
        "",
    ]
    failures = {t: r for t, r in run["tests"].items() if r["outcome"] in FAILED}
    if failures:
        lines += ["## Failures", ""]
        for test, result in failures.items():
            first = next((ln.strip() for ln in result.get("message", "").splitlines() if ln.strip()), "")
            lines.append(f"- `{test}`: {result['outcome']}" + (f": {first[:200]}" if first else ""))
        lines.append("")
    if run["splats"] or run["boot_splats"]:
        lines += ["## Kernel splats", ""]
        lines += [f"- `{test}`: {'; '.join(heads)}" for test, heads in run["splats"].items()]
        lines += [f"- while booting: {s.splitlines()[0] if s else s}" for s in run["boot_splats"]]
        lines.append("")
    if run.get("boot_failure"):
        failure = run["boot_failure"]
        lines += ["## Boot failure", "", f"{failure['kind']}: {failure['message'].splitlines()[0]}", ""]
    if run.get("coverage"):
        lines += ["## Coverage", "", run["coverage"], ""]
    return "\n".join(lines)


def merge_results(out: Path, dirs: list[Path]) -> dict:
    """Merge the results directories DIRS into OUT: run.json, junit.xml, summary.md,
    every test's kernel log (tests/), and each directory's own files (console logs,
    dmesg, QEMU commands) under OUT/<n>-<name>/. Returns the merged run.json."""
    if not dirs:
        raise LabError("merge-results: no results directory to merge")
    runs = []
    for folder in dirs:
        run_json = folder / "run.json"
        if not run_json.is_file():
            raise LabError(f"{folder}: no run.json (not a zcrx-lab results directory)")
        try:
            runs.append(json.loads(run_json.read_text()))
        except json.JSONDecodeError as exc:
            raise LabError(f"{run_json}: not JSON ({exc})") from None
    out.mkdir(parents=True, exist_ok=True)
    merged = merge_runs(runs)
    (out / "run.json").write_text(json.dumps(merged, indent=1) + "\n")
    junits = [folder / "junit.xml" for folder in dirs if (folder / "junit.xml").is_file()]
    if junits:
        merge_junit(junits, out / "junit.xml")
    for n, folder in enumerate(dirs, 1):
        if (folder / "tests").is_dir():
            shutil.copytree(folder / "tests", out / "tests", dirs_exist_ok=True)
        own = out / f"{n}-{folder.resolve().name}"
        skip = {"run.json", "junit.xml", "tests"}
        for entry in folder.iterdir():
            if entry.name in skip:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, own / entry.name, symlinks=True, dirs_exist_ok=True)
            elif entry.is_file():
                own.mkdir(exist_ok=True)
                shutil.copy2(entry, own / entry.name)
    sources = [str(folder) for folder in dirs]
    (out / "summary.md").write_text(summary_markdown(merged, sources))
    return merged
