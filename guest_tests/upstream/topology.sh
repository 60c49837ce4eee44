#!/bin/sh
# The two-host topology upstream's drivers/net selftests expect (NetDrvEpEnv,
# REMOTE_TYPE=netns), built in the guest around zcnic:
#
#   init netns: zc0 (zcnic, LOCAL_V4/LOCAL_V6) stacked on vzcu0 ──veth──
#   netns zcrx-upstream: vzcu1 (REMOTE_V4/REMOTE_V6)
#
# Usage: topology.sh up ZCNIC_KO | down. Idempotent: "up" tears down first.
set -e
NS=zcrx-upstream
LOCAL_V4=192.0.2.1
REMOTE_V4=192.0.2.2
LOCAL_V6=2001:db8:7a::1
REMOTE_V6=2001:db8:7a::2

down() {
	ip netns del "$NS" 2>/dev/null || true
	ip link del vzcu0 2>/dev/null || true # takes zc0 with it
	ip link del zc0 2>/dev/null || true
}

case "$1" in
down)
	down
	;;
up)
	[ -n "$2" ] || { echo "usage: $0 up ZCNIC_KO" >&2; exit 2; }
	down
	# veth may be built in (a from-source kernel has no modules.builtin for modprobe)
	modprobe veth 2>/dev/null || true
	grep -q '^zcnic ' /proc/modules || insmod "$2"
	ip netns add "$NS"
	ip link add vzcu0 type veth peer name vzcu1 netns "$NS"
	# vzcu0 is a bare port under zc0: no addresses of its own.
	sysctl -qw net.ipv6.conf.vzcu0.disable_ipv6=1
	ip link set vzcu0 up
	ip link add zc0 link vzcu0 type zcnic
	ip addr add "$LOCAL_V4/24" dev zc0
	ip -6 addr add "$LOCAL_V6/64" dev zc0 nodad
	ip link set zc0 up
	ip -n "$NS" link set lo up
	ip -n "$NS" addr add "$REMOTE_V4/24" dev vzcu1
	ip -n "$NS" -6 addr add "$REMOTE_V6/64" dev vzcu1 nodad
	ip -n "$NS" link set vzcu1 up
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		if ping -6 -c1 -W2 "$REMOTE_V6" >/dev/null 2>&1 &&
			ping -4 -c1 -W2 "$REMOTE_V4" >/dev/null 2>&1; then
			echo "NETIF=zc0 LOCAL_V4=$LOCAL_V4 REMOTE_V4=$REMOTE_V4 LOCAL_V6=$LOCAL_V6" \
				"REMOTE_V6=$REMOTE_V6 REMOTE_TYPE=netns REMOTE_ARGS=$NS"
			exit 0
		fi
		sleep 1
	done
	echo "no connectivity from zc0 to the netns peer" >&2
	ip -d addr show zc0 >&2 || true
	ip -n "$NS" -d addr show vzcu1 >&2 || true
	exit 1
	;;
*)
	echo "usage: $0 up ZCNIC_KO | down" >&2
	exit 2
	;;
esac
