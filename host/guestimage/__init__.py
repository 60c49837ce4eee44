"""The guest image: a Debian root filesystem built with debootstrap through a private
apt, and the chroot that builds things inside it."""
