"""The control channel: paramiko over QEMU's loopback-only port forward."""

import logging
import socket
import time
from dataclasses import dataclass

import paramiko

from host.errors import LabError

# paramiko logs every refused handshake with a traceback while the guest boots.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)


class GuestTimeout(LabError):
    """The guest did not answer in time: hung, or dead."""


@dataclass
class Result:
    cmd: str
    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"`{self.cmd}` exited {self.rc}\n{self.stdout}{self.stderr}".rstrip()


class Ssh:
    def __init__(self, port: int, key_file, user: str = "root"):
        self.port, self.key_file, self.user = port, str(key_file), user
        self.client: paramiko.SSHClient | None = None

    def connect(self, deadline: float, alive, guest_up) -> None:
        """Connect once GUEST_UP() says the guest's init brought its network up and the
        SSH server answers; ALIVE() says whether to keep waiting.

        QEMU's user networking accepts each attempt at once and forwards it as a SYN to
        the guest. A SYN sent before the guest's network is up is lost, and QEMU resends
        it after a retransmission timeout, also after the host gave the attempt up: the
        SSH server then accepts a connection nobody holds (a fork and a child for
        nothing, at each boot). So nothing is tried before GUEST_UP(); after it, an
        attempt the server does not listen for yet is reset at once and made again."""
        key = paramiko.Ed25519Key.from_private_key_file(self.key_file)
        last: object = "the guest's init did not say that its network is up"
        while time.monotonic() < deadline:
            if not alive():
                raise LabError("the VM exited during boot")
            if not guest_up():
                time.sleep(0.02)
                continue
            sock = None
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                # The handshake sends small messages back to back: with Nagle's
                # algorithm each waits until the one before is acknowledged, which
                # QEMU's end of the connection does on its 40 ms delayed-ACK timer.
                # A connection to a booted guest: 80 ms with this, 166 ms without.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # wait for the banner without consuming it: paramiko reads it
                sock.settimeout(2)
                if not sock.recv(4, socket.MSG_PEEK).startswith(b"SSH-"):
                    raise OSError("no SSH banner")
                client = paramiko.SSHClient()
                client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
                client.connect(
                    "127.0.0.1",
                    self.port,
                    self.user,
                    pkey=key,
                    sock=sock,
                    timeout=10,
                    banner_timeout=10,
                    auth_timeout=10,
                    allow_agent=False,
                    look_for_keys=False,
                )
                client.get_transport().set_keepalive(5)
                self.client = client
                return
            except (OSError, paramiko.SSHException, EOFError) as exc:
                last = exc
                if sock:
                    sock.close()
                time.sleep(0.02)
        raise GuestTimeout(f"the SSH server did not answer: {last}")

    def run(self, cmd: str, timeout: float = 60, stdin: bytes | None = None) -> Result:
        if self.client is None:
            raise GuestTimeout("not connected")
        try:
            chan = self.client.get_transport().open_session(timeout=10)
            chan.settimeout(timeout)
            chan.exec_command(cmd)
            if stdin is not None:
                chan.sendall(stdin)
                chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                if chan.recv_ready():
                    out += chan.recv(65536)
                elif chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                elif chan.exit_status_ready():
                    while chan.recv_ready():
                        out += chan.recv(65536)
                    while chan.recv_stderr_ready():
                        err += chan.recv_stderr(65536)
                    break
                elif time.monotonic() > deadline:
                    chan.close()
                    raise GuestTimeout(f"no answer in {timeout:.0f} s to: {cmd}")
                elif not self.client.get_transport().is_active():
                    raise GuestTimeout(f"connection lost while running: {cmd}")
                else:
                    time.sleep(0.005)
            rc = chan.recv_exit_status()
            chan.close()
            if rc == -1:  # the channel closed without an exit status: the server is gone
                raise GuestTimeout(f"connection lost while running: {cmd}")
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise GuestTimeout(f"connection lost while running: {cmd} ({exc})") from None
        return Result(cmd, rc, out.decode(errors="replace"), err.decode(errors="replace"))

    def open(self, cmd: str) -> "Channel":
        """CMD running in the guest with a line protocol on its stdin/stdout."""
        if self.client is None:
            raise GuestTimeout("not connected")
        try:
            chan = self.client.get_transport().open_session(timeout=10)
            chan.exec_command(cmd)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise GuestTimeout(f"connection lost while starting: {cmd} ({exc})") from None
        return Channel(chan, cmd)

    def close(self) -> None:
        if self.client:
            self.client.close()
            self.client = None


class Channel:
    """One long-running guest command: send a line, read lines back until one
    starts with a prefix; its stderr is kept (the last 64 KiB) for error reports."""

    def __init__(self, chan, cmd: str):
        self.chan, self.cmd = chan, cmd
        self.out, self.err = bytearray(), bytearray()

    def alive(self) -> bool:
        return not self.chan.closed and not self.chan.exit_status_ready()

    def request(self, line: str, prefix: str, timeout: float) -> str:
        """Send LINE; the first line back that starts with PREFIX (without it)."""
        try:
            self.chan.sendall(line.encode() + b"\n")
            deadline = time.monotonic() + timeout
            while True:
                nl = self.out.find(b"\n")
                if nl >= 0:
                    got, self.out = bytes(self.out[:nl]).decode(errors="replace"), self.out[nl + 1 :]
                    if got.startswith(prefix):
                        return got[len(prefix) :]
                    continue
                if self.chan.recv_ready():
                    self.out += self.chan.recv(65536)
                elif self.chan.recv_stderr_ready():
                    self.err = (self.err + self.chan.recv_stderr(65536))[-65536:]
                elif self.chan.exit_status_ready() or self.chan.closed:
                    status = self.chan.recv_exit_status()
                    raise ChannelClosed(f"{self.cmd} exited ({status}): {self.stderr_tail()}")
                elif time.monotonic() > deadline:
                    self.chan.close()
                    raise GuestTimeout(f"no answer in {timeout:.0f} s from {self.cmd}")
                elif not self.chan.get_transport().is_active():
                    raise GuestTimeout(f"connection lost while waiting for {self.cmd}")
                else:
                    time.sleep(0.002)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise GuestTimeout(f"connection lost while waiting for {self.cmd} ({exc})") from None

    def stderr_tail(self, lines: int = 30) -> str:
        return "\n".join(bytes(self.err).decode(errors="replace").splitlines()[-lines:])

    def take_stderr(self) -> str:
        while self.chan.recv_stderr_ready():
            self.err = (self.err + self.chan.recv_stderr(65536))[-65536:]
        text, self.err = bytes(self.err).decode(errors="replace"), bytearray()
        return text

    def close(self) -> None:
        self.chan.close()


class ChannelClosed(LabError):
    """The guest command behind a Channel exited."""
