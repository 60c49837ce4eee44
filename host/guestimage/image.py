"""Guest image: a Debian trixie root filesystem with the default kernel.

The image is a directory (booted over 9p, read-only, with a tmpfs overlay in
the guest), built once with mmdebstrap (no root needed) and cached under the user's cache
directory, keyed by everything that decides its content: the suites, the
package list, the kernel version trixie-backports offers and this builder.
"""

import fcntl
import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from host.cache import cache_root, input_key, locked
from host.errors import LabError, first_error
from host.guestimage.apt import PrivateApt, host_mirror

SUITE = "trixie"
BACKPORTS = "trixie-backports"
# What the guest needs to run the suite and to build zcnic with the kernel's
# own compiler (gcc-14 on trixie).
PACKAGES = [
    "gcc-14",
    "make",
    "libc6-dev",
    "kmod",
    "iproute2",
    "ethtool",
    "python3",
    # The SSH server: dropbear, not OpenSSH, whose three dynamically linked execs per
    # connection (sshd, sshd-session, sshd-auth; 23 libraries) cost a second under TCG.
    "dropbear-bin",
    "busybox",
    "procps",
    "iputils-ping",
    "ca-certificates",
    "python3-yaml",  # the kernel's YNL (tools/net/ynl) reads its specs with it
    "python3-pytest",  # in_guest tests: skips, xfails and rewritten assertions in the guest
    "socat",  # upstream's driver selftests (ntuple.py, ping.py) move their traffic with it
    "iperf3",  # ... and rss_ctx.py, ring_reconfig.py, pp_alloc_fail.py theirs
    # upstream's BPF objects (net/lib/xdp_dummy.bpf.c, hw/nk_forward.bpf.c), built in the
    # image like its C helpers (net/bpf.mk: clang --target=bpf, libbpf's headers), and
    # the tools its scripts load and inspect them with
    "clang",
    "libbpf-dev",
    "bpftool",
]
# From trixie-backports: the 7.x kernel, its headers, and linux-base, which the
# image pre-depends on and must come from the same suite.
KERNEL_PACKAGES = ["linux-image-amd64", "linux-headers-amd64", "linux-base"]
# From sid, pinned low so nothing else moves: trixie's liburing (2.9) predates
# the zcrx helpers upstream's iou-zcrx.c uses, and trixie's ethtool (6.14)
# cannot set hds-thresh.
SID_PACKAGES = ["liburing-dev", "liburing2", "ethtool"]
BUILDER_VERSION = 5
# How long what the archive offers is taken as known (`python3 -m host setup` asks anyway).
ARCHIVE_CHECK_SECONDS = 3600
# build_in_image's namespaces: root in a user namespace may mount an overlay and chroot;
# mounting /proc takes a PID namespace of its own.
BUILD_NAMESPACES = [
    "unshare",
    "--user",
    "--map-root-user",
    "--mount",
    "--propagation",
    "private",
    "--pid",
    "--fork",
]


@dataclass
class GuestImage:
    root: Path  # the root filesystem
    ssh_key: Path  # private key paramiko logs in with
    kernel_version: str  # uname -r of the default kernel
    package_version: str  # Debian version of linux-image-amd64

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.kernel_version}"

    @property
    def kernel_config(self) -> Path:
        return self.root / "boot" / f"config-{self.kernel_version}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.kernel_version


def _log(msg: str) -> None:
    print(f"[image] {msg}", file=sys.stderr, flush=True)


def _load(path: Path) -> GuestImage | None:
    meta = path / "image.json"
    if not meta.exists():
        return None
    data = json.loads(meta.read_text())
    return GuestImage(
        root=path / "rootfs",
        ssh_key=path / "id_ed25519",
        kernel_version=data["kernel_version"],
        package_version=data["package_version"],
    )


def images_dir() -> Path:
    path = cache_root() / "images"
    path.mkdir(exist_ok=True)
    return path


def guest_image(offline_ok: bool = True, max_age: float = ARCHIVE_CHECK_SECONDS) -> GuestImage:
    """The cached image for today's inputs, built if missing. The archive is asked what
    it offers (the kernel version is an input) unless it was asked less than MAX_AGE
    seconds ago: every pytest worker and every `host boot` calls this, and an apt update
    costs more CPU than the guest's boot beyond the kernel's."""
    apt = PrivateApt(cache_root() / "apt", host_mirror(), [SUITE, BACKPORTS])
    asked = cache_root() / "apt" / "updated"
    try:
        # parallel workers share the private lists: one updates at a time (apt's own
        # lock would fail the others, as if the archive were unreachable)
        with locked(cache_root() / "apt" / "update.lock"):
            if not asked.exists() or time.time() - asked.stat().st_mtime >= max_age:
                apt.update()
                asked.touch()
            # read under the lock too: never lists another worker is replacing
            version = apt.candidate("linux-image-amd64", BACKPORTS)
    except LabError:
        # No archive: any image built before is better than no run at all.
        cached = sorted(images_dir().glob("*/image.json"), key=os.path.getmtime)
        if offline_ok and cached:
            _log("archive unreachable; using the newest cached image")
            return _load(cached[-1].parent)
        raise
    if not version:
        raise LabError(f"{BACKPORTS} offers no linux-image-amd64 on {apt.mirror}")
    key = input_key(
        {
            "suite": SUITE,
            "packages": PACKAGES,
            "kernel_packages": KERNEL_PACKAGES,
            "sid_packages": SID_PACKAGES,
            "kernel": version,
            "builder": BUILDER_VERSION,
        }
    )
    path = images_dir() / key
    # Several runs (or CI and a developer) may want the same image at once:
    # one builds, the others wait for it.
    with open(images_dir() / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        image = _load(path)
        if image:
            return image
        return build(path, apt.mirror, version)


def _run(cmd: list[str], log, **kw) -> None:
    """Run CMD, stream its output into LOG and a one-line progress display."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    last = ""
    for line in proc.stdout:
        log.write(line)
        if line.startswith(("I: ", "Setting up", "Unpacking")):
            last = line.strip()[:100]
            if sys.stderr.isatty():
                print(f"\r[image] {last:<100}", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty() and last:
        print(file=sys.stderr)
    if proc.wait() != 0:
        raise LabError(f"guest image build failed: {' '.join(cmd[:3])} ... (see {log.name})")


def _subordinate_ids_missing() -> str | None:
    """mmdebstrap's unshare mode maps the image's users onto the caller's subordinate
    ids: the one line an administrator runs when there are none, or None."""
    if os.geteuid() == 0:
        return None
    user = pwd.getpwuid(os.getuid()).pw_name
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            entries = Path(path).read_text().splitlines()
        except FileNotFoundError:
            entries = []
        if not any(e.split(":")[0] in (user, str(os.getuid())) for e in entries):
            return f"as root run: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"
    if not shutil.which("newuidmap"):
        return "as root run: apt-get install uidmap"
    return None


def _mmdebstrap(tarball: Path, mirror: str, log) -> None:
    """The root filesystem as a tarball: trixie minbase, the kernel from backports, the
    SID_PACKAGES from sid pinned low so nothing else moves. As root mmdebstrap works in a
    chroot; as a normal user in a user namespace on the caller's subordinate ids (its
    unshare mode): the same tarball either way."""
    pin = "Package: *\\nPin: release n=sid\\nPin-Priority: 100\\n"
    include = PACKAGES + [f"{p}/{BACKPORTS}" for p in KERNEL_PACKAGES] + [f"{p}/sid" for p in SID_PACKAGES]
    _run(
        [
            "mmdebstrap",
            "--variant=minbase",
            "--mode=auto",
            "--format=tar",
            f"--include={','.join(include)}",
            "--setup-hook",
            f'mkdir -p "$1/etc/apt/preferences.d" && printf "{pin}" > "$1/etc/apt/preferences.d/sid"',
            # dropbear's host key, made once here rather than by `dropbear -R` in every
            # boot's first connection (TCG time before SSH is ready)
            "--customize-hook",
            'mkdir -p "$1/etc/dropbear" && '
            'chroot "$1" dropbearkey -t ed25519 -f /etc/dropbear/dropbear_ed25519_host_key',
            SUITE,
            str(tarball),
            f"deb {mirror} {SUITE} main",
            f"deb {mirror} {BACKPORTS} main",
            # Mirror snapshots keep serving sid after its short Valid-Until.
            f"deb [check-valid-until=no] {mirror} sid main",
        ],
        log,
        env=dict(os.environ, LC_ALL="C.UTF-8"),
    )


def _extract(tarball: Path, rootfs: Path, log) -> None:
    """Unpack as the caller: as root with the image's owners, as a user all owned by the
    user (the guest's root reads them alike over 9p). Device nodes are left out (the
    guest mounts devtmpfs on /dev; a user cannot make them), so is the initrd (the lab
    boots its own initramfs), and everything is made readable by its owner, the user
    QEMU's 9p server runs as."""
    rootfs.mkdir()
    _run(
        [
            "tar",
            "-x",
            "-f",
            str(tarball),
            "-C",
            str(rootfs),
            "--exclude=./dev/*",
            "--exclude=./boot/initrd.img*",
            "--exclude=./initrd.img*",
            "--mode=u+rwX",
        ],
        log,
    )


def build(path: Path, mirror: str, kernel_package_version: str) -> GuestImage:
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("ssh-keygen", "openssh-client"), ("tar", "tar")):
        if not shutil.which(tool):
            raise LabError(f"{tool} is not installed; as root run: apt-get install {package}")
    missing = _subordinate_ids_missing()
    if missing:
        user = pwd.getpwuid(os.getuid()).pw_name
        raise LabError(f"building the guest image as {user} needs subordinate ids; {missing}")
    start = time.monotonic()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # an interrupted build
    tmp.mkdir(parents=True)
    rootfs = tmp / "rootfs"
    _log(f"building {path.name}: {SUITE} + {BACKPORTS} kernel {kernel_package_version} from {mirror}")
    with open(tmp / "build.log", "w") as log:
        _mmdebstrap(tmp / "rootfs.tar", mirror, log)
        _log("unpacking")
        _extract(tmp / "rootfs.tar", rootfs, log)
    (tmp / "rootfs.tar").unlink()
    # What the guest's apt would use; sid was only for SID_PACKAGES.
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {mirror} {SUITE} main\ndeb {mirror} {BACKPORTS} main\n"
    )
    (rootfs / "etc/apt/preferences.d/sid").unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "zcrx-lab", "-f", str(tmp / "id_ed25519")],
        check=True,
    )
    ssh = rootfs / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(tmp / "id_ed25519.pub", ssh / "authorized_keys")
    (rootfs / "etc/hostname").write_text("zcrx-guest\n")
    versions = sorted(p.name[len("vmlinuz-") :] for p in (rootfs / "boot").glob("vmlinuz-*"))
    if not versions:
        raise LabError(f"guest image build installed no kernel (see {tmp / 'build.log'})")
    meta = {
        "kernel_version": versions[-1],
        "package_version": kernel_package_version,
        "mirror": mirror,
        "built": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (tmp / "image.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    _log(f"built in {time.monotonic() - start:.0f} s: kernel {versions[-1]}")
    return _load(path)


def build_in_image(
    image: GuestImage, files: dict[str, bytes], command: str, product: str, what: str, log: Path
) -> bytes:
    """Build with the image's own toolchain; return the bytes of PRODUCT.

    FILES (path -> content, relative to /) are laid into a throwaway overlay
    over the read-only image, COMMAND runs chrooted there with /proc mounted
    (objtool needs it) and the host's /dev/null, in a user, mount and PID
    namespace of its own where the caller is root (no root needed on the
    host), so nothing stays mounted
    whatever happens. A failure names WHAT and the first compiler error; the
    whole output is kept in LOG.
    """
    with tempfile.TemporaryDirectory(prefix="zcrx-lab-build-") as tmp:
        upper, work, merged = (Path(tmp) / d for d in ("upper", "work", "merged"))
        for d in (upper, work, merged):
            d.mkdir()
        for name, data in files.items():
            (upper / name).parent.mkdir(parents=True, exist_ok=True)
            (upper / name).write_bytes(data)
        # the image has no device nodes: without this, a build's `>/dev/null` makes a
        # file there that the next reader takes for content (autoconf's config.status did)
        (upper / "dev").mkdir(exist_ok=True)
        (upper / "dev/null").touch()
        script = (
            f"mount -t overlay overlay -o lowerdir={image.root},upperdir={upper},workdir={work} {merged}"
            f" && mount -t proc proc {merged}/proc && mount --bind /dev/null {merged}/dev/null"
            f" && exec chroot {merged} /bin/sh -ec {shlex.quote(command)}"
        )
        env = dict(os.environ, LC_ALL="C.UTF-8", PATH="/usr/sbin:/usr/bin:/sbin:/bin")
        proc = subprocess.run(
            [*BUILD_NAMESPACES, "sh", "-ec", script],
            capture_output=True,
            text=True,
            env=env,
        )
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{command}\n{proc.stdout}{proc.stderr}")
        built = upper / product
        if proc.returncode != 0 or not built.exists():
            error = first_error(proc.stdout + proc.stderr)
            raise LabError(f"{what} does not build: {error or 'see ' + str(log)}")
        return built.read_bytes()
