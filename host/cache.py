"""Where cached images and kernel builds live, how their keys are made, and how
concurrent runs make each of them once."""

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("ZCRX_LAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "zcrx-lab"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def input_key(inputs: dict) -> str:
    """A short stable hash of everything that decides an artefact's content."""
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive flock on PATH (created if missing) for the block.

    Several pytest processes build into the same cache (xdist workers, a
    series beside a run): the first builds, the others wait and find it built.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def made_once(ready, lock: Path, make) -> None:
    """Make a cached artefact once: unless READY() already, MAKE() under LOCK, where a
    run that waited for another finds it READY() and makes nothing."""
    if ready():
        return
    with locked(lock):
        if not ready():
            make()


class StatMemo:
    """An artefact's path remembered against the files it was made from, checked by their
    (size, mtime, inode) rather than their content: a boot's artefacts (the initramfs,
    the uncompressed kernel) are keyed by content, and hashing and decompressing some
    15 MB of modules and kernel to find that key again cost a tenth of a CPU-second
    at every boot. A file replaced or rewritten since (a reinstalled module, a rebuilt
    kernel) changes its stat, and the value is made again from the content."""

    def __init__(self, path: Path):
        self.path = path

    @staticmethod
    def stats(files) -> dict[str, list[int] | None]:
        """FILES' (size, mtime, inode) now, None for one missing: taken before they
        are read, so that a file rewritten while it is read is made again next time."""
        out: dict[str, list[int] | None] = {}
        for path in files:
            try:
                st = os.stat(path)
            except OSError:
                out[str(path)] = None
            else:
                out[str(path)] = [st.st_size, st.st_mtime_ns, st.st_ino]
        return out

    def get(self) -> Path | None:
        """The artefact, if it is still there and every file it was made from is as
        it was then."""
        try:
            memo = json.loads(self.path.read_text())
            artefact = Path(memo["artefact"])
            if artefact.exists() and self.stats(memo["files"]) == memo["files"]:
                return artefact
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def put(self, artefact: Path, stats: dict) -> None:
        """Remember ARTEFACT as made from the files whose STATS (from stats()) are given."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")  # parallel workers
        tmp.write_text(json.dumps({"artefact": str(artefact), "files": stats}, indent=1) + "\n")
        tmp.rename(self.path)
