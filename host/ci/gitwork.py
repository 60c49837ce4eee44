"""Git for series and bisect: the user's tree is only read; the work happens in
a linked worktree under the cache, removed when the run ends however it ends.

The worktree's path is stable per tree (cache/worktrees/<name>-<key>), and so
is the O= build directory beside it, because kbuild's dependency files name
absolute source paths: a build directory only stays incremental with the same
source path. A fresh checkout dates every file now, which would make make
rebuild everything; `Worktree` instead dates the files that did not change
since the commit the build directory was last built from (its stamp) far in
the past, and the changed ones now, so make recompiles exactly those.
"""

import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from host.cache import cache_root
from host.errors import LabError

# Files unchanged since the build directory's stamp get this date: older than
# any object make could have built.
OLD_MTIME = 978307200  # 2001-01-01
BUILT_STAMP = ".zcrx-lab-built-commit"
# Used for `git am` where the user has no identity configured (a CI box).
IDENTITY = {"GIT_COMMITTER_NAME": "zcrx-lab", "GIT_COMMITTER_EMAIL": "zcrx-lab@localhost"}


def user_cwd() -> str:
    """Where the user typed the command (`python3 -m host` moves to the repository)."""
    return os.environ.get("ZCRX_LAB_CWD") or os.getcwd()


def git(tree: Path, *args: str, check: bool = True, env: dict | None = None) -> str:
    """Run git in TREE; its stdout. A failure is a LabError with git's own words."""
    proc = subprocess.run(
        ["git", "-C", str(tree), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if check and proc.returncode != 0:
        said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise LabError(f"git {args[0]}: {' | '.join(said[-4:]) or f'exit {proc.returncode}'}")
    return proc.stdout


def toplevel(path: str | Path) -> Path:
    tree = Path(path).expanduser().resolve()
    if not tree.is_dir():
        raise LabError(f"--tree {tree}: no such directory")
    proc = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--show-toplevel"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise LabError(f"--tree {tree}: not a git tree ({proc.stderr.strip()})")
    return Path(proc.stdout.strip())


def rev(tree: Path, name: str) -> str:
    """Full commit id of NAME in TREE, or a LabError naming it."""
    proc = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--verify", "-q", f"{name}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise LabError(f"{name!r} is not a commit of {tree}")
    return proc.stdout.strip()


@dataclass
class Commit:
    sha: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:12]


def commits(tree: Path, base: str, head: str) -> list[Commit]:
    """BASE..HEAD, oldest first (merges are kept out: a series is linear)."""
    out = git(tree, "log", "--reverse", "--no-merges", "--format=%H %s", f"{base}..{head}")
    return [Commit(*line.split(" ", 1)) if " " in line else Commit(line, "") for line in out.splitlines()]


def subject(tree: Path, sha: str) -> str:
    return git(tree, "log", "-1", "--format=%s", sha).strip()


def touched_files(tree: Path, sha: str) -> list[str]:
    """Files SHA changes that still exist after it (what a warning check looks at)."""
    out = git(tree, "diff-tree", "--no-commit-id", "--name-only", "-r", "--diff-filter=d", f"{sha}^", sha)
    return out.split()


def tree_key(tree: Path) -> str:
    return f"{tree.name}-{hashlib.sha256(str(tree).encode()).hexdigest()[:12]}"


# -- patch input -------------------------------------------------------------------
MSGID = re.compile(r"^<?[^\s/<>@]+@[^\s/<>@]+>?$")


@dataclass
class SeriesInput:
    """What `series` was given: a commit range of the tree, or patches to apply."""

    kind: str  # "range", "mbox", "dir", "msgid"
    text: str
    base: str | None = None  # range: its BASE
    head: str | None = None  # range: its HEAD
    patches: list[Path] | None = None  # mbox/dir: files for `git am`


def parse_input(tree: Path, spec: str) -> SeriesInput:
    """Tell a range, an mbox, a directory of .patch files and a message id apart."""
    path = Path(spec).expanduser()
    if path.is_dir():
        patches = sorted(p for p in path.iterdir() if p.suffix in (".patch", ".diff", ".eml", ".mbx"))
        if not patches:
            raise LabError(f"{path}: no .patch files in this directory")
        return SeriesInput("dir", spec, patches=[p.resolve() for p in patches])
    if path.is_file():
        head = path.read_bytes()[:65536].decode(errors="replace")
        if not re.search(r"^(From |diff --git |--- |Subject: )", head, re.M):
            raise LabError(f"{path}: not a patch or mailbox (no 'From ', 'Subject:' or diff header)")
        return SeriesInput("mbox", spec, patches=[path.resolve()])
    if spec.startswith(("/", "./", "../", "~")) or spec.endswith((".mbox", ".mbx", ".patch", ".eml")):
        raise LabError(f"{spec}: no such file or directory")
    base, sep, head = spec.partition("...") if "..." in spec else spec.partition("..")
    if sep and base:
        return SeriesInput("range", spec, base=rev(tree, base), head=rev(tree, head or "HEAD"))
    if MSGID.match(spec):
        return SeriesInput("msgid", spec.strip("<>"))
    raise LabError(f"{spec!r}: not a file, a directory of patches, a BASE..HEAD range or a message id")


def fetch_msgid(msgid: str, where: Path, mailbox: Path | None = None) -> Path:
    """`b4 am` the thread of MSGID (from lore, or from the local MAILBOX) into WHERE;
    the mbox it wrote."""
    b4 = shutil.which("b4") or str(Path(sys.executable).with_name("b4"))
    if not os.path.exists(b4):
        raise LabError("b4 is not installed (it comes with `python3 -m host setup`)")
    local = ["-m", str(mailbox)] if mailbox else []
    proc = subprocess.run([b4, "-q", "am", *local, "-o", str(where), msgid], capture_output=True, text=True)
    boxes = sorted(where.glob("*.mbx"))
    if proc.returncode != 0 or not boxes:
        said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise LabError(f"b4 am {msgid}: {said[-1] if said else 'no mbox written'}")
    return boxes[0]


# -- the worktree ----------------------------------------------------------------------
@contextmanager
def terminate_as_interrupt():
    """SIGTERM and SIGHUP raise KeyboardInterrupt here, so finally blocks clean up."""

    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Worktree:
    """A detached worktree of TREE at a stable path under the cache, for one run.

    Only one run may use a tree's worktree at a time (a lock file); a worktree
    left by a killed run (SIGKILL) is removed before the next one starts.
    """

    def __init__(self, tree: Path, build_dir: Path | None = None):
        self.tree = tree
        self.root = cache_root() / "worktrees"
        self.path = self.root / tree_key(tree)
        self.build_dir = build_dir
        self._lock = None

    def __enter__(self) -> "Worktree":
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path.with_suffix(".lock"), "w")  # noqa: SIM115 - closed in __exit__
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise LabError(f"another series or bisect is running on {self.tree} ({self.path})") from None
        self._remove()  # left over from a run that was killed
        return self

    def __exit__(self, *_exc) -> None:
        try:
            self._remove()
        finally:
            self._lock.close()

    def _remove(self) -> None:
        git(self.tree, "worktree", "remove", "--force", "--force", str(self.path), check=False)
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        git(self.tree, "worktree", "prune", check=False)

    def create(self, commit: str) -> None:
        """Check out COMMIT (detached), dated for the build directory (see above)."""
        git(self.tree, "worktree", "add", "--detach", "-f", str(self.path), commit)
        self.redate()

    def redate(self) -> None:
        stamp = self.build_dir / BUILT_STAMP if self.build_dir else None
        if not stamp or not stamp.exists():
            return  # nothing built yet, or the last build failed: make decides alone
        built = stamp.read_text().strip()
        if (
            subprocess.run(
                ["git", "-C", str(self.path), "cat-file", "-e", f"{built}^{{commit}}"], capture_output=True
            ).returncode
            != 0
        ):
            stamp.unlink()
            return
        changed = set(git(self.path, "diff", "--name-only", built, "HEAD").split())
        now = time.time()
        files = git(self.path, "ls-files", "-z").split("\0")
        for name in filter(None, files):
            try:
                os.utime(
                    self.path / name,
                    (now, now) if name in changed else (OLD_MTIME, OLD_MTIME),
                    follow_symlinks=False,
                )
            except OSError:
                pass
        # git's index cached the old stat data: refresh it so status stays clean
        git(self.path, "update-index", "-q", "--refresh", check=False)

    def checkout(self, commit: str) -> None:
        git(self.path, "checkout", "-q", "--detach", commit)

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD").strip()

    def apply(self, patches: list[Path]) -> None:
        """`git am -3` the patches; a failure names the patch and git's reason."""
        has_identity = (
            subprocess.run(
                ["git", "-C", str(self.path), "var", "GIT_COMMITTER_IDENT"], capture_output=True
            ).returncode
            == 0
        )
        env = {**os.environ, **({} if has_identity else IDENTITY)}
        proc = subprocess.run(
            ["git", "-C", str(self.path), "am", "-3", "--keep-cr", *map(str, patches)],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            said = [
                ln
                for ln in (proc.stdout + proc.stderr).splitlines()
                if ln.strip()
                and not ln.startswith(
                    ("hint:", "When you have resolved", "If you prefer", "To restore", "Use 'git am")
                )
            ]
            subprocess.run(["git", "-C", str(self.path), "am", "--abort"], capture_output=True)
            raise LabError(f"the series does not apply: {' | '.join(said[-4:])}")


def mark_built(build_dir: Path, commit: str | None) -> None:
    """Record the commit BUILD_DIR's objects match (None: unknown, mid-build)."""
    stamp = build_dir / BUILT_STAMP
    if commit is None:
        stamp.unlink(missing_ok=True)
    else:
        stamp.write_text(commit + "\n")
