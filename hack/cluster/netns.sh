#!/usr/bin/env bash
# Runs a command inside network, mount and PID namespaces of its own (see in-netns.sh), so every
# process of a local cluster, every mount, iptables rule and file it makes lives and dies with them:
# when the command ends, or this script is stopped, or the process that started it dies, the
# namespace's first process is killed, the kernel kills the rest and drops the mounts. What does
# not live in a namespace is the kubelet's cgroup tree: it goes under a parent of our own in each
# cgroup v1 hierarchy, removed here afterwards (and, for a run killed outright, by the next run).
#
#   hack/cluster/netns.sh [--watch <pid>] <command> [args...]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
watch=""
if [[ "${1:-}" == "--watch" ]]; then watch="$2"; shift 2; fi

cgroup_prefix="scoped-step-node-"
# Each tree's owner holds a lock file while it lives. A lock, not a pid: a run inside another run's
# PID namespace sees other pids than the machine does, and must leave the outer run's tree alone.
locks="${SCOPED_STEP_CACHE:-$HOME/.cache/scoped-step}/cgroup-locks"
mkdir -p "$locks"
# A task in a frozen cgroup v1 freezer cannot act on SIGKILL: a runc or kubelet killed between
# freezing a container's cgroup and thawing it leaves that container's processes stuck there, holding
# the cluster's namespaces. So thaw the whole tree, then kill whatever is still in it.
release_cgroups() { # <name>
  local state pid
  if [[ -d "/sys/fs/cgroup/freezer/$1" ]]; then
    while read -r state; do echo THAWED >"$state" 2>/dev/null; done < <(find "/sys/fs/cgroup/freezer/$1" -name freezer.state)
  fi
  for h in /sys/fs/cgroup/*/; do
    [[ -d "$h$1" ]] || continue
    # A task outside this PID namespace reads as 0: never signal that (or 1).
    while read -r pid; do ((pid > 1)) && kill -KILL "$pid" 2>/dev/null; done < <(find "$h$1" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done
}
remove_cgroups() { # <name>: depth first, retrying while the killed tasks leave
  release_cgroups "$1"
  for _ in $(seq 40); do
    local left=0
    for h in /sys/fs/cgroup/*/; do
      [[ -d "$h$1" ]] || continue
      find "$h$1" -depth -type d -exec rmdir {} + 2>/dev/null || left=1
    done
    ((left == 0)) && return 0
    sleep 0.25
  done
  echo "netns.sh: could not remove cgroup $1" >&2
}
# Trees left by runs that were killed together with this script: no one holds their lock.
for dir in /sys/fs/cgroup/*/"$cgroup_prefix"*; do
  [[ -d "$dir" ]] || continue
  name="${dir##*/}"
  if flock --nonblock "$locks/$name" true 2>/dev/null; then
    remove_cgroups "$name"
    rm -f "$locks/$name"
  fi
done

# The pid names it for people; the random part keeps runs in different PID namespaces apart.
cgroup="$cgroup_prefix$$-$SRANDOM"
exec {lock}>"$locks/$cgroup"
flock "$lock"
for h in /sys/fs/cgroup/*/; do
  [[ "$h" == */unified/ ]] || mkdir -p "$h$cgroup"
done
export SCOPED_STEP_CGROUP_ROOT="/$cgroup"

# If this script is killed outright, unshare is killed with it (pdeathsig), and its first process
# with unshare (--kill-child), and every process of the namespace with that one.
setpriv --pdeathsig KILL -- unshare --net --mount --pid --kill-child --propagation private -- "$here/in-netns.sh" "$@" &
child=$!
# unshare ignores SIGTERM while it waits for its child: signal the namespace's first process, which
# passes it on to the command and then exits, and unshare with it.
# Just after the start it may not have forked yet: wait for it a little.
stop() {
  local first=""
  for _ in $(seq 50); do
    first="$(cat "/proc/$child/task/$child/children" 2>/dev/null)"
    [[ -n "$first" ]] && break
    sleep 0.1
  done
  # shellcheck disable=SC2086 # $first: the pid, with the trailing space the kernel adds
  kill -TERM ${first:-$child} 2>/dev/null
}
trap stop TERM INT HUP
if [[ -n "$watch" ]]; then
  while kill -0 "$watch" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
  kill -0 "$child" 2>/dev/null && stop
fi
wait "$child"
rc=$?
# `wait` returns early when a trapped signal arrives: wait again until unshare is gone.
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
remove_cgroups "$cgroup"
rm -f "$locks/$cgroup"
exit "$rc"
