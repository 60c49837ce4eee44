"""pytest glue: the zcrx-lab plugin lives in host/plugin.py."""

pytest_plugins = ["host.plugin"]
