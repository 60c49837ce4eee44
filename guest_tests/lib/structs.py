"""Case tables that change fields of ctypes uapi structs.

A table says `{"reg.__resv[1]": 1, "area.len": plus(-100), "reg.region_ptr": BAD}`:
a path of attributes (an array element in brackets; a list fills an array from
index 0), and a value that is a number, `plus(n)` (relative to what the struct
held) or a `Late` placeholder for what exists only when the test runs in the
guest (an address, an fd), which the test maps to its value.
"""


class Late:
    """A value known only at run time; the test gives it in the `late` mapping."""

    def __init__(self, what: str):
        self.what = what

    def __repr__(self):
        return f"<{self.what}>"


def plus(n: int):
    """A change relative to the field's current value."""
    return lambda current: current + n


def resolve(value, late: dict):
    """A table value as the test uses it: a Late replaced from `late`."""
    if isinstance(value, Late):
        if value not in late:
            raise LookupError(f"the test gave no value for {value!r}")
        return late[value]
    return value


def put(obj, fields: dict, late: dict | None = None) -> None:
    """Set each path of `fields` on obj (see the module's docstring)."""
    for path, value in fields.items():
        *parents, last = path.split(".")
        target = obj
        for name in parents:
            target = getattr(target, name)
        index = None
        if last.endswith("]"):
            last, index = last[:-1].split("[")
        value = resolve(value, late or {})
        if isinstance(value, list):
            array = getattr(target, last)
            for i, item in enumerate(value):
                array[i] = item
        elif index is not None:
            array = getattr(target, last)
            array[int(index)] = value(array[int(index)]) if callable(value) else value
        else:
            setattr(target, last, value(getattr(target, last)) if callable(value) else value)
