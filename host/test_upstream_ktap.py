"""The guest's KTAP reader for upstream's selftest output (guest_tests/lib/upstream.py),
and the NetDrvEpEnv variables it derives from NicEnv; no guest needed."""

from guest_tests.lib.upstream import case_output, netdrv_env, parse_ktap


def test_parse_ktap():
    text = (
        "# Interface: zc0, driver: zcnic\nTAP version 13\n1..3\n"
        "ok 1 iou-zcrx.test_zcrx.single\n"
        "not ok 2 iou-zcrx.test_zcrx.rss\n"
        "ok 3 iou-zcrx.test_zcrx_large_chunks # SKIP Large chunks are not supported -95\n"
        "# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0\n"
    )
    assert parse_ktap(text) == {
        "test_zcrx.single": (True, "", ""),
        "test_zcrx.rss": (False, "", ""),
        "test_zcrx_large_chunks": (True, "SKIP", "Large chunks are not supported -95"),
    }


def test_netdrv_env_names_the_veth_topology():
    from guest_tests.lib.topology import ADDR, NETNS

    class Nic:  # what netdrv_env reads of a NicEnv on veth
        ifname, netns, addr = "zc0", NETNS, ADDR

    assert netdrv_env(Nic()) == {
        "NETIF": "zc0",
        "LOCAL_V4": "10.77.0.2",
        "REMOTE_V4": "10.77.0.1",
        "LOCAL_V6": "fd77::2",
        "REMOTE_V6": "fd77::1",
        "REMOTE_TYPE": "netns",
        "REMOTE_ARGS": "remote",
        "LOCAL_PREFIX_V6": "fd78::/64",
    }


def test_case_output_is_the_lines_since_the_previous_result():
    text = (
        "TAP version 13\n1..2\n"
        "# Exception| too few frames for verification\n"
        "not ok 1 toeplitz.test.tcp_ipv4\n"
        "# Exception| KeyError: 'irq'\n"
        "not ok 2 toeplitz.test.rss_tcp_ipv4\n"
    )
    assert case_output(text, "test.rss_tcp_ipv4", "toeplitz") == (
        "# Exception| KeyError: 'irq'\nnot ok 2 toeplitz.test.rss_tcp_ipv4"
    )
    assert "too few frames" in case_output(text, "test.tcp_ipv4", "toeplitz")
    assert case_output(text, "test.udp_ipv4", "toeplitz") == ""
