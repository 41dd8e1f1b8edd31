#!/usr/bin/env bash
# Installs the Debian packages a real node needs when any is missing: runc, the CNI plugins,
# iptables and conntrack for kube-proxy, podman to build images (with runc: Debian's default crun
# cannot run containers here), busybox-static, awscli and skopeo for the images' contents,
# docker-registry for the AWS peer's ECR registry. apt-get update
# runs once, only when something is missing. Exits non-zero, naming what is missing, when any of
# them cannot be installed: the real cluster and the controller image need every one.
set -euo pipefail

# package:file-it-provides
wanted=(
  runc:/usr/sbin/runc
  containernetworking-plugins:/usr/lib/cni/bridge
  iptables:/usr/sbin/iptables
  conntrack:/usr/sbin/conntrack
  podman:/usr/bin/podman
  busybox-static:/bin/busybox
  awscli:/usr/bin/aws
  tini:/usr/bin/tini-static
  git:/usr/bin/git
  skopeo:/usr/bin/skopeo
  docker-registry:/usr/bin/docker-registry
)
missing=()
for entry in "${wanted[@]}"; do
  [[ -e "${entry#*:}" ]] || missing+=("${entry%%:*}")
done
((${#missing[@]} == 0)) && exit 0

sudo=""
((EUID == 0)) || sudo="sudo"
echo "installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
fail() {
  echo "ensure-packages: could not install ${missing[*]} with apt-get (see above): $1" >&2
  exit 1
}
$sudo apt-get update -qq >&2 || fail "apt-get update failed"
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || fail "apt-get install failed"
for entry in "${wanted[@]}"; do
  [[ -e "${entry#*:}" ]] || fail "${entry#*:} is still missing"
done
