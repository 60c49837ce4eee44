"""The one exception type the CLI and the pytest plugin turn into a one-line error."""


class LabError(Exception):
    """A user-facing failure: printed as one line, exit status non-zero."""


class BootError(LabError):
    """The kernel under test did not boot: its fault, not the lab's (series and
    bisect charge it to the commit; a plain LabError aborts them)."""


def first_error(output: str) -> str | None:
    """The first compiler/linker error line of a build's output, if any."""
    import re

    for line in output.splitlines():
        if re.search(r"\b(error|ERROR):", line):
            return line.strip()
    return None
