#!/usr/bin/env bash
# Prometheus and promtool from Debian's `prometheus` package, for the monitoring tests. The package
# is downloaded and unpacked under the cache folder, never installed: installing it would start a
# Prometheus service on the machine. Cached by the package's version. Prints the folder holding
# `prometheus` and `promtool`.
set -euo pipefail

cache="${SCOPED_STEP_CACHE:-$HOME/.cache/scoped-step}"
candidate() { apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ { print $2 }'; }

version="$(candidate)"
if [[ -z "$version" || "$version" == "(none)" ]]; then
  sudo=""
  ((EUID == 0)) || sudo="sudo"
  $sudo apt-get update -qq >&2 || true
  version="$(candidate)"
fi
if [[ -z "$version" || "$version" == "(none)" ]]; then
  echo "prometheus.sh: Debian's prometheus package is not available from apt (apt-cache policy prometheus)" >&2
  exit 1
fi

out="$cache/prometheus-${version//[^A-Za-z0-9.+-]/_}"
if [[ ! -x "$out/promtool" || ! -x "$out/prometheus" ]]; then
  # One unpacking at a time: a second caller waits, then finds it done.
  mkdir -p "$cache"
  exec 9>"$out.lock"
  flock 9
fi
if [[ ! -x "$out/promtool" || ! -x "$out/prometheus" ]]; then
  echo "unpacking Debian's prometheus $version into $out" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # apt downloads as the unprivileged _apt user where it can: give it a folder it may write.
  chmod 777 "$work"
  (cd "$work" && apt-get download -qq "prometheus=$version" >&2)
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  mkdir -p "$out.tmp"
  cp "$work/root/usr/bin/prometheus" "$work/root/usr/bin/promtool" "$out.tmp/"
  rm -rf "$out"
  mv "$out.tmp" "$out"
fi
"$out/promtool" --version >/dev/null
echo "$out"
