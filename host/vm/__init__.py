"""VM lifecycle: the initramfs and QEMU started and stopped (KVM or TCG), SSH into the
guest, its kernel log, and the `guest` object tests talk to."""
