"""Kernel provisioning: --kernel resolved to a bootable kernel (Debian packages, trees,
builds), kconfig fragments, upstream sources and selftests, zcnic built for a kernel."""
