"""The commands behind `python3 -m host`, run inside .venv."""

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from host.errors import LabError
from host.guestimage import image
from host.kernels import kernel
from host.setup import REPO


def cmd_setup(_args) -> int:
    img = image.guest_image(max_age=0)
    print(f"zcrx-lab: ready: guest image {img.root.parent.name}, default kernel {img.kernel_version}")
    return 0


def _pytest(args: list[str]) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=REPO)


def cmd_run(args) -> int:
    image.guest_image()
    # -n auto: one VM per free core, as `test`; `-n 0` in ARGS for one VM
    return _pytest(["--kernel=default", "-v", "-rfEs", "-n", "auto", "guest_tests", *args])


def cmd_test(args) -> int:
    image.guest_image()
    # `slow` (the series/bisect end-to-end on a real tree: a kernel build) stays out;
    # -n auto: one VM per free core (host/report/parallel.py), `-n 0` in ARGS for serial
    return _pytest(["-v", "-rfEs", "-m", "not slow", "-n", "auto", "host", "guest_tests", *args])


def cmd_check_kernel(args) -> int:
    if len(args) != 1:
        raise LabError("usage: check-kernel KERNEL")
    k, _ = kernel.provision(args[0])
    print(f"zcrx-lab: kernel {k.describe()} has every option the lab needs")
    return 0


def _vm_options(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """ARGS without --vm=qemu|vng and --vng-opts=OPTS (as pytest takes them), and those as VM arguments."""
    rest, options = [], {}
    names = {"--vm": "launcher", "--vng-opts": "vng_opts"}
    args = list(args)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if name in names:
            if not eq:
                if not args:
                    raise LabError(f"{name} needs a value")
                value = args.pop(0)
            options[names[name]] = value
        elif arg == "--":
            rest += [arg, *args]
            break
        else:
            rest.append(arg)
    if options.get("launcher", "qemu") not in ("qemu", "vng"):
        raise LabError(f"--vm: {options['launcher']!r} is neither qemu nor vng")
    return rest, options


@contextlib.contextmanager
def _booted(spec: str, vm_options: dict[str, str] | None = None):
    """A VM of SPEC for the duration; its console log lives in a temp dir
    that goes with it (pytest runs keep theirs in the results directory)."""
    from host.vm.qemu import VM

    k, img = kernel.provision(spec)
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-boot-") as tmp:
        vm = VM(k, img, Path(tmp), **(vm_options or {}))
        try:
            vm.start()
            print(
                f"zcrx-lab: {vm.launcher} booted {k.describe()} ({vm.accel}: {vm.accel_reason}) "
                f"to SSH in {vm.boot_seconds:.1f} s",
                file=sys.stderr,
            )
            yield vm
        finally:
            vm.stop()


def cmd_boot(args) -> int:
    args, vm_options = _vm_options(args)
    if len(args) != 1:
        raise LabError("usage: boot KERNEL [--vm=qemu|vng] [--vng-opts=OPTS]")
    with _booted(args[0], vm_options):
        pass
    return 0


def cmd_shell(args) -> int:
    args, vm_options = _vm_options(args)
    if not args:
        raise LabError("usage: shell KERNEL [--vm=qemu|vng] [--vng-opts=OPTS] [-- CMD]")
    spec, rest = args[0], args[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    with _booted(spec, vm_options) as vm:
        if rest:
            result = vm.run(" ".join(rest), timeout=3600)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.rc
        return subprocess.call(
            [
                "ssh",
                "-q",
                "-t",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-i",
                str(vm.image.ssh_key),
                "-p",
                str(vm.ssh.port),
                "root@127.0.0.1",
            ]
        )


def cmd_build_kernel(args) -> int:
    import argparse

    from host.kernels import build

    parser = argparse.ArgumentParser(prog="python3 -m host build-kernel")
    parser.add_argument("source", help="a kernel source tree, or 'debug' (Debian's linux-source)")
    parser.add_argument(
        "--fragments",
        help="comma-separated kconfigs/ fragments (default: base,zcrx for a tree, base,zcrx,debug for debug)",
    )
    parser.add_argument(
        "--coverage", action="store_true", help="add kconfigs/coverage: gcov for io_uring/ and net/core/"
    )
    parser.add_argument("-j", type=int, dest="jobs")
    opts = parser.parse_args(args)
    fragments = opts.fragments.split(",") if opts.fragments else None
    out = build.build(opts.source, fragments, opts.jobs, coverage=opts.coverage)
    print(f"zcrx-lab: kernel tree {out} (use --kernel={out})")
    return 0


def cmd_merge_results(args) -> int:
    from host.report import merge

    if len(args) < 2 or any(a.startswith("-") for a in args):
        raise LabError("usage: merge-results OUT DIR... (results directories of runs or shards)")
    cwd = Path(os.environ.get("ZCRX_LAB_CWD", "."))  # relative to where the user typed it
    out, dirs = cwd / args[0], [cwd / a for a in args[1:]]
    for folder in dirs:
        if not folder.is_dir():
            raise LabError(f"merge-results: {folder}: no such directory")
    run = merge.merge_results(out, dirs)
    counts: dict[str, int] = {}
    for test in run["tests"].values():
        counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no tests"
    print(f"zcrx-lab: merged {len(dirs)} results directories into {out}: {summary} (summary.md)")
    return 1 if any(test["outcome"] in merge.FAILED for test in run["tests"].values()) else 0


def cmd_bench_boot(args) -> int:
    from host import bootbench

    return bootbench.main(args)


def cmd_bench(args) -> int:
    from host import bench

    return bench.main(args)


def cmd_series(args) -> int:
    from host.ci import series

    return series.main(args)


def cmd_bisect(args) -> int:
    from host.ci import bisection

    return bisection.main(args)


def cmd_bisect_step(args) -> int:
    from host.ci import bisection

    return bisection.step_main(args)


COMMANDS = {
    "setup": cmd_setup,
    "run": cmd_run,
    "test": cmd_test,
    "check-kernel": cmd_check_kernel,
    "boot": cmd_boot,
    "shell": cmd_shell,
    "bench": cmd_bench,
    "bench-boot": cmd_bench_boot,
    "merge-results": cmd_merge_results,
    "build-kernel": cmd_build_kernel,
    "series": cmd_series,
    "bisect": cmd_bisect,
    "bisect-step": cmd_bisect_step,
}


def dispatch(command: str, args: list[str]) -> int:
    if command not in COMMANDS:
        raise LabError(f"unknown command {command!r} (see python3 -m host --help)")
    return COMMANDS[command](args)
