"""pytest glue: the zcrx-lab plugin lives in host/report/plugin.py, its pytest-xdist
side (`pytest -n N`: one VM per worker) in host/report/parallel.py."""

pytest_plugins = ["host.report.parallel", "host.report.plugin"]  # parallel first: plugin imports it
