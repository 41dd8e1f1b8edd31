#!/usr/bin/env bash
# Builds one Go binary from its wrapper module under hack/<name>/ and caches it outside the repo.
# The cache key covers the wrapper's go.mod, go.sum and the Go toolchain version, so the binary is
# rebuilt only when one of them changes. Prints the path of the cached binary.
#
#   hack/build-tool.sh kube-apiserver|etcd|tekton-controller
set -euo pipefail

name="$1"
here="$(cd "$(dirname "$0")" && pwd)"
module_dir="$here/$name"
cache="${SCOPED_STEP_CACHE:-$HOME/.cache/scoped-step}"
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod

[[ -f "$module_dir/go.mod" ]] || { echo "no wrapper module at $module_dir" >&2; exit 2; }

# The version of the main module this wrapper builds, from its single direct requirement.
require_version() { awk -v m="$1" '$1 == m || $2 == m { for (i = 1; i <= NF; i++) if ($i ~ /^v[0-9]/) { print $i; exit } }' "$module_dir/go.mod"; }

case "$name" in
  kube-apiserver)
    pkg=k8s.io/kubernetes/cmd/kube-apiserver
    version="$(require_version k8s.io/kubernetes)"
    major="${version#v}"; major="${major%%.*}"
    minor="$(echo "$version" | cut -d. -f2)"
    ldflags="-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
    ;;
  etcd)
    pkg=go.etcd.io/etcd/server/v3
    version="$(require_version go.etcd.io/etcd/server/v3)"
    ldflags="-X go.etcd.io/etcd/api/v3/version.GitSHA=module-$version"
    ;;
  tekton-controller)
    pkg=github.com/tektoncd/pipeline/cmd/controller
    version="$(require_version github.com/tektoncd/pipeline)"
    ldflags=""
    ;;
  *) echo "unknown tool $name" >&2; exit 2 ;;
esac

key="$(cat "$module_dir/go.mod" "$module_dir/go.sum" <(go version) | sha256sum | cut -c1-16)"
out="$cache/bin/$name-$version-$key"
if [[ ! -x "$out" ]]; then
  mkdir -p "$cache/bin"
  echo "building $name $version (cached as $out; first build takes several minutes)" >&2
  start=$SECONDS
  (cd "$module_dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo "built $name in $((SECONDS - start))s" >&2
fi
echo "$out"
