"""Reading a kernel .config: CONFIG_X=value lines into a dict."""

import re


def parse_config(text: str) -> dict[str, str]:
    """CONFIG option (without the prefix) -> value ("y", "m", "64", '"str"')."""
    config = {}
    for line in text.splitlines():
        m = re.match(r"^CONFIG_(\w+)=(.*)$", line)
        if m:
            config[m.group(1)] = m.group(2)
    return config
