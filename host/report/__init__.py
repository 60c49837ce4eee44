"""Reporting: the pytest plugin (boot, per-test kernel log, splat verdicts, run.json),
the splat scanner, coverage."""
