#!/usr/bin/env bash
# The first process of the namespaces netns.sh makes: fresh /proc, /run, /tmp and /var/log (tmpfs,
# gone with the namespace), loopback up, the node's address on an interface of its own, then the
# command. The kernel here has no dummy interfaces, so the node address sits on a bridge without
# ports, which carries local traffic the same way.
set -euo pipefail
node_ip="${SCOPED_STEP_NODE_IP:-10.200.0.2}"
service_cidr="${SCOPED_STEP_SERVICE_CIDR:-10.0.0.0/24}"

mount -t proc proc /proc
# The working directory (a checkout under /tmp, say) stays reachable at its path: held open across
# the fresh mounts, then bound back where it was.
exec {cwd}<.
here="$PWD"
for dir in /run /tmp /var/log; do mount -t tmpfs -o mode=0755 tmpfs "$dir"; done
chmod 1777 /tmp
case "$here/" in
/run/* | /tmp/* | /var/log/*)
  mkdir -p "$here"
  mount --no-canonicalize --bind "/proc/self/fd/$cwd" "$here"
  cd "$here"
  ;;
esac
exec {cwd}<&-
mkdir -p /run/lock
ln -s /dev/shm /run/shm

# The kubelet sets these kernel-wide sysctls when they differ. Inside this mount namespace each
# reads as the value it wants, so it has nothing to change on the host.
while read -r key value; do
  file="/proc/sys/${key//.//}"
  [[ -e "$file" && "$(cat "$file")" != "$value" ]] || continue
  mkdir -p /run/sysctl
  echo "$value" >"/run/sysctl/$key"
  mount --bind "/run/sysctl/$key" "$file"
done <<'SYSCTLS'
vm.overcommit_memory 1
vm.panic_on_oom 0
kernel.panic 10
kernel.panic_on_oops 1
kernel.keys.root_maxkeys 1000000
kernel.keys.root_maxbytes 25000000
SYSCTLS

ip link set lo up
ip link add node0 type bridge
ip addr add "$node_ip/32" dev node0
ip link set node0 up
# Service addresses must be routable for kube-proxy's rules to see the packets.
ip route add "$service_cidr" dev node0 src "$node_ip"

export SCOPED_STEP_IN_NETNS=1 SCOPED_STEP_NODE_IP="$node_ip" SCOPED_STEP_SERVICE_CIDR="$service_cidr"
# Not exec: as the namespace's first process, bash reaps the orphans that are reparented to it.
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
exit "${rc:-0}"
