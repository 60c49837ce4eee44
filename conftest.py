"""pytest glue: the zcrx-lab plugin lives in host/report/plugin.py."""

pytest_plugins = ["host.report.plugin"]
