"""Receive benchmark: zcrx vs plain recv() on the same zcnic NIC, in the guest.

    python3 -m host bench [--kernel K] [--size BYTES] [--rounds N]

Sender and receiver are both in the guest (a veth into a network namespace),
so the number measures the receive path, not the host's packet generator.
Prints each round and the ratio of the medians. Under TCG the absolute rates
are those of an emulated CPU: compare ratios, and only on the same machine.
"""

import argparse
import statistics
import tempfile
from pathlib import Path

from host.kernels import zcnic
from host.kernels.kernel import provision
from host.vm.guest import Guest
from host.vm.qemu import VM


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m host bench")
    parser.add_argument("--kernel", default="default")
    parser.add_argument("--size", type=int, default=8 << 20)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args(args)
    kernel, image = provision(opts.kernel)
    ko = zcnic.build(kernel, image)
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-bench-") as tmp:
        (Path(tmp) / "zcnic.ko").write_bytes(ko.read_bytes())
        vm = VM(kernel, image, Path(tmp))
        try:
            vm.start()
            guest = Guest(vm, timeout=600)
            guest.call("scenarios.bench:setup", zcnic_ko="/results/zcnic.ko")
            rates: dict[str, list[float]] = {"recv": [], "zcrx": []}
            port = 41000
            for r in range(opts.rounds):
                for mode in ("recv", "zcrx"):
                    port += 1
                    got = guest.call("scenarios.bench:run", mode=mode, port=port, size=opts.size)
                    assert got["bytes"] == opts.size, got
                    rate = got["bytes"] / got["seconds"] / 1e6
                    rates[mode].append(rate)
                    extra = f" copy_count={got['stats']['copy_count']}" if mode == "zcrx" else ""
                    print(f"round {r + 1} {mode:5} {rate:8.1f} MB/s{extra}", flush=True)
        finally:
            vm.stop()
    recv, zc = statistics.median(rates["recv"]), statistics.median(rates["zcrx"])
    print(
        f"{kernel.describe()} ({vm.accel}): median recv() {recv:.1f} MB/s, zcrx {zc:.1f} MB/s, "
        f"zcrx/recv = {zc / recv:.2f}"
    )
    return 0
