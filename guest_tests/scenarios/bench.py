"""Guest side of the receive benchmark (host/bench.py): zc0 on a veth whose
peer sits in netns `bench`; one sender process there, one receiver here."""

import subprocess

from guest_tests.scenarios.traffic import plain_receive, zc_receive

LOCAL, REMOTE = "198.51.100.1", "198.51.100.2"


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True)


def setup(zcnic_ko: str, queues: int = 4) -> None:
    sh(f"lsmod | grep -q '^zcnic ' || insmod {zcnic_ko}")
    sh("ip netns add bench && ip link add bvA type veth peer name bvB netns bench")
    sh(
        f"ip link set bvA up && ip link add zb0 link bvA type zcnic && "
        f"ethtool -L zb0 combined {queues} && ethtool -G zb0 tcp-data-split on && "
        f"ip addr add {LOCAL}/24 dev zb0 && ip link set zb0 up"
    )
    sh(
        f"ip -n bench addr add {REMOTE}/24 dev bvB && ip -n bench link set bvB up "
        "&& ip -n bench link set lo up"
    )


def _sender(port: int, size: int) -> subprocess.Popen:
    code = (
        "import socket,sys,time\n"
        f"buf=bytes(range(256))*256\nleft={size}\n"
        "for i in range(300):\n"
        "    try:\n"
        f"        s=socket.create_connection(('{LOCAL}',{port})); break\n"
        "    except OSError: time.sleep(0.05)\n"
        "while left>0:\n"
        "    n=s.send(buf[:min(left,len(buf))]); left-=n\n"
        "s.close()\n"
    )
    return subprocess.Popen(["ip", "netns", "exec", "bench", "python3", "-c", code])


def run(mode: str, port: int, size: int, queue: int = 1) -> dict:
    """One transfer of SIZE bytes to PORT, received by zcrx or plain recv()."""
    out = subprocess.run(
        f"ethtool -N zb0 flow-type tcp4 dst-port {port} action {queue}",
        shell=True,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rule = out.split("ID")[-1].strip()
    sender = _sender(port, size)
    try:
        if mode == "zcrx":
            result = zc_receive("zb0", queue, port, timeout=300)
        else:
            result = plain_receive(port, timeout=300)
    finally:
        sender.wait(timeout=300)
        sh(f"ethtool -N zb0 delete {rule}")
    result["mode"] = mode
    return result
