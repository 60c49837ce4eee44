"""The one exception type the CLI and the pytest plugin turn into a one-line error."""


class LabError(Exception):
    """A user-facing failure: printed as one line, exit status non-zero."""
