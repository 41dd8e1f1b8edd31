# scoped-step: the two commands are `make demo` and `make test`. Everything else they need
# (Node 24, npm packages, Debian packages for the node, the Go-built etcd, Kubernetes, containerd and
# Tekton) is installed on first use.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
NODE_DIR := $(shell hack/ensure-node.sh)
export PATH := $(NODE_DIR):$(PATH)
NODE := $(NODE_DIR)/node

.PHONY: all demo test generate release check lint typecheck format cluster-up cluster-down cluster-status tools clean

all: check

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## tools: install the node's Debian packages; build (or take from the cache) etcd, the Kubernetes
## commands, containerd, the programs of the node's images (Tekton's among them), vela-cue
## (KubeVela's CUE rendering), KubeVela's controller and local-kms (an AWS KMS server); unpack Prometheus and promtool; build helm,
## which renders and lints the chart; download the modules whose CRDs the clusters install
tools:
	hack/cluster/ensure-packages.sh
	hack/build-tool.sh etcd >/dev/null
	hack/build-tool.sh kube-apiserver >/dev/null
	hack/build-tool.sh kubernetes >/dev/null
	hack/build-tool.sh containerd >/dev/null
	hack/build-tool.sh tekton-images >/dev/null
	hack/build-tool.sh node-images >/dev/null
	hack/build-tool.sh helm >/dev/null
	hack/build-tool.sh vela-cue >/dev/null
	hack/build-tool.sh vela-core >/dev/null
	hack/build-tool.sh local-kms >/dev/null
	hack/prometheus.sh >/dev/null
	$(NODE) hack/cluster/upstream.ts download >/dev/null

typecheck: node_modules/.installed
	npx tsc --noEmit -p .

lint: node_modules/.installed
	npx eslint .
	npx prettier --check .

format: node_modules/.installed
	npx prettier --write .

## generate: files derived from code (the ScopedStep and ScopedStepPolicy CRDs from their JSON Schemas, and
## the validators ajv compiles from those schemas and the signing key set's)
generate: node_modules/.installed
	$(NODE) tasks/scoped-step/crd.ts > catalog/crds/scopedstep.yaml
	$(NODE) tasks/scoped-step/policy-crd.ts > catalog/crds/scopedsteppolicy.yaml
	$(NODE) hack/validators.ts

## release: catalog files derived from the sources (release.yaml, release-monitoring.yaml, the Helm chart,
## the scoped-identity trait)
release: generate
	$(NODE) hack/release.ts

check: typecheck lint

## test: static checks, then every test file against one shared local control plane
test: node_modules/.installed tools check
	$(NODE) test/run.ts

demo: node_modules/.installed tools
	$(NODE) hack/demo.ts

## cluster-up: a cluster with a real node inside namespaces of its own; cluster-down leaves nothing
cluster-up: node_modules/.installed tools
	$(NODE) hack/cluster/cli.ts up

cluster-down: node_modules/.installed
	$(NODE) hack/cluster/cli.ts down

cluster-status: node_modules/.installed
	$(NODE) hack/cluster/cli.ts status

clean:
	rm -rf node_modules .state
