"""Private apt configurations for Debian suites the host does not list.

The mirror is read from the host's own apt sources, never hard-coded, so the
lab uses whatever archive (or proxy, or snapshot) the machine is set up for.
"""

import os
import re
import subprocess
from pathlib import Path

from host.errors import LabError

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def host_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The URI of the host's Debian archive (not the security archive)."""
    uris = []
    for path in sorted(etc.glob("sources.list.d/*.sources")):
        for stanza in path.read_text().split("\n\n"):
            if re.search(r"^Types:.*\bdeb\b", stanza, re.M) and not re.search(
                r"^Enabled:\s*no", stanza, re.M | re.I
            ):
                for m in re.finditer(r"^URIs:\s*(.+)$", stanza, re.M):
                    uris += m.group(1).split()
    lists = [etc / "sources.list"] + sorted(etc.glob("sources.list.d/*.list"))
    for path in lists:
        if path.exists():
            for line in path.read_text().splitlines():
                m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", line.strip())
                if m:
                    uris.append(m.group(1))
    debian = [u for u in uris if "security" not in u and "/debian" in u]
    if not debian:
        raise LabError(
            "cannot find a Debian archive in /etc/apt/sources.list(.d): "
            "add one so the guest image can be built from it"
        )
    return debian[0].rstrip("/")


class PrivateApt:
    """apt-get/apt-cache over a private sources list and state directory."""

    def __init__(
        self, root: Path, mirror: str, suites: list[str], kind: str = "deb", valid_until: bool = True
    ):
        """KIND "deb-src" lists source packages (apt-get source); valid_until=False reads
        a suite past its Release file's Valid-Until (mirror snapshots keep serving sid)."""
        self.root = root
        self.mirror = mirror
        (root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (root / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        opts = f"signed-by={KEYRING}" + ("" if valid_until else " check-valid-until=no")
        sources = "".join(f"{kind} [{opts}] {mirror} {suite} main\n" for suite in suites)
        path = root / "sources.list"
        # Parallel workers construct this at once while others run apt-cache on the
        # list: rewriting it in place let one read it empty (no suite, no kernel).
        if not path.exists() or path.read_text() != sources:
            tmp = path.with_name(f"sources.list.{os.getpid()}")
            tmp.write_text(sources)
            tmp.replace(path)

    def options(self) -> list[str]:
        return [
            "-o",
            f"Dir::Etc::sourcelist={self.root / 'sources.list'}",
            "-o",
            "Dir::Etc::sourceparts=-",
            "-o",
            f"Dir::State::Lists={self.root / 'lists'}",
            "-o",
            f"Dir::Cache::Archives={self.root / 'archives'}",
            "-o",
            "Dir::State::status=/dev/null",
            "-o",
            "APT::Sandbox::User=root",
        ]

    def update(self) -> None:
        proc = subprocess.run(
            ["apt-get", *self.options(), "-q", "update"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        failed = [
            ln for ln in proc.stdout.splitlines() + proc.stderr.splitlines() if ln.startswith(("Err:", "E:"))
        ]
        if proc.returncode != 0 or failed:
            detail = failed[0] if failed else proc.stderr.strip().splitlines()[-1:]
            raise LabError(f"cannot reach the Debian archive {self.mirror}: {detail}")

    def candidate(self, package: str, suite: str) -> str | None:
        """The version of PACKAGE that SUITE offers, or None."""
        out = subprocess.run(
            ["apt-cache", *self.options(), "madison", package],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in out.splitlines():
            fields = [f.strip() for f in line.split("|")]
            if len(fields) >= 3 and re.search(rf"\b{re.escape(suite)}/", fields[2]):
                return fields[1]
        return None
