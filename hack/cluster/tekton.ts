// Tekton Pipelines' own controller (built from the pinned module by hack/tekton-controller/go.mod)
// running against a local control plane: its SYSTEM_NAMESPACE with the ConfigMaps of the module's
// config/ folder, the six image flags, no webhook and no leader election. Ready once it has given a
// PipelineRun a status. Opt-in: only what needs PipelineRuns driven for real pays for it.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import {
  CoreV1Api,
  CustomObjectsApi,
  loadAllYaml,
  type KubeConfig,
  type V1ConfigMap,
} from "@kubernetes/client-node";
import { buildTool, moduleDir, tekton } from "./upstream.ts";
import { freePorts, startSupervised, stopSupervised, waitFor, type Supervised } from "./processes.ts";

/** The image flags take any string: the test kubelet knows these names (simulators/kubelet/tekton.ts). */
export const tektonImages: Record<keyof TektonImages, string> = {
  entrypoint: "scoped-step.test/tekton/entrypoint",
  nop: "scoped-step.test/tekton/nop",
  sidecarlogresults: "scoped-step.test/tekton/sidecarlogresults",
  workingdirinit: "scoped-step.test/tekton/workingdirinit",
  shell: "scoped-step.test/tekton/shell",
  shellWin: "scoped-step.test/tekton/shell-win",
} as const;

export interface TektonImages {
  entrypoint: string;
  nop: string;
  sidecarlogresults: string;
  workingdirinit: string;
  shell: string;
  shellWin: string;
}

export interface TektonOptions {
  /** The images its pods use; default the names the test kubelet knows. */
  images?: Partial<TektonImages>;
  /** Tekton's SYSTEM_NAMESPACE (created if missing); default `tekton-pipelines`. */
  systemNamespace?: string;
  /** Restrict its informers to one namespace (its `-namespace` flag); default all namespaces. */
  watchNamespace?: string;
  /** Entries merged over the module's `feature-flags` ConfigMap. */
  featureFlags?: Record<string, string>;
  /** Its `-threads-per-controller` (knative's default is 2). */
  threadsPerController?: number;
  /** Where its log file goes; default the control plane's directory. */
  logDir: string;
  log?: (line: string) => void;
}

export interface TektonController {
  systemNamespace: string;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

interface Cluster {
  kubeconfigPath: string;
  kubeConfig: KubeConfig;
}

/** The ConfigMaps of the module's config/ folder (config-*.yaml), as Tekton's release installs them. */
export async function tektonConfigMaps(systemNamespace: string): Promise<V1ConfigMap[]> {
  const dir = path.join(await moduleDir(tekton), "config");
  const maps: V1ConfigMap[] = [];
  for (const file of (await readdir(dir)).filter((f) => /^config-.*\.yaml$/.test(f)).sort()) {
    for (const obj of loadAllYaml(await readFile(path.join(dir, file), "utf8")) as (V1ConfigMap | null)[]) {
      if (obj?.kind !== "ConfigMap") continue;
      maps.push({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: {
          name: obj.metadata?.name ?? "",
          namespace: systemNamespace,
          labels: obj.metadata?.labels ?? {},
        },
        data: obj.data ?? {},
      });
    }
  }
  return maps;
}

const isStatus = (err: unknown, code: number) => (err as { code?: number } | null)?.code === code;

export async function startTektonController(
  cluster: Cluster,
  opts: TektonOptions,
): Promise<TektonController> {
  const log = opts.log ?? (() => undefined);
  const systemNamespace = opts.systemNamespace ?? "tekton-pipelines";
  const kc = cluster.kubeConfig;
  const core = kc.makeApiClient(CoreV1Api);
  // The static program its controller image holds (tekton-images): one build serves both.
  const binary = path.join(await buildTool("tekton-images"), "controller");

  await core.createNamespace({ body: { metadata: { name: systemNamespace } } }).catch((err: unknown) => {
    if (!isStatus(err, 409)) throw err;
  });
  for (const cm of await tektonConfigMaps(systemNamespace)) {
    if (cm.metadata?.name === "feature-flags") cm.data = { ...cm.data, ...opts.featureFlags };
    await core.createNamespacedConfigMap({ namespace: systemNamespace, body: cm }).catch((err: unknown) => {
      if (!isStatus(err, 409)) throw err;
    });
  }

  // Its probe, profiling and metrics servers would take fixed ports (8080, 8008, 9090): give them
  // free ones. knative's own health server binds :8080 regardless; when that is taken (another
  // Tekton controller on this host) it fails alone, and the controllers run on.
  const [probes, profiling, metrics] = (await freePorts(3)) as [number, number, number];
  const i = { ...tektonImages, ...opts.images };
  // prettier-ignore
  const args = [
    `-kubeconfig=${cluster.kubeconfigPath}`,
    `-entrypoint-image=${i.entrypoint}`, `-nop-image=${i.nop}`,
    `-sidecarlogresults-image=${i.sidecarlogresults}`, `-workingdirinit-image=${i.workingdirinit}`,
    `-shell-image=${i.shell}`, `-shell-image-win=${i.shellWin}`,
    "-disable-ha",
    ...(opts.watchNamespace ? [`-namespace=${opts.watchNamespace}`] : []),
    ...(opts.threadsPerController ? [`-threads-per-controller=${opts.threadsPerController}`] : []),
  ];
  const env = {
    SYSTEM_NAMESPACE: systemNamespace,
    KUBERNETES_MIN_VERSION: "v1.28.0",
    METRICS_DOMAIN: "tekton.dev/pipeline",
    PROBES_PORT: String(probes),
    PROFILING_PORT: String(profiling),
    METRICS_PROMETHEUS_HOST: "127.0.0.1",
    METRICS_PROMETHEUS_PORT: String(metrics),
  };
  log(`starting Tekton's controller (SYSTEM_NAMESPACE ${systemNamespace})`);
  // startSupervised passes this process's environment on; env(1) adds Tekton's.
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const proc = startSupervised(
    "tekton-controller",
    "/usr/bin/env",
    [...envArgs, binary, ...args],
    opts.logDir,
  );
  try {
    await waitUntilReconciling(kc, opts.watchNamespace ?? systemNamespace, proc);
  } catch (err) {
    await stopSupervised(proc);
    throw err;
  }
  log(`Tekton's controller is reconciling (log: ${proc.logFile})`);
  return {
    systemNamespace,
    pid: await supervisedPid(proc),
    logFile: proc.logFile,
    stop: () => stopSupervised(proc),
  };
}

/**
 * Ready means reconciling: a PipelineRun created cancelled gets Tekton's status (no TaskRun, no
 * pod), then is deleted again. `proc`: the controller's process, when it runs as one.
 */
export async function waitUntilReconciling(
  kc: KubeConfig,
  namespace: string,
  proc?: Supervised,
): Promise<void> {
  const objects = kc.makeApiClient(CustomObjectsApi);
  const ref = { group: "tekton.dev", version: "v1", namespace, plural: "pipelineruns" };
  const name = `tekton-ready-probe-${process.pid}-${Date.now().toString(36)}`;
  await objects.createNamespacedCustomObject({
    ...ref,
    body: {
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: { name },
      spec: {
        status: "Cancelled",
        pipelineSpec: {
          tasks: [{ name: "probe", taskSpec: { steps: [{ image: "none", script: "true" }] } }],
        },
      },
    },
  });
  await waitFor(
    "Tekton's controller to reconcile a PipelineRun",
    async () => {
      const pr = (await objects.getNamespacedCustomObject({ ...ref, name })) as {
        status?: { conditions?: { type: string }[] };
      };
      return (pr.status?.conditions ?? []).some((c) => c.type === "Succeeded");
    },
    { intervalMs: 200, ...(proc ? { alive: proc } : {}) },
  );
  await objects.deleteNamespacedCustomObject({ ...ref, name }).catch(() => undefined);
}

/** The controller's own pid: guard.sh's child (env(1) execs into the binary). */
async function supervisedPid(proc: Supervised): Promise<number> {
  const guard = proc.child.pid ?? -1;
  const children = await readFile(`/proc/${guard}/task/${guard}/children`, "utf8").catch(() => "");
  return Number(children.trim().split(/\s+/)[0] ?? -1) || -1;
}
