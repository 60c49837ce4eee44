"""Undo steps a test registers as it sets things up (like net/lib/py's defer).

Each `defer(fn, *args)` is run after the test, last registered first, whether
the test passed, failed or was skipped; a failing undo does not stop the
others. The agent calls run_deferred() after every test.
"""

_stack: list = []


def defer(fn, *args, **kwargs):
    """Run fn(*args, **kwargs) when the current test ends; returns fn's handle
    for cancelling (`.cancel()`) or running it early (`.exec()`)."""
    item = _Deferred(fn, args, kwargs)
    _stack.append(item)
    return item


class _Deferred:
    def __init__(self, fn, args, kwargs):
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def exec(self):
        self.cancel()
        self.fn(*self.args, **self.kwargs)

    def cancel(self):
        if self in _stack:
            _stack.remove(self)


def run_deferred() -> str:
    """Run and forget every pending undo; the first failure, as text ('' if none)."""
    first = ""
    while _stack:
        item = _stack.pop()
        try:
            item.fn(*item.args, **item.kwargs)
        except Exception as exc:  # the others must still run
            first = first or f"{getattr(item.fn, '__name__', item.fn)}: {type(exc).__name__}: {exc}"
    return first
