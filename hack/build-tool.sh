#!/usr/bin/env bash
# Builds Go programs from a wrapper module under hack/ and caches them outside the repo. The cache
# key covers the wrapper's go.mod, go.sum, its own Go files and the Go toolchain version, so they
# are rebuilt only when one of those changes. Prints the path of the cached binary, or of the
# directory holding them when there are several: `kubernetes` is one binary for kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy and kubelet (hack/kubernetes/main.go);
# `containerd` holds containerd, ctr and containerd-shim-runc-v2; `tekton-images` and
# `node-images` hold the static programs the local node's images are made of. `helm` renders and
# lints the chart under catalog/helm. `vela-cue` renders a KubeVela component and its traits as
# vela-core does (hack/vela-cue/main.go); `vela-core` is KubeVela's controller itself. `local-kms`
# is an AWS KMS server the issuer's KMS key store is tested against.
#
# `kube-apiserver` alone, from the same module, is what the control plane of every test run uses.
#
#   hack/build-tool.sh kube-apiserver|kubernetes|etcd|tekton-controller|containerd|tekton-images|node-images|helm|vela-cue|vela-core|local-kms
set -euo pipefail

name="$1"
here="$(cd "$(dirname "$0")" && pwd)"
module_dir="$here/$name"
[[ "$name" == tekton-images ]] && module_dir="$here/tekton-controller"
[[ "$name" == kube-apiserver ]] && module_dir="$here/kubernetes"
cache="${SCOPED_STEP_CACHE:-$HOME/.cache/scoped-step}"
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod

[[ -f "$module_dir/go.mod" ]] || { echo "no wrapper module at $module_dir" >&2; exit 2; }

# The version of the main module this wrapper builds, from its single direct requirement.
require_version() { awk -v m="$1" '$1 == m || $2 == m { for (i = 1; i <= NF; i++) if ($i ~ /^v[0-9]/) { print $i; exit } }' "$module_dir/go.mod"; }

case "$name" in
  kubernetes|kube-apiserver)
    pkg=.
    [[ "$name" == kube-apiserver ]] && pkg=k8s.io/kubernetes/cmd/kube-apiserver
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
  tekton-images)
    # The static programs of Tekton's images, as its release builds them (ko): those a TaskRun pod
    # runs, and those of its Deployments (hack/cluster/tekton-install.ts).
    tekton="github.com/tektoncd/pipeline/cmd"
    pkg="$tekton/entrypoint $tekton/nop $tekton/workingdirinit $tekton/sidecarlogresults"
    pkg="$pkg $tekton/controller $tekton/webhook $tekton/events $tekton/resolvers"
    version="$(require_version github.com/tektoncd/pipeline)"
    ldflags=""
    export CGO_ENABLED=0
    ;;
  node-images)
    pkg="./pause ./report"
    version=v1
    ldflags=""
    export CGO_ENABLED=0
    ;;
  vela-core)
    pkg=github.com/oam-dev/kubevela/cmd/core
    version="$(require_version github.com/oam-dev/kubevela)"
    ldflags="-X github.com/oam-dev/kubevela/version.VelaVersion=$version"
    export CGO_ENABLED=0
    ;;
  vela-cue)
    pkg=.
    version="cue-$(require_version cuelang.org/go)"
    ldflags=""
    export CGO_ENABLED=0
    ;;
  containerd)
    # Three commands into one directory. No btrfs snapshotter (it needs C headers) and no cgo.
    pkg="github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
    version="$(require_version github.com/containerd/containerd/v2)"
    ldflags="-X github.com/containerd/containerd/v2/version.Version=$version"
    tags=no_btrfs
    export CGO_ENABLED=0
    ;;
  helm)
    # As helm's Makefile builds it: its version, and the Kubernetes version `helm lint` and
    # `helm template` assume (one more than client-go's major, client-go's minor).
    pkg=helm.sh/helm/v3/cmd/helm
    version="$(require_version helm.sh/helm/v3)"
    client_go="$(require_version k8s.io/client-go)"
    client_go="${client_go#v}"
    k8s_major=$((${client_go%%.*} + 1))
    k8s_minor="$(echo "$client_go" | cut -d. -f2)"
    ldflags="-X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      ldflags="$ldflags -X $p.k8sVersionMajor=$k8s_major -X $p.k8sVersionMinor=$k8s_minor"
    done
    export CGO_ENABLED=0
    ;;
  local-kms)
    # An AWS KMS server (Sign, GetPublicKey, aliases) the KMS key store is tested against.
    pkg=github.com/nsmithuk/local-kms
    version="$(require_version github.com/nsmithuk/local-kms)"
    ldflags=""
    export CGO_ENABLED=0
    ;;
  *) echo "unknown tool $name" >&2; exit 2 ;;
esac

key="$(cd "$module_dir" && find . -name '*.go' -o -name go.mod -o -name go.sum | sort | xargs cat | cat - <(go version) <(echo "$name") | sha256sum | cut -c1-16)"
out="$cache/bin/$name-$version-$key"
# A directory of programs is complete when it holds one for every package asked for.
complete() {
  [[ -x "$out" ]] || return 1
  [[ "$pkg" == *" "* ]] || return 0
  local p
  for p in $pkg; do [[ -x "$out/${p##*/}" ]] || return 1; done
}
if ! complete; then
  mkdir -p "$cache/bin"
  # One build of a tool at a time: a second caller (a test run started beside `make tools`, say)
  # waits for it and then takes what it built.
  exec 9>"$out.lock"
  flock 9
fi
if ! complete; then
  echo "building $name $version (cached as $out; first build takes several minutes)" >&2
  start=$SECONDS
  tmp="$(mktemp -d "$out.tmp.XXXXXX")"
  chmod 755 "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  # shellcheck disable=SC2086 # $pkg is a list of packages
  [[ "$pkg" == *" "* ]] && target="$tmp/" || target="$tmp/$name"
  (cd "$module_dir" && go build -trimpath -tags "${tags:-}" -ldflags "-s -w $ldflags" -o "$target" $pkg)
  rm -rf "$out"
  if [[ "$pkg" == *" "* ]]; then mv "$tmp" "$out"; else mv "$target" "$out"; fi
  echo "built $name in $((SECONDS - start))s" >&2
fi
echo "$out"
