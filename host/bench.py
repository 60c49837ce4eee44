"""Receive benchmark: zcrx vs plain recv() on the same zcnic NIC, in the guest.

    python3 -m host bench [--kernel K] [--size BYTES] [--rounds N]

Sender and receiver are both in the guest, on the in_guest tests' NicEnv topology (zc0 on
veth0, the sender in netns `remote`; guest_tests/bench.py, run by the guest agent), so the
number measures the receive path, not the host's packet generator. Prints each round,
min/median/max per mode and the ratio of the medians. Under TCG the absolute rates are
those of an emulated CPU: compare ratios, and only on the same machine.
"""

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from host.kernels import upstream, zcnic
from host.kernels.kernel import provision
from host.vm.guest import Guest
from host.vm.qemu import VM

MODES = ("recv", "zcrx")


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m host bench")
    parser.add_argument("--kernel", default="default")
    parser.add_argument("--size", type=int, default=8 << 20)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args(args)
    kernel, image = provision(opts.kernel)
    ko = zcnic.build(kernel, image)
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-bench-") as tmp:
        # what the `nic` fixture stages for in_guest tests: zcnic.ko and the kernel's YNL
        shutil.copy(ko, Path(tmp) / "zcnic.ko")
        upstream.stage_ynl(kernel, image, Path(tmp) / "ynl")
        nic = {"nic": {"module": "/results/zcnic.ko", "ynl": "/results/ynl"}}
        vm = VM(kernel, image, Path(tmp))
        try:
            vm.start()
            guest = Guest(vm, timeout=600)
            for r in range(opts.rounds):
                for mode in MODES:
                    seed = r * len(MODES) + MODES.index(mode) + 1
                    got = guest.call(
                        "guest_tests.bench:one_round", envs=nic, mode=mode, size=opts.size, seed=seed
                    )
                    assert got["bytes"] == opts.size and got["match"], got
                    rate = got["bytes"] / got["seconds"] / 1e6
                    rates[mode].append(rate)
                    extra = f" copy_count={got['copy_count']}" if mode == "zcrx" else ""
                    print(f"round {r + 1} {mode:5} {rate:8.1f} MB/s{extra}", flush=True)
        finally:
            vm.stop()
    for mode in MODES:
        m = rates[mode]
        print(f"{mode:5} MB/s: min {min(m):.1f}  median {statistics.median(m):.1f}  max {max(m):.1f}")
    recv, zc = statistics.median(rates["recv"]), statistics.median(rates["zcrx"])
    print(
        f"{kernel.describe()} ({vm.accel}): median recv() {recv:.1f} MB/s, zcrx {zc:.1f} MB/s, "
        f"zcrx/recv = {zc / recv:.2f}"
    )
    return 0
