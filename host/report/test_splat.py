"""The splat scanner on real captured logs (host/report/testdata/splats/).

All were captured in our own guest (console log as QEMU wrote it, CRLF and
all, and `dmesg` text): most from Debian's 7.3.4 kernel; the KASAN, lockdep
and kmemleak ones from the lab's debug kernel (`--kernel=debug`, 7.3.4 with
kconfigs base+zcrx+debug) with splatgen/splatgen.c loaded (what=kasan in one
boot; what=lockdep then what=kmemleak in another, since a KASAN report turns
lock debugging off). kmemleak.log is /sys/kernel/debug/kmemleak after two
scans, which is what the harness appends to a test's dmesg.
udmabuf-dma-debug-dmesg.log is a test's dmesg from the debug kernel running
upstream's hw/devmem.py (a known kernel bug, see splat.KNOWN_BUGS).
"""

from pathlib import Path

import pytest

from host.report.splat import known_bug, scan, summary

LOGS = Path(__file__).parent / "testdata" / "splats"

EXPECTED = {
    "warning.log": ["WARNING"],
    "warning-dmesg.log": ["WARNING"],
    "bug-oops.log": ["BUG"],
    "bug-oops-dmesg.log": ["BUG"],
    "soft-lockup.log": ["soft lockup", "soft lockup"],
    "soft-lockup-dmesg.log": ["soft lockup", "soft lockup"],
    "rcu-stall.log": ["RCU stall"],
    "rcu-stall-dmesg.log": ["RCU stall"],
    "ubsan.log": ["UBSAN", "UBSAN"],
    "ubsan-dmesg.log": ["UBSAN", "UBSAN"],
    "panic.log": ["panic"],
    "kasan.log": ["KASAN"],
    "kasan-dmesg.log": ["KASAN"],
    "lockdep.log": ["lockdep", "kmemleak"],
    "lockdep-dmesg.log": ["lockdep"],
    "kmemleak.log": ["kmemleak"],
    "kmemleak-dmesg.log": ["kmemleak"],
    "udmabuf-dma-debug-dmesg.log": ["WARNING"],
    "clean-boot.log": [],
    "clean-boot-dmesg.log": [],
}


def read(name: str) -> str:
    return (LOGS / name).read_text(errors="replace")


def test_every_capture_has_an_expectation():
    hung = ["hung-task.log", "hung-task-dmesg.log"]
    assert sorted(p.name for p in LOGS.glob("*.log")) == sorted([*EXPECTED, *hung])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_kinds(name):
    assert [s.kind for s in scan(read(name))] == EXPECTED[name]


@pytest.mark.parametrize("name", ["hung-task.log", "hung-task-dmesg.log"])
def test_hung_task_reports(name):
    found = scan(read(name))
    assert found and {s.kind for s in found} == {"hung task"}
    assert found[0].header == "INFO: task bash:154 blocked for more than 2 seconds."


def test_warning_excerpt_runs_from_cut_here_to_end_of_trace():
    (warn,) = scan(read("warning-dmesg.log"))
    lines = warn.excerpt.splitlines()
    assert lines[0] == "------------[ cut here ]------------"
    assert lines[1].startswith("WARNING: splat.c:60 at trigger_write")
    assert lines[-1].startswith("---[ end trace")
    assert "\r" not in warn.excerpt and "[    " not in lines[1]


def test_oops_folds_into_its_bug():
    (bug,) = scan(read("bug-oops.log"))
    assert bug.header.startswith("BUG: kernel NULL pointer dereference")
    assert "Oops: Oops: 0000 [#1]" in bug.excerpt
    assert "trigger_write" in bug.excerpt


def test_panic_excerpt_has_the_stack():
    (panic,) = scan(read("panic.log"))
    assert panic.header == "Kernel panic - not syncing: sysrq triggered crash"
    assert "sysrq_handle_crash" in panic.excerpt


def test_ubsan_reports_stay_separate():
    first, second = scan(read("ubsan.log"))
    assert "array-index-out-of-bounds" in first.header and "shift-out-of-bounds" in second.header
    assert "shift exponent 40" in second.excerpt and "shift exponent" not in first.excerpt


def test_summary_names_every_splat_and_is_bounded():
    text = summary(scan(read("hung-task-dmesg.log")), limit=500)
    assert text.startswith("kernel splat (10): hung task: INFO: task bash:154")
    assert text.endswith("full text in the test's dmesg/console files]")


def test_kasan_excerpt_names_the_access_and_both_stacks():
    (kasan,) = scan(read("kasan.log"))
    assert kasan.header == "BUG: KASAN: slab-use-after-free in splatgen_kasan+0x88/0xa0 [splatgen]"
    assert "Read of size 1" in kasan.excerpt
    assert "Allocated by task" in kasan.excerpt and "Freed by task" in kasan.excerpt


def test_lockdep_header_is_the_circular_dependency():
    (lockdep,) = scan(read("lockdep-dmesg.log"))
    assert lockdep.header == "WARNING: possible circular locking dependency detected"
    assert "splatgen_a" in lockdep.excerpt and "splatgen_b" in lockdep.excerpt


def test_kmemleak_report_names_the_object_and_backtrace():
    (leak,) = scan(read("kmemleak.log"))
    assert leak.header.startswith("unreferenced object 0xff110000088f0e80 (size 32)")
    assert "__kmalloc_noprof" in leak.excerpt


def test_benign_lines_are_not_splats():
    benign = "\n".join(
        [
            "[    0.5] ima: No TPM chip found, activating TPM-bypass!",
            "[    0.6] RAS: Correctable Errors collector initialized.",
            '[    0.7] PCI: not using MMCONFIG ... use "pci=nocrs" and report a bug',
            "[    0.8] zcnic: warning counters reset",
            "[    0.9] virtio_net virtio1 eth1: error: no BUG here",
        ]
    )
    assert scan(benign) == []


def test_known_bug_is_recognised_and_nothing_else_is():
    """udmabuf-dma-debug-dmesg.log: the debug kernel's DMA-API warning that ncdevmem's
    DMA_BUF_IOCTL_SYNC on a udmabuf raised (hw/devmem.py check_rx); every other capture
    is no known bug."""
    (udmabuf,) = scan(read("udmabuf-dma-debug-dmesg.log"))
    assert known_bug(udmabuf).name == "udmabuf dma_parms"
    others = [s for name in EXPECTED if name != "udmabuf-dma-debug-dmesg.log" for s in scan(read(name))]
    assert others and [s for s in others if known_bug(s)] == []
