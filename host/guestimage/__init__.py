"""The guest image: a Debian root filesystem built with debootstrap through a private
apt, and the initramfs that boots it."""
