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
