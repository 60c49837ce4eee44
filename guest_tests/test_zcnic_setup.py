"""IORING_REGISTER_ZCRX_IFQ on a real queue (zcnic zc0): the netdev-side checks of
io_uring/zcrx.c (zcrx_register_netdev) and net/core/netdev_rx_queue.c
(netif_mp_open_rxq): queue range, device, DMA device, rx-buf-len, tcp-data-split,
hds-thresh, XDP, a queue already bound. Each failed case leaves no queue bound.
"""

import errno

import pytest

pytestmark = pytest.mark.zcnic

# case in scenarios/zcnic.py REG_CASES -> errno of the registration (0: success)
REG_ERRNO = {
    "ok": 0,
    "last_queue": 0,
    "queue_out_of_range": errno.ERANGE,  # if_rxq == real_num_rx_queues (4)
    "queue_max_plus1": errno.ERANGE,  # beyond num_rx_queues (16)
    "bad_ifindex": errno.ENODEV,
    "lower_veth": errno.EOPNOTSUPP,  # veth: no queue DMA device
    "rx_buf_len_page": errno.EOPNOTSUPP,  # any rx_buf_len: zcnic lacks QCFG_RX_PAGE_SIZE
    "split_off": errno.EINVAL,
    "hds_thresh_512": errno.EINVAL,
    "already_bound_other_ring": errno.EEXIST,
    "already_bound_same_ring": errno.EEXIST,
}


@pytest.mark.parametrize("case", list(REG_ERRNO))
def test_register(nic, nic_cached, case):
    res = nic_cached(nic, "reg_cases")
    assert res[case] == REG_ERRNO[case], f"{case}: errno {res[case]} ({errno.errorcode.get(res[case])})"
    assert res[case + "_bound_after"] == [], "a queue stayed bound"


def test_generic_xdp_blocks_registration(nic, nic_cached):
    """zcnic has no native XDP, but generic XDP (a multi-buffer XDP_PASS program) attaches
    with header split on, and then the provider is refused: EEXIST."""
    res = nic_cached(nic, "reg_cases")["xdp_generic"]
    assert res == {"attach": 0, "register": errno.EEXIST}, res


def test_single_buffer_xdp_refused_with_header_split(nic, nic_cached):
    res = nic_cached(nic, "reg_cases")["xdp_generic_single_buffer"]
    assert res["attach"] == errno.EBUSY and "tcp-data-split" in res["extack"], res


def test_native_xdp_unsupported(nic, nic_cached):
    res = nic_cached(nic, "reg_cases")["xdp_native"]
    assert res["attach"] == errno.EOPNOTSUPP, res


def test_register_while_down_then_up(nic, nic_cached):
    """Binding a queue of a down device succeeds; ndo_open then creates that queue's page
    pool with the provider (queue unreadable)."""
    res = nic_cached(nic, "reg_cases")["while_down"]
    assert res["errno"] == 0 and res["bound"] == [1], res
    st = res["stats"]
    assert st["rx1_unreadable"] == 1 and st["rx0_unreadable"] == 0 and st["rx1_posted"] > 0, st
