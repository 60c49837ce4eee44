"""Read the guest's kernel log by sequence number, so each test gets exactly
the records logged while it ran."""

import re
from dataclasses import dataclass

# One read() of /dev/kmsg returns one record; dd stops at EAGAIN.
READ_CMD = "dd if=/dev/kmsg iflag=nonblock bs=16384 status=none 2>/dev/null; true"

# io_uring tears a closed ring down in its iou_exit workqueue (io_ring_exit_work: zcrx
# ifqs, their queues and areas), after the process that closed it has gone. While a
# worker runs a work item its /proc/PID/comm reads "kworker/u8:1+iou_exit" ("-" once
# idle). settle_cmd() waits until none does, so a splat of that teardown lands in the
# test that closed the ring, not in the next one.
SETTLE_MARK = "@@zcrx-lab-settle"
_UPTIME_CS = "read t _ </proc/uptime; t=$((${t%.*}*100+1${t#*.}-100))"  # centiseconds


def settle_cmd(timeout: float) -> str:
    """POSIX shell that waits up to TIMEOUT s (by the guest's clock) while a workqueue
    worker runs io_uring ring teardown, then prints "SETTLE_MARK <centiseconds> <gave up>".
    Shell builtins only: one pass over /proc costs about 15 ms under TCG. Prefix it to
    READ_CMD."""
    limit = int(timeout * 100)
    busy = (
        'busy() { for f in /proc/[0-9]*/comm; do read -r c 2>/dev/null <"$f" || continue; '
        "case $c in *+iou_exit) return 0;; esac; done; return 1; }; "
    )
    return (
        f"{busy}{_UPTIME_CS}; t0=$t; g=0; while busy; do "
        f"if [ $((t-t0)) -ge {limit} ]; then g=1; break; fi; sleep 0.05; {_UPTIME_CS}; done; "
        f"echo {SETTLE_MARK} $((t-t0)) $g; "
    )


def settled(raw: str) -> tuple[float, bool]:
    """From settle_cmd's output: (seconds waited, whether it gave up still waiting)."""
    for line in raw.splitlines():
        if line.startswith(SETTLE_MARK + " "):
            centis, gave_up = (int(x) for x in line.split()[1:3])
            return centis / 100, bool(gave_up)
    return 0.0, False


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
