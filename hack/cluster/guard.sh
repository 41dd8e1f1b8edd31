#!/usr/bin/env bash
# Runs a command and ends it when the process that started it goes away, so a killed test run or
# demo never leaves an etcd or kube-apiserver behind.   guard.sh <parent-pid> <command> [args...]
parent="$1"
shift
"$@" &
child=$!
stop_child() {
  kill -TERM "$child" 2>/dev/null
  for _ in $(seq 40); do kill -0 "$child" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$child" 2>/dev/null
  wait "$child"
}
trap 'stop_child; exit 0' TERM INT HUP
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
if kill -0 "$child" 2>/dev/null; then stop_child; exit 0; fi
wait "$child"
