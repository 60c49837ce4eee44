"""Reading liburing's test/zcrx.c and the image's liburing version (host/kernels/liburing.py)."""

import io
import tarfile
from types import SimpleNamespace

import pytest

from host.errors import LabError
from host.kernels import liburing

RUN_TESTS = """
static int helper(void)
{
	ret = test_not_this();
}

static int run_tests(void)
{
	int ret;

	ret = test_register_basic();
	if (ret)
		return T_EXIT_FAIL;
	for (i = 0; i < 4; i++) {
		ret = test_abnormal_exit(iowq, pin_zcrx);
		ret = test_abnormal_exit(iowq, 1);
	}
	return T_EXIT_PASS;
}
"""


def test_cases_are_run_tests_calls_in_order(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test/zcrx.c").write_text(RUN_TESTS)
    assert liburing.cases(tmp_path) == ["register_basic", "abnormal_exit"]


def test_image_version_of_installed_liburing_dev(tmp_path):
    status = tmp_path / "rootfs/var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text(
        "Package: liburing2\nStatus: install ok installed\nVersion: 2.15-1\n\n"
        "Package: liburing-dev\nStatus: deinstall ok config-files\nVersion: 2.9-1\n\n"
        "Package: liburing-dev\nStatus: install ok installed\nSource: liburing\nVersion: 2.15-1\n"
    )
    assert liburing.image_version(SimpleNamespace(root=tmp_path / "rootfs")) == "2.15-1"
    status.write_text("Package: liburing2\nStatus: install ok installed\nVersion: 2.15-1\n")
    with pytest.raises(LabError, match="no liburing-dev"):
        liburing.image_version(SimpleNamespace(root=tmp_path / "rootfs"))


def _tarball(*members: tuple[str, str, str]) -> tarfile.TarFile:
    """An in-memory tarball of (name, type, content or link target) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, text in members:
            info = tarfile.TarInfo(name)
            if kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, text
                tar.addfile(info)
            else:
                info.size = len(text)
                tar.addfile(info, io.BytesIO(text.encode()))
    buf.seek(0)
    return tarfile.open(fileobj=buf)


@pytest.mark.parametrize("python_filter", [True, False], ids=["data_filter", "python_3.11.2"])
def test_source_tarball_unpacked_and_escapes_refused(tmp_path, monkeypatch, python_filter):
    """What Debian 12's Python 3.11.2 (no extraction filters) gets must match the "data" filter:
    the tree unpacked, a link out of it refused."""
    if not python_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    with _tarball(("src/a.c", "file", "int a;"), ("src/b.c", "link", "a.c")) as tar:
        liburing._extract_data(tar, tmp_path / "ok")
    assert (tmp_path / "ok/src/b.c").read_text() == "int a;"
    with _tarball(("src/x", "link", "../../etc/passwd")) as tar, pytest.raises((LabError, tarfile.TarError)):
        liburing._extract_data(tar, tmp_path / "bad")
