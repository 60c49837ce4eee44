"""Guest-side entry point: run one scenario function and print its result.

The host calls `python3 -m guest_tests.agent MODULE:FUNCTION JSON_KWARGS` over
SSH. The function's return value (JSON-serialisable) is printed on the last
line of stdout after a marker, so scenario output before it never confuses the
host; an exception is reported the same way with its traceback.
"""

import importlib
import json
import sys
import traceback

MARKER = "@@zcrx-lab-result@@"


def main() -> int:
    target, kwargs = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    module_name, func_name = target.split(":")
    try:
        func = getattr(importlib.import_module(f"guest_tests.{module_name}"), func_name)
        result = {"ok": True, "value": func(**kwargs)}
    except Exception as exc:  # reported to the host, which fails the test with it
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()}  # fmt: skip
    sys.stdout.flush()
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
