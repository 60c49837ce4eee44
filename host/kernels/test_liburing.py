"""Reading liburing's test/zcrx.c and the image's liburing version (host/kernels/liburing.py)."""

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
