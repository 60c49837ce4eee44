"""A real kernel git tree with a known-bad series, for the series/bisect end-to-end test.

Debian's linux-source of the default kernel, put under git as one base commit,
and a branch `zcrx-series` of five commits to io_uring/zcrx.c. The third one
makes IORING_REGISTER_ZCRX_IFQ refuse rq_entries == IO_RQ_MAX_ENTRIES (32768)
without IORING_SETUP_CLAMP, which test_nodev_setup.py's registration table
checks (rq_entries_max must succeed). The fourth adds an unused variable: a new
compiler warning, nothing else. Commits are made with fixed dates and identity,
so their ids are the same on every machine.

    python3 -m host.ci.e2e_tree      # prints the tree's path (made if missing)
"""

import os
import shutil
import subprocess
from pathlib import Path

from host.cache import cache_root

BRANCH = "zcrx-series"
BAD_SUBJECT = "io_uring/zcrx: check the refill ring size against its limit once"
_ENV = {
    "GIT_AUTHOR_NAME": "Zcrx Lab",
    "GIT_AUTHOR_EMAIL": "zcrx-lab@example.org",
    "GIT_COMMITTER_NAME": "Zcrx Lab",
    "GIT_COMMITTER_EMAIL": "zcrx-lab@example.org",
}
SOB = "\n\nSigned-off-by: Zcrx Lab <zcrx-lab@example.org>\n"

# (subject, body, [(old text, new text)]) applied to io_uring/zcrx.c in order.
SERIES = [
    (
        "io_uring/zcrx: say where the refill ring limit comes from",
        "The refill ring is sized by userspace; document the bound.",
        [
            (
                "#define IO_RQ_MAX_ENTRIES\t\t32768\n",
                "/* Largest refill ring userspace may ask for (IORING_SETUP_CLAMP clamps to it). */\n"
                "#define IO_RQ_MAX_ENTRIES\t\t32768\n",
            )
        ],
    ),
    (
        "io_uring/zcrx: name the refill queue index check",
        "A helper for the if_rxq sanity check, no functional change.",
        [
            (
                "\tif (reg.if_rxq == -1 || !reg.rq_entries)\n\t\treturn -EINVAL;\n",
                "\tif (!zcrx_reg_rxq_valid(&reg))\n\t\treturn -EINVAL;\n",
            ),
            (
                "#define IO_RQ_MAX_ENTRIES\t\t32768\n",
                "#define IO_RQ_MAX_ENTRIES\t\t32768\n\n"
                "static inline bool zcrx_reg_rxq_valid(const struct io_uring_zcrx_ifq_reg *reg)\n"
                "{\n\treturn reg->if_rxq != -1 && reg->rq_entries;\n}\n",
            ),
        ],
    ),
    (
        BAD_SUBJECT,
        "Compare against the limit in one place before rounding up.",
        [("\tif (reg.rq_entries > IO_RQ_MAX_ENTRIES) {\n", "\tif (reg.rq_entries >= IO_RQ_MAX_ENTRIES) {\n")],
    ),
    (
        "io_uring/zcrx: keep the rounded ring size at hand",
        "Prepare for reporting the rounded size back.",
        [
            (
                "\treg.rq_entries = roundup_pow_of_two(reg.rq_entries);\n",
                "\tu32 rounded;\n\n\treg.rq_entries = roundup_pow_of_two(reg.rq_entries);\n",
            )
        ],
    ),
    (
        "io_uring/zcrx: spell out CAP_NET_ADMIN's purpose",
        "Comment only.",
        [
            (
                "\tif (!capable(CAP_NET_ADMIN))\n\t\treturn -EPERM;\n",
                "\t/* Zero copy receive steers device queues: an admin's decision. */\n"
                "\tif (!capable(CAP_NET_ADMIN))\n\t\treturn -EPERM;\n",
            )
        ],
    ),
]


def _git(tree: Path, *args: str, date: int = 0) -> str:
    stamp = f"@{1767225600 + date * 60} +0000"  # 2026-01-01, a minute per commit
    env = {**os.environ, **_ENV, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    return subprocess.run(
        ["git", "-C", str(tree), *args], check=True, capture_output=True, text=True, env=env
    ).stdout


def tree(source: Path | None = None) -> Path:
    """The e2e tree (made once from SOURCE, Debian's linux-source of the default kernel)."""
    if source is None:
        from host.guestimage.image import guest_image
        from host.kernels.upstream import full_source_tree

        source = full_source_tree(guest_image())
    where = cache_root() / "e2e" / source.parent.name / "linux"
    if (where / ".git" / "refs" / "heads" / BRANCH).exists():
        return where
    if where.exists():
        shutil.rmtree(where)
    where.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(source), str(where)], check=True)
    _git(where, "init", "-q", "-b", "master")
    _git(where, "config", "core.autocrlf", "false")
    _git(where, "add", "-A", "-f")  # Debian's .gitignore ignores the top level
    _git(where, "commit", "-q", "-m", f"Linux {source.parent.name} (Debian linux-source)")
    _git(where, "tag", "base")
    _git(where, "checkout", "-q", "-b", "tmp-" + BRANCH)
    for n, (subject, body, edits) in enumerate(SERIES, 1):
        path = where / "io_uring/zcrx.c"
        text = path.read_text()
        for old, new in edits:
            if text.count(old) != 1:
                raise RuntimeError(f"e2e series step {n}: {old!r} not found once in io_uring/zcrx.c")
            text = text.replace(old, new)
        path.write_text(text)
        _git(where, "commit", "-q", "-a", "-m", f"{subject}\n\n{body}{SOB}", date=n)
    _git(where, "branch", "-m", BRANCH)
    _git(where, "checkout", "-q", "master")
    return where


if __name__ == "__main__":
    print(tree())
