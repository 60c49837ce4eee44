"""Read the guest's kernel log by sequence number, so each test gets exactly
the records logged while it ran."""

import re
from dataclasses import dataclass

# One read() of /dev/kmsg returns one record; dd stops at EAGAIN.
READ_CMD = "dd if=/dev/kmsg iflag=nonblock bs=16384 status=none 2>/dev/null; true"
_RECORD = re.compile(r"^(\d+),(\d+),(\d+),[^;]*;(.*)$")


@dataclass
class Record:
    level: int
    seq: int
    usec: int
    text: str

    def __str__(self) -> str:
        return f"[{self.usec // 1000000:5d}.{self.usec % 1000000:06d}] {self.text}"


def parse(raw: str) -> list[Record]:
    records = []
    for line in raw.splitlines():
        m = _RECORD.match(line)
        if m:  # continuation lines (" KEY=value") carry no text of their own
            prio, seq, usec, text = m.groups()
            text = re.sub(r"\\x([0-9a-f]{2})", lambda h: chr(int(h.group(1), 16)), text)
            records.append(Record(int(prio) & 7, int(seq), int(usec), text))
    return records
