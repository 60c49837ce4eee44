"""The guest-side test library: environments (env.py), undo steps (defer.py),
case tables that change uapi struct fields (structs.py) and ifq registration
cases built on them (registration.py).

Modelled on the kernel's tools/testing/selftests/net/lib/py: a test takes an
environment object, acts, registers each undo with `defer`, and checks, top to
bottom in one function.
"""
