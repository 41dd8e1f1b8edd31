// Upstream Go modules the local control plane takes its CRDs from, at pinned versions. The files
// are read from the Go module cache (filled through the module proxy), never copied into this repo.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import path from "node:path";
import { fileURLToPath } from "node:url";

const run = promisify(execFile);
export const hackDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface UpstreamModule {
  module: string;
  version: string;
  crdFiles: string[];
}

export const tekton: UpstreamModule = {
  module: "github.com/tektoncd/pipeline",
  version: "v1.15.1",
  crdFiles: [
    "config/300-crds/300-customrun.yaml",
    "config/300-crds/300-pipeline.yaml",
    "config/300-crds/300-pipelinerun.yaml",
    "config/300-crds/300-task.yaml",
    "config/300-crds/300-taskrun.yaml",
    "config/300-crds/300-stepaction.yaml",
    "config/300-crds/300-resolutionrequest.yaml",
    "config/300-crds/300-verificationpolicy.yaml",
  ],
};

export const kubevela: UpstreamModule = {
  module: "github.com/oam-dev/kubevela",
  version: "v1.10.6",
  crdFiles: [
    "charts/vela-core/crds/core.oam.dev_applications.yaml",
    "charts/vela-core/crds/core.oam.dev_traitdefinitions.yaml",
  ],
};

/** The Prometheus Operator's CRDs, for the monitoring objects of the release. */
export const prometheusOperator: UpstreamModule = {
  module: "github.com/prometheus-operator/prometheus-operator",
  version: "v0.85.0",
  crdFiles: [
    "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
  ],
};

export const upstreamModules = [tekton, kubevela, prometheusOperator];

export const goEnv = { ...process.env, GOTOOLCHAIN: "local", GOWORK: "off", GOFLAGS: "-mod=mod" };

/** Downloads (or finds in the module cache) a module and returns its source directory. */
export async function moduleDir(mod: UpstreamModule): Promise<string> {
  const { stdout } = await run("go", ["mod", "download", "-json", `${mod.module}@${mod.version}`], {
    env: goEnv,
    cwd: hackDir,
    maxBuffer: 1 << 20,
  });
  const info = JSON.parse(stdout) as { Dir?: string; Error?: string };
  if (!info.Dir) throw new Error(`go mod download ${mod.module}@${mod.version}: ${info.Error ?? "no Dir"}`);
  return info.Dir;
}

export type Tool =
  | "etcd"
  | "kube-apiserver"
  | "kubernetes"
  | "tekton-controller"
  | "containerd"
  | "tekton-images"
  | "node-images"
  | "helm"
  | "vela-cue"
  | "vela-core"
  | "local-kms";

/** Builds (or takes from the cache) Go programs wrapped under hack/ (see build-tool.sh). */
export async function buildTool(name: Tool): Promise<string> {
  const child = run(path.join(hackDir, "build-tool.sh"), [name], { env: goEnv, maxBuffer: 1 << 20 });
  child.child.stderr?.pipe(process.stderr);
  const { stdout } = await child;
  return stdout.trim();
}

// `node hack/cluster/upstream.ts download`: fetches every upstream module through the module proxy,
// before anything enters the namespaces that have no way out (`make tools`).
if (import.meta.main && process.argv[2] === "download") {
  for (const mod of upstreamModules) console.log(await moduleDir(mod));
}
