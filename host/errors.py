"""The one exception type the CLI and the pytest plugin turn into a one-line error."""


class LabError(Exception):
    """A user-facing failure: printed as one line, exit status non-zero."""


def first_error(output: str) -> str | None:
    """The first compiler/linker error line of a build's output, if any."""
    import re

    for line in output.splitlines():
        if re.search(r"\b(error|ERROR):", line):
            return line.strip()
    return None
