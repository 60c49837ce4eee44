"""Patch-series CI and bisect: git worktrees and inputs, per-commit build, check and
test steps, the child pytest runs."""
