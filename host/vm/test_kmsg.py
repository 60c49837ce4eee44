"""/dev/kmsg records, parsed from a real capture of the 7.3.4 guest."""

import subprocess
import sys
import threading
from pathlib import Path

from host.vm.kmsg import SETTLE_MARK, parse, settle_cmd, settled

RAW = (Path(__file__).parent / "testdata" / "kmsg-raw.txt").read_text()


def test_every_record_parsed_in_sequence():
    records = parse(RAW)
    assert len(records) == 40
    assert [r.seq for r in records] == list(range(40))


def test_fields():
    first = parse(RAW)[0]
    assert first.level == 5 and first.usec == 0
    assert first.text.startswith("Linux version 7.3.4")
    assert str(first).startswith("[    0.000000] Linux version")


def test_continuation_lines_are_not_records():
    raw = "4,7,1000,-;hello\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:01.0\n6,8,2000,c;x\\x0ay\n"
    records = parse(raw)
    assert [r.seq for r in records] == [7, 8]
    assert records[1].text == "x\ny"


def test_settle_output_is_not_a_record():
    raw = f"{SETTLE_MARK} 15 0\n4,7,1000,-;hello\n"
    assert [r.text for r in parse(raw)] == ["hello"]
    assert settled(raw) == (0.15, False)


def test_settle_gave_up():
    assert settled(f"{SETTLE_MARK} 500 1\n") == (5.0, True)
    assert settled("4,7,1000,-;no settle line\n") == (0.0, False)


def test_settle_cmd_runs_in_a_posix_shell():
    """A task named like a busy iou_exit worker is waited for, up to the limit; none: no wait."""

    def run(limit):
        out = subprocess.run(["sh", "-c", settle_cmd(limit)], capture_output=True, text=True, timeout=30)
        assert out.stderr == ""
        return settled(out.stdout)

    fake = "import ctypes, time; ctypes.CDLL(None).prctl(15, b'k+iou_exit'); print(flush=True); time.sleep(3)"
    proc = subprocess.Popen([sys.executable, "-c", fake], stdout=subprocess.PIPE)
    try:
        proc.stdout.readline()  # renamed
        threading.Thread(target=proc.wait, daemon=True).start()  # a zombie keeps its comm
        waited, gave_up = run(0.5)
        assert gave_up and 0.5 <= waited < 3, waited
        waited, gave_up = run(10.0)  # until it exits
        assert not gave_up and 1 < waited < 8, waited
    finally:
        proc.kill()
        proc.wait()
    assert run(1.0) == (0.0, False)
