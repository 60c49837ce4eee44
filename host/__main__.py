"""`python3 -m host COMMAND`: the zcrx-lab command line.

  setup                 install Debian packages, .venv and the guest image
  run [PYTEST ARGS]     setup, then the zcrx guest suite on the default kernel
  test [PYTEST ARGS]    setup, then the project's own tests (unit + guest + harness)
  check-kernel K        check K (default, bzImage or tree) for what the lab needs
  boot K                boot K once, print the time to SSH, shut down
  shell K [-- CMD]      boot K and run CMD (or an interactive shell) in the guest
  bench [--kernel K]    receive rate in the guest: zcrx vs plain recv() on zcnic
  bench-boot [--kernel K]  the lab's boot to SSH against a bare boot of the kernel (ratios)
  build-kernel SRC|debug [--coverage]  configure (kconfigs/) and build a kernel into the cache
  series INPUT --tree T [TESTS]  test a patch series (mbox, patch dir, BASE..HEAD, message id)
                        commit by commit; charge each new failure to its commit
  bisect --tree T --good G --bad B [TESTS]  git bisect run with the lab as the judge
  bisect-step [TESTS]   judge the tree's HEAD once (exit 0/1/125/128), for `git bisect run`
  merge-results OUT DIR...  one report (run.json, junit.xml, summary.md) from several results
                        directories, e.g. the shards of a CI matrix (pytest --shard I/N)

Commands run with any python3; all but `setup` re-run themselves inside .venv.
"""

import os
import sys

if not __package__:  # run as `python3 path/to/host ...` (e.g. by `git bisect run`)
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.path.dirname(_here)] + [p for p in sys.path if os.path.abspath(p or ".") != _here]
    __package__ = "host"

from host.errors import LabError  # noqa: E402

USAGE = __doc__
STDLIB_ONLY = ("merge-results",)  # commands that need no .venv


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    if command in STDLIB_ONLY:  # any python3, e.g. a CI job that only gathers shards' results
        from host import cli

        return cli.dispatch(command, args)
    from host.setup import REPO, VENV, setup

    if command in ("setup", "run", "test"):
        python = setup()
    else:
        python = VENV / "bin" / "python"
        if not python.exists():
            raise LabError("no .venv yet: run `python3 -m host setup` first")
    if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.environ.setdefault("ZCRX_LAB_CWD", os.getcwd())  # relative paths the user gave
        os.chdir(REPO)
        os.execv(str(python), [str(python), "-m", "host", command, *args])
    from host import cli

    return cli.dispatch(command, args)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except LabError as exc:
        print(f"zcrx-lab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("zcrx-lab: interrupted", file=sys.stderr)
        sys.exit(130)
