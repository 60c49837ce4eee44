"""VM lifecycle on the real default kernel: what parallel workers rely on."""

import socket

from host.vm import qemu


def test_ssh_port_taken_before_qemu_binds_it_is_retried(tmp_path, monkeypatch):
    """Another VM (a parallel worker's) may take the port _free_port() found; QEMU then
    exits naming the forwarding rule and the boot goes on with a fresh port."""
    from host.kernels import kernel

    k, img = kernel.provision("default")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        offered = [taken.getsockname()[1]]
        free = qemu._free_port
        monkeypatch.setattr(qemu, "_free_port", lambda: offered.pop() if offered else free())
        vm = qemu.VM(k, img, tmp_path)
        try:
            vm.start()
            assert vm.run("echo up", timeout=30).stdout.strip() == "up"
            assert vm.ssh.port != taken.getsockname()[1]
        finally:
            vm.stop()
    assert vm.boots == 1 and not vm.alive()
