"""Receive benchmark: zcrx vs plain recv() on the same zcnic NIC, in the guest.

    python3 -m host bench [--kernel K] [--size BYTES] [--rounds N]

Sender and receiver are both in the guest, on the in_guest tests' NicEnv topology (zc0 on
veth0, the sender in netns `remote`; guest_tests/bench.py, run by the guest agent), so the
number measures the receive path, not the host's packet generator. Two receivers read
every byte: the Python client (guest_tests/zcrx) and a C one on liburing
(guest_tests/bench_receiver.c, built in the guest image), which leaves the kernel's
paths to compare. Prints each round, min/median/max per receiver and mode, and the
zcrx/recv ratio of the medians for both. Under TCG the absolute rates are those of an
emulated CPU: compare ratios, and only on the same machine.
"""

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from host.cache import cache_root
from host.guestimage.image import build_in_image
from host.kernels import upstream, zcnic
from host.kernels.kernel import provision
from host.vm.guest import Guest
from host.vm.qemu import VM

MODES = ("recv", "zcrx")
RECEIVERS = ("python", "c")
RECEIVER_SRC = Path(__file__).resolve().parent.parent / "guest_tests" / "bench_receiver.c"


def build_receiver(image) -> Path:
    """guest_tests/bench_receiver.c built with the image's gcc-14 and liburing (cached by
    the source and the image)."""
    source = RECEIVER_SRC.read_bytes()
    key = hashlib.sha256(source + str(image.root).encode()).hexdigest()[:16]
    out = cache_root() / "bench" / key / "bench_receiver"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        binary = build_in_image(
            image,
            {"src/bench_receiver.c": source},
            "cd /src && gcc-14 -O2 -Wall -Werror bench_receiver.c -o bench_receiver -luring",
            "src/bench_receiver",
            "the benchmark's C receiver (in the guest image)",
            out.parent / "build.log",
        )
        tmp = out.with_name("bench_receiver.tmp")
        tmp.write_bytes(binary)
        tmp.chmod(0o755)
        tmp.rename(out)
    return out


def call_cost(guest, calls: int = 20) -> str:
    """What every guest test pays: one request to the boot's agent (an empty function's
    round trip) and one shell command over SSH, median of CALLS each."""
    guest.call("guest_tests.bench:nothing")  # the agent starts on first use: not counted
    agent, shell = [], []
    for _ in range(calls):
        t0 = time.monotonic()
        guest.call("guest_tests.bench:nothing")
        agent.append(time.monotonic() - t0)
        t0 = time.monotonic()
        guest.sh("true", check=True)
        shell.append(time.monotonic() - t0)
    return (
        f"one guest call: {statistics.median(agent) * 1e3:.1f} ms to the agent, "
        f"{statistics.median(shell) * 1e3:.1f} ms for a shell command over SSH (median of {calls})"
    )


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m host bench")
    parser.add_argument("--kernel", default="default")
    parser.add_argument("--size", type=int, default=8 << 20)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args(args)
    kernel, image = provision(opts.kernel)
    ko = zcnic.build(kernel, image)
    receiver = build_receiver(image)
    rates: dict[tuple[str, str], list[float]] = {(r, m): [] for r in RECEIVERS for m in MODES}
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-bench-") as tmp:
        # what the `nic` fixture stages for in_guest tests: zcnic.ko and the kernel's YNL
        shutil.copy(ko, Path(tmp) / "zcnic.ko")
        shutil.copy(receiver, Path(tmp) / "bench_receiver")
        upstream.stage_ynl(kernel, image, Path(tmp) / "ynl")
        nic = {"nic": {"module": "/results/zcnic.ko", "ynl": "/results/ynl"}}
        vm = VM(kernel, image, Path(tmp))
        try:
            vm.start()
            guest = Guest(vm, timeout=600)
            print(call_cost(guest), flush=True)
            seed = 0
            for r in range(opts.rounds):
                for who in RECEIVERS:
                    for mode in MODES:
                        seed += 1
                        got = guest.call(
                            "guest_tests.bench:one_round",
                            envs=nic,
                            mode=mode,
                            size=opts.size,
                            seed=seed,
                            receiver="/results/bench_receiver" if who == "c" else None,
                        )
                        assert got["bytes"] == opts.size and got["match"], got
                        rate = got["bytes"] / got["seconds"] / 1e6
                        rates[who, mode].append(rate)
                        print(f"round {r + 1} {who:6} {mode:5} {rate:8.1f} MB/s", flush=True)
        finally:
            vm.stop()
    for who, mode in rates:
        m = rates[who, mode]
        print(f"{who:6} {mode:5} MB/s: min {min(m):.1f}  median {statistics.median(m):.1f}  max {max(m):.1f}")
    ratios = []
    for who in RECEIVERS:
        recv, zc = statistics.median(rates[who, "recv"]), statistics.median(rates[who, "zcrx"])
        ratios.append(f"{who} zcrx/recv = {zc / recv:.2f}")
    print(f"{kernel.describe()} ({vm.accel}): {', '.join(ratios)}")
    return 0
