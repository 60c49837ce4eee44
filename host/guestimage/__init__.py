"""The guest image: a Debian root filesystem built with mmdebstrap through a private
apt, and the chroot that builds things inside it."""
