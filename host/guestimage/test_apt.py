"""The Debian mirror is read from the host's apt configuration."""

import pytest

from host.errors import LabError
from host.guestimage.apt import host_mirror

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_deb822_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert host_mirror(tmp_path) == "http://mirror.example/debian"


def test_one_line_sources_skip_security_and_options(tmp_path):
    (tmp_path / "sources.list").write_text(
        "deb http://mirror.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://proxy.example:3142/debian/ bookworm main\n"
    )
    assert host_mirror(tmp_path) == "http://proxy.example:3142/debian"


def test_disabled_stanza_ignored(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Enabled: no\nTypes: deb\nURIs: http://old.example/debian\nSuites: x\n\n" + DEB822
    )
    assert host_mirror(tmp_path) == "http://mirror.example/debian"


def test_no_debian_archive_is_a_clear_error(tmp_path):
    (tmp_path / "sources.list").write_text("deb https://packages.example/apt stable main\n")
    with pytest.raises(LabError, match="cannot find a Debian archive"):
        host_mirror(tmp_path)
