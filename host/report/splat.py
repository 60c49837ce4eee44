"""Find kernel splats in console or dmesg text.

A splat is anything a kernel developer would call a test failure: WARNING,
BUG, Oops, KASAN, UBSAN, kmemleak, lockdep, hung task, RCU stall, soft/hard
lockup, panic. `scan()` returns them in order, each with the excerpt a
developer needs (header through end-of-trace, bounded). `known_bug()` says whether a
splat is one of KNOWN_BUGS: a kernel bug outside what the lab tests, analysed.
"""

import re
from dataclasses import dataclass

# (kind, pattern) in priority order: the first that matches a line names it.
# Patterns match the message part of a line (the [timestamp] is stripped).
KINDS = [
    ("KASAN", r"BUG: KASAN: "),
    ("KFENCE", r"BUG: KFENCE: "),
    ("UBSAN", r"UBSAN: "),
    ("kmemleak", r"unreferenced object 0x[0-9a-f]+|kmemleak: \d+ new suspected memory leak"),
    (
        "lockdep",
        r"WARNING: (possible circular locking dependency|possible recursive locking"
        r"|inconsistent lock state|suspicious RCU usage|bad unlock balance"
        r"|held lock freed|lock held when returning to user space"
        r"|possible irq lock inversion|HARDIRQ-safe -> HARDIRQ-unsafe)"
        r"|BUG: (sleeping function called from invalid context|scheduling while atomic"
        r"|MAX_LOCKDEP|looking up invalid subclass)",
    ),
    ("soft lockup", r"BUG: soft lockup"),
    ("hard lockup", r"Watchdog detected hard LOCKUP"),
    (
        "RCU stall",
        r"rcu: INFO: \S+ (self-)?detected stall|rcu_\w+ self-detected stall"
        r"|rcu: INFO: \S+ detected stalls",
    ),
    ("hung task", r"INFO: task .+ blocked for more than \d+ seconds"),
    ("panic", r"Kernel panic - not syncing"),
    ("WARNING", r"WARNING: CPU: \d+ PID: \d+ at |WARNING: .+ at .+\+0x|^WARNING: \S"),
    (
        "BUG",
        r"kernel BUG at |BUG: (unable to handle|kernel NULL pointer|Bad page"
        r"|Bad rss-counter|workqueue lockup|non-zero pgtables_bytes|\w+ corruption)"
        r"|BUG: ",
    ),
    ("Oops", r"Oops: |general protection fault"),
    ("list corruption", r"list_(add|del) corruption"),
]
_COMPILED = [(kind, re.compile(pat)) for kind, pat in KINDS]
_TIMESTAMP = re.compile(r"^(<\d+>)?\s*\[\s*\d+\.\d+\]\s?(\[\s*[CT]\d+\]\s?)?")
# A splat ends at its end-of-trace marker (KASAN's is a line of '='), or
# after MAX_LINES; a KASAN report with both stacks and the shadow dump runs
# to about 120 lines on a debug kernel.
_END = re.compile(r"---\[ end (trace|Kernel panic)|^={40,}$")
MAX_LINES = 60
MAX_LINES_KIND = {"KASAN": 160}
# Lines of an ongoing splat: continuation of a report whose header was seen.
_CONTINUES = re.compile(
    r"^( |\t|Call Trace|<TASK>|</TASK>|<IRQ>|</IRQ>|RIP:|RSP:|RAX:|RDX:|RBP:|R\d+:|FS:|CS:|CR2:"
    r"|Code:|Modules linked in|CPU:|Hardware name|Tainted|Workqueue|Stack:|\?|\w+\+0x|"
    r"Kernel Offset|---\[|Allocated by|Freed by|The buggy address|Memory state|"
    r"backtrace|comm \"|hex dump|Read of size|Write of size|Last potentially|"
    r"other info|stack backtrace|the existing dependency|-> #|Chain exists|Possible unsafe"
    r"|\*\*\*|lock\(|which lock|\s*\d+ locks? held|#\d+:|\[ +\d|index \d|shift exponent)"
)


@dataclass
class Splat:
    kind: str
    header: str  # the line that identified it
    excerpt: str  # the splat's lines

    def __str__(self) -> str:
        return f"{self.kind}: {self.header}"


def strip(line: str) -> str:
    return _TIMESTAMP.sub("", line.rstrip("\r"))


def classify(message: str) -> str | None:
    for kind, pattern in _COMPILED:
        if pattern.search(message):
            return kind
    return None


def scan(text: str) -> list[Splat]:
    lines = [strip(ln) for ln in text.splitlines()]
    splats: list[Splat] = []
    open_report = False
    i = 0
    while i < len(lines):
        kind = classify(lines[i])
        if kind is None:
            i += 1
            continue
        start = i
        # A "cut here" line right before belongs to the same report.
        if start > 0 and "cut here" in lines[start - 1]:
            start -= 1
        end = i + 1
        limit = MAX_LINES_KIND.get(kind, MAX_LINES)
        while end < len(lines) and end - start < limit:
            if _END.search(lines[end - 1]):
                break
            nxt = lines[end]
            if classify(nxt) and not _CONTINUES.match(nxt):
                break  # the next report starts
            end += 1
        excerpt = "\n".join(lines[start:end])
        # x86 page faults print "BUG: unable to handle..." and then "Oops:"
        # as one report: fold the Oops into the open BUG before it.
        if kind == "Oops" and splats and open_report and splats[-1].kind in ("BUG", "KASAN"):
            splats[-1].excerpt += "\n" + excerpt
        else:
            splats.append(Splat(kind, lines[i].strip(), excerpt))
        open_report = not _END.search(lines[end - 1]) and end - start < limit
        i = end
    return splats


def summary(splats: list[Splat], limit: int = 4000) -> str:
    """The failure message a test gets: every header, then the excerpts."""
    heads = "; ".join(str(s) for s in splats)
    body = "\n\n".join(s.excerpt for s in splats)
    if len(body) > limit:
        body = body[:limit] + "\n[... truncated; full text in the test's dmesg/console files]"
    return f"kernel splat ({len(splats)}): {heads}\n{body}"


@dataclass(frozen=True)
class KnownBug:
    """A kernel bug outside what the lab tests, analysed: a test whose only splats are
    known bugs xfails with the analysis instead of failing (the splat is still charged to
    it, marked as known, in run.json and the summary)."""

    name: str
    pattern: str  # searched in the splat's excerpt (header and trace), across lines
    analysis: str


KNOWN_BUGS = [
    KnownBug(
        "udmabuf dma_parms",
        r"at debug_dma_map_sg\+.*begin_cpu_udmabuf",
        "udmabuf (drivers/dma-buf/udmabuf.c, 7.3.4) maps a dma-buf's sg table for "
        "DMA_BUF_IOCTL_SYNC on its misc device, which never sets dma_parms: segments of "
        "physically contiguous memfd pages longer than the default 64 KiB max segment size "
        "make DMA-API debug warn ('mapping sg segment longer than device claims to support'). "
        "ncdevmem syncs a udmabuf before it reads; DMA-API debug warns once per boot",
    ),
]


def known_bug(found: Splat) -> KnownBug | None:
    """The known kernel bug this splat is, if any."""
    return next((b for b in KNOWN_BUGS if re.search(b.pattern, found.excerpt, re.S)), None)
