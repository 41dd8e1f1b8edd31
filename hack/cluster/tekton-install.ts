// Tekton Pipelines installed on a cluster with a real node as an operator installs a release: every
// manifest of the pinned module's config/ folder, server-side applied in the release's order, with
// ko's image references resolved to the images built here (images.ts), as `ko resolve` does. Its
// controller, events controller and admission webhook then run as Deployments in
// `tekton-pipelines`; the webhook makes its own certificate and registers its admission and
// conversion webhooks, which kube-apiserver calls through the webhook's Service.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { parseAllDocuments } from "yaml";
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  loadYaml,
  PatchStrategy,
  type KubeConfig,
  type KubernetesObject,
  type V1Deployment,
  type V1Pod,
} from "@kubernetes/client-node";
import { tektonPrograms, type NodeImages } from "./images.ts";
import { waitFor } from "./processes.ts";
import { waitUntilReconciling } from "./tekton.ts";
import { moduleDir, tekton } from "./upstream.ts";

export const tektonNamespace = "tekton-pipelines";
/** The shell image the release pins by digest (the controller's `-shell-image`); no registry here. */
const releaseShellImage = /cgr\.dev\/chainguard\/busybox@sha256:[0-9a-f]{64}/g;
const fieldManager = "scoped-step-install";

export interface InstalledTekton {
  systemNamespace: string;
  /** The Deployments the install waited for, by namespace/name. */
  deployments: string[];
  /** Milliseconds from the first apply until all of it answered. */
  readyMs: number;
}

/**
 * The YAML files of config/ in the order a release concatenates them (sorted, folders in place),
 * resolvers/ included: the remote resolvers' Deployment in `tekton-pipelines-resolvers`.
 */
async function manifestFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
    a.name.localeCompare(b.name),
  )) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await manifestFiles(full)));
    else if (entry.name.endsWith(".yaml")) files.push(full);
  }
  return files;
}

const resolversDeployment = {
  namespace: "tekton-pipelines-resolvers",
  name: "tekton-pipelines-remote-resolvers",
};

/**
 * The resolvers' Deployment with git's `url.<mirror>.insteadOf = <prefix>` for each entry, set
 * through git's GIT_CONFIG_COUNT/KEY/VALUE environment (the git resolver runs git with the
 * process's environment), as an installation without internet access mirrors a git host.
 */
function withGitMirrors(obj: KubernetesObject, mirrors: Record<string, string>): KubernetesObject {
  const meta = obj.metadata;
  if (!isDeployment(obj) || meta?.namespace !== resolversDeployment.namespace) return obj;
  if (meta.name !== resolversDeployment.name) return obj;
  const entries = Object.entries(mirrors);
  const env = [
    { name: "GIT_CONFIG_COUNT", value: String(entries.length) },
    ...entries.flatMap(([prefix, mirror], i) => [
      { name: `GIT_CONFIG_KEY_${i}`, value: `url.${mirror}.insteadOf` },
      { name: `GIT_CONFIG_VALUE_${i}`, value: prefix },
    ]),
  ];
  const deployment = obj as V1Deployment;
  for (const container of deployment.spec?.template.spec?.containers ?? [])
    container.env = [...(container.env ?? []), ...env];
  return deployment;
}

/** Tekton's release manifests with the images resolved to local ones. */
export async function tektonManifests(images: NodeImages): Promise<KubernetesObject[]> {
  const config = path.join(await moduleDir(tekton), "config");
  const objects: KubernetesObject[] = [];
  for (const file of await manifestFiles(config)) {
    let text = await readFile(file, "utf8");
    for (const program of tektonPrograms)
      text = text.replaceAll(`ko://github.com/tektoncd/pipeline/cmd/${program}`, images.tekton[program]);
    text = text.replace(releaseShellImage, images.busybox);
    const unresolved = /ko:\/\/\S+/.exec(text);
    if (unresolved) throw new Error(`${path.relative(config, file)}: no local image for ${unresolved[0]}`);
    // The yaml package, as Go's parser does, takes the controller's flow list closed at the key's
    // indentation, which js-yaml refuses; client-node's loadYaml then maps the typed fields.
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length) throw new Error(`${path.relative(config, file)}: ${doc.errors.join("; ")}`);
      const obj = doc.toJS() as KubernetesObject | null;
      if (obj?.kind) objects.push(loadYaml<KubernetesObject>(JSON.stringify(obj)));
    }
  }
  return objects;
}

/**
 * Applied, server-side. When another install on the same cluster has just registered Tekton's
 * webhook while its pod is not yet behind the Service, the API server cannot call the webhook and
 * refuses the object ("failed calling webhook"): wait for the webhook to answer. Any other refusal
 * is the manifest's own and fails at once.
 */
async function applyObject(client: KubernetesObjectApi, obj: KubernetesObject): Promise<void> {
  let refused: unknown;
  await waitFor(
    `${obj.kind ?? ""} ${obj.metadata?.name ?? ""} to be applied while Tekton's webhook starts`,
    async () => {
      try {
        await client.patch(obj, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply);
      } catch (err) {
        if (/failed calling webhook/.test(statusMessage(err))) throw err;
        refused = err;
      }
      return true;
    },
    { intervalMs: 500 },
  );
  if (refused) throw refused instanceof Error ? refused : new Error(statusMessage(refused));
}

const isDeployment = (o: KubernetesObject) => o.kind === "Deployment" && o.apiVersion === "apps/v1";

export async function installTekton(
  cluster: { kubeConfig: KubeConfig },
  images: NodeImages,
  opts: {
    log?: (line: string) => void;
    /** URL prefix → where git clones it from instead, for the git resolver. */
    gitMirrors?: Record<string, string>;
  } = {},
): Promise<InstalledTekton> {
  const log = opts.log ?? (() => undefined);
  const kc = cluster.kubeConfig;
  const started = Date.now();
  const mirrors = opts.gitMirrors ?? {};
  const manifests = (await tektonManifests(images)).map((o) =>
    Object.keys(mirrors).length ? withGitMirrors(o, mirrors) : o,
  );
  log(`applying Tekton's ${manifests.length} manifests (server-side apply)`);
  const client = KubernetesObjectApi.makeApiClient(kc);
  for (const obj of manifests) await applyObject(client, obj);

  const deployments = manifests.filter(isDeployment).map((d) => ({
    namespace: d.metadata?.namespace ?? "",
    name: d.metadata?.name ?? "",
  }));
  for (const d of deployments) await waitAvailable(kc, d.namespace, d.name);
  log("Tekton's Deployments are available");
  await waitWebhookAnswering(kc);
  log("Tekton's webhook validates and defaults");
  await waitUntilReconciling(kc, tektonNamespace);
  const readyMs = Date.now() - started;
  log(`Tekton is ready ${(readyMs / 1000).toFixed(1)} s after the first apply`);
  return {
    systemNamespace: tektonNamespace,
    deployments: deployments.map((d) => `${d.namespace}/${d.name}`),
    readyMs,
  };
}

/** One line per pod of the Deployment: its phase and why a container is not running. */
function podStates(pods: V1Pod[]): string {
  return pods
    .map((p) => {
      const why = [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])]
        .map((c) => {
          const s = c.state?.waiting ?? c.state?.terminated ?? c.lastState?.terminated;
          return s ? `${c.name}: ${s.reason ?? ""} ${s.message ?? ""}`.trim() : "";
        })
        .filter(Boolean);
      const unscheduled = p.status?.conditions?.find(
        (c) => c.type === "PodScheduled" && c.status === "False",
      );
      if (unscheduled) why.push(`unschedulable: ${unscheduled.message ?? ""}`);
      return `${p.metadata?.name ?? ""} ${p.status?.phase ?? ""}${why.length ? ` (${why.join("; ")})` : ""}`;
    })
    .join(", ");
}

async function waitAvailable(kc: KubeConfig, namespace: string, name: string): Promise<void> {
  const apps = kc.makeApiClient(AppsV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  await waitFor(
    `Deployment ${namespace}/${name} to be available`,
    async () => {
      const d = await apps.readNamespacedDeployment({ namespace, name });
      const available = d.status?.conditions?.some((c) => c.type === "Available" && c.status === "True");
      if (available && (d.status?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1)) return true;
      const selector = Object.entries(d.spec?.selector.matchLabels ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(",");
      const pods = await core.listNamespacedPod({ namespace, labelSelector: selector });
      throw new Error(`pods: ${podStates(pods.items) || "none yet"}`);
    },
    { intervalMs: 500 },
  );
}

const validation = "validation.webhook.pipeline.tekton.dev";

/** The message of the API server's Status in a failed request, else the error's own. */
export function statusMessage(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  try {
    if (typeof body === "string") return (JSON.parse(body) as { message?: string }).message ?? body;
  } catch {
    // Not JSON: the error's own message.
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * Registered and answering: the webhook has filled in its configurations' rules and CA bundle, an
 * invalid Pipeline comes back denied in its words, and a PipelineRun comes back defaulted (both
 * dry runs, so nothing is stored).
 */
async function waitWebhookAnswering(kc: KubeConfig): Promise<void> {
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  const objects = kc.makeApiClient(CustomObjectsApi);
  const ref = { group: "tekton.dev", version: "v1", namespace: tektonNamespace };
  await waitFor(
    "Tekton's webhook to register its admission configurations",
    async () => {
      const configs = [
        ...((await admission.readValidatingWebhookConfiguration({ name: validation })).webhooks ?? []),
        ...((
          await admission.readValidatingWebhookConfiguration({ name: "config.webhook.pipeline.tekton.dev" })
        ).webhooks ?? []),
        ...((await admission.readMutatingWebhookConfiguration({ name: "webhook.pipeline.tekton.dev" }))
          .webhooks ?? []),
      ];
      const missing = configs.filter((w) => !w.rules?.length || !w.clientConfig.caBundle).map((w) => w.name);
      if (missing.length) throw new Error(`not yet filled in: ${missing.join(", ")}`);
      return true;
    },
    { intervalMs: 500 },
  );
  await waitFor(
    "Tekton's webhook to answer",
    async () => {
      const denied = await objects
        .createNamespacedCustomObject({
          ...ref,
          plural: "pipelines",
          dryRun: "All",
          body: { apiVersion: "tekton.dev/v1", kind: "Pipeline", metadata: { name: "invalid" }, spec: {} },
        })
        .then(() => "admitted", statusMessage);
      if (!denied.includes(`admission webhook "${validation}" denied the request`))
        throw new Error(`an empty Pipeline: ${denied}`);
      const run = (await objects.createNamespacedCustomObject({
        ...ref,
        plural: "pipelineruns",
        dryRun: "All",
        body: {
          apiVersion: "tekton.dev/v1",
          kind: "PipelineRun",
          metadata: { name: "defaulted" },
          spec: { pipelineRef: { name: "none" } },
        },
      })) as { spec?: { timeouts?: { pipeline?: string } } };
      if (!run.spec?.timeouts?.pipeline) throw new Error("a PipelineRun came back without a default timeout");
      return true;
    },
    { intervalMs: 500 },
  );
}
