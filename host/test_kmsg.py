"""/dev/kmsg records, parsed from a real capture of the 7.3.4 guest."""

from pathlib import Path

from host.kmsg import parse

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
