"""QEMU machine definitions and the guest's early init."""
