// An identity world (test/support/identity-world.ts) with Tekton Pipelines' own controller running
// too, so PipelineRuns drive our CustomRuns for real: a local process watching the world's
// namespace only, whose TaskRun pods run on the test kubelet, or on the real node Tekton installed
// as a release (controller and webhook as Deployments). Opt-in: only the end-to-end suite starts it.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { after } from "node:test";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { startTektonController, type TektonController } from "../../hack/cluster/tekton.ts";
import type { NodeImages } from "../../hack/cluster/images.ts";
import { installTekton, type InstalledTekton } from "../../hack/cluster/tekton-install.ts";
import { buildTool } from "../../hack/cluster/upstream.ts";
import type { Condition, CustomRun } from "../../tasks/scoped-step/types.ts";
import { examplesGitMirror } from "./git.ts";
import { realCluster } from "./cluster.ts";
import { published, startIdentityWorld, type IdentityWorld } from "./identity-world.ts";
import { whileProgressing } from "./wait.ts";

export interface PipelineRun {
  apiVersion: "tekton.dev/v1";
  kind: "PipelineRun";
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
  };
  spec: Record<string, unknown>;
  status?: {
    conditions?: Condition[];
    results?: { name: string; value: unknown }[];
    childReferences?: { kind: string; name: string; pipelineTaskName: string }[];
    startTime?: string;
    completionTime?: string;
  };
}

export interface TaskRun {
  metadata: { name: string; labels?: Record<string, string> };
  spec: Record<string, unknown>;
  status?: {
    conditions?: Condition[];
    podName?: string;
    results?: { name: string; value: unknown }[];
    steps?: { name: string; terminated?: { exitCode: number }; terminationReason?: string }[];
  };
}

export interface TektonWorld extends IdentityWorld {
  /** A local process beside the test kubelet, or Deployments installed on the real cluster. */
  tekton: TektonController | InstalledTekton;
  createPipeline(name: string, spec: Record<string, unknown>): Promise<void>;
  createPipelineRun(name: string, spec: Record<string, unknown>): Promise<void>;
  getPipelineRun(name: string): Promise<PipelineRun>;
  /** Merge-patches the PipelineRun's spec, e.g. `{ status: "Cancelled" }`. */
  patchPipelineRun(name: string, spec: Record<string, unknown>): Promise<void>;
  waitForPipelineRun(
    name: string,
    what: string,
    done: (pr: PipelineRun) => boolean,
    timeoutMs?: number,
  ): Promise<PipelineRun>;
  waitPipelineRunDone(name: string, timeoutMs?: number): Promise<PipelineRun>;
  createTaskRun(name: string, spec: Record<string, unknown>): Promise<void>;
  getTaskRun(name: string): Promise<TaskRun>;
  /** The CustomRuns and TaskRuns Tekton created for one PipelineRun. */
  customRuns(pipelineRun: string): Promise<CustomRun[]>;
  taskRuns(pipelineRun: string): Promise<TaskRun[]>;
}

const scopedStep = { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" } as const;

/**
 * A PipelineRun's spec for the real node: a scoped-step task whose step, in Debian's aws CLI image,
 * runs `before` and then reports the caller STS sees with the credentials the controller minted
 * (Application payments, component api); a Tekton task passes it on with its own uid, in result
 * `seen` ("<arn> as <uid>").
 */
export function callerPipeline(w: TektonWorld, images: NodeImages, before = "true"): Record<string, unknown> {
  return {
    pipelineSpec: {
      tasks: [
        {
          name: "deploy",
          taskSpec: {
            ...scopedStep,
            spec: {
              results: [{ name: "caller" }],
              image: images.awscli,
              env: [{ name: "AWS_ENDPOINT_URL", value: w.peer.endpoint }],
              script: [
                "set -e",
                before,
                // Debian's aws CLI (1.x) reads no AWS_ENDPOINT_URL: the flag names the peer.
                'arn=$(aws --endpoint-url "$AWS_ENDPOINT_URL" sts get-caller-identity --query Arn --output text)',
                'printf %s "$arn" > $(results.caller.path)',
              ].join("\n"),
              application: "payments",
              component: "api",
            },
          },
        },
        {
          name: "report",
          params: [{ name: "caller", value: "$(tasks.deploy.results.caller)" }],
          taskSpec: {
            params: [{ name: "caller" }],
            results: [{ name: "seen" }],
            steps: [
              {
                name: "report",
                image: images.busybox,
                script: 'printf "%s as %s" "$(params.caller)" "$(id -u)" > $(results.seen.path)',
              },
            ],
          },
        },
      ],
      results: [{ name: "seen", value: "$(tasks.report.results.seen)" }],
    },
  };
}

export const pipelineCondition = (pr: { status?: { conditions?: Condition[] } }) =>
  pr.status?.conditions?.find((c) => c.type === "Succeeded");
export const pipelineResults = (pr: PipelineRun) =>
  Object.fromEntries((pr.status?.results ?? []).map((r) => [r.name, r.value]));
export const pipelineTask = (run: { metadata: { labels?: Record<string, string> } }) =>
  run.metadata.labels?.["tekton.dev/pipelineTask"] ?? "";

const v1 = { group: "tekton.dev", version: "v1" } as const;
const run = promisify(execFile);
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

let installed: Promise<InstalledTekton> | undefined;

/**
 * Tekton installed on the real cluster (`realCluster()`), once per test process; the install is
 * idempotent. Its git resolver clones `https://github.com/example/` from the node's address
 * (examplesGitMirror), so examples naming that host run as written.
 */
export function realTekton(): Promise<InstalledTekton> {
  installed ??= realCluster().then((c) =>
    installTekton({ kubeConfig: c.kc }, c.images, { gitMirrors: examplesGitMirror(c.nodeIp) }),
  );
  return installed;
}

/**
 * `realNode`: on the cluster with a real node (`realCluster()`), where Tekton runs as its release
 * installs it (controller and admission webhook as Deployments, hack/cluster/tekton-install.ts),
 * TaskRun pods run Tekton's own images, and the AWS peer listens on the node's address, so step
 * pods reach it. `issuer` and `controller: false`: the controller runs elsewhere (e.g. as the
 * release's Deployment) and serves the issuer there.
 */
export async function startTektonWorld(
  policy: Record<string, unknown>,
  opts: {
    realNode?: boolean;
    issuer?: string;
    controller?: boolean;
    stepAwsEndpoint?: boolean;
    awsTrusts?: string;
  } = {},
): Promise<TektonWorld> {
  const node = opts.realNode ? await realCluster() : undefined;
  const base = await startIdentityWorld(policy, {
    ...(node ? { cluster: realCluster(), peerHost: node.nodeIp } : {}),
    ...(opts.issuer ? { issuer: opts.issuer } : {}),
    ...(opts.controller === false ? { controller: false } : {}),
    ...(opts.stepAwsEndpoint ? { stepAwsEndpoint: true } : {}),
    ...(opts.awsTrusts ? { awsTrusts: opts.awsTrusts } : {}),
  });
  const { objects, kubeconfig, kc } = base.cluster;
  const ns = base.ns;
  let tekton: TektonController | InstalledTekton;
  let seeLog: string;
  if (node) {
    tekton = await realTekton();
    seeLog = ` (Tekton's logs: kubectl -n ${tekton.systemNamespace} logs deploy/tekton-pipelines-controller)`;
  } else {
    const proc = await startTektonController(
      { kubeconfigPath: kubeconfig, kubeConfig: kc },
      {
        // Its own SYSTEM_NAMESPACE per world, so two of them never share ConfigMaps.
        systemNamespace: `tekton-${ns}`,
        watchNamespace: ns,
        // Beside the control plane's own logs: removed with it.
        logDir: path.dirname(kubeconfig),
      },
    );
    after(() => proc.stop());
    tekton = proc;
    seeLog = ` (Tekton's log: ${proc.logFile})`;
  }

  const list = async <T>(plural: string, pipelineRun: string, version: string): Promise<T[]> => {
    const res = (await objects.listNamespacedCustomObject({
      group: "tekton.dev",
      version,
      namespace: ns,
      plural,
      labelSelector: `tekton.dev/pipelineRun=${pipelineRun}`,
    })) as { items: T[] };
    return res.items;
  };

  const w: TektonWorld = Object.assign(base, {
    tekton,
    async createPipeline(name: string, spec: Record<string, unknown>) {
      await objects.createNamespacedCustomObject({
        ...v1,
        namespace: ns,
        plural: "pipelines",
        body: { apiVersion: "tekton.dev/v1", kind: "Pipeline", metadata: { name }, spec },
      });
    },
    async createPipelineRun(name: string, spec: Record<string, unknown>) {
      await objects.createNamespacedCustomObject({
        ...v1,
        namespace: ns,
        plural: "pipelineruns",
        body: { apiVersion: "tekton.dev/v1", kind: "PipelineRun", metadata: { name }, spec },
      });
    },
    async getPipelineRun(name: string) {
      return (await objects.getNamespacedCustomObject({
        ...v1,
        namespace: ns,
        plural: "pipelineruns",
        name,
      })) as PipelineRun;
    },
    async patchPipelineRun(name: string, spec: Record<string, unknown>) {
      await objects.patchNamespacedCustomObject(
        { ...v1, namespace: ns, plural: "pipelineruns", name, body: { spec } },
        mergePatch,
      );
    },
    // The PipelineRun and the namespace's pods are its progress: a pipeline slowed down by a
    // loaded machine is waited for, one that stands still for timeoutMs fails.
    waitForPipelineRun(name: string, what: string, done: (pr: PipelineRun) => boolean, timeoutMs = 90_000) {
      return whileProgressing(
        `PipelineRun ${name} ${what}${seeLog}`,
        async () => {
          const pr = await w.getPipelineRun(name);
          if (done(pr)) return { value: pr, progress: "" };
          const pods = await w.pods();
          const versions = [pr, ...pods].map(
            (o) => `${o.metadata?.name ?? ""}@${o.metadata?.resourceVersion ?? ""}`,
          );
          return { progress: versions.join(" ") };
        },
        { stallMs: timeoutMs },
      );
    },
    waitPipelineRunDone(name: string, timeoutMs?: number) {
      return w.waitForPipelineRun(
        name,
        "to finish",
        (pr) => ["True", "False"].includes(pipelineCondition(pr)?.status ?? ""),
        timeoutMs,
      );
    },
    async createTaskRun(name: string, spec: Record<string, unknown>) {
      await objects.createNamespacedCustomObject({
        ...v1,
        namespace: ns,
        plural: "taskruns",
        body: { apiVersion: "tekton.dev/v1", kind: "TaskRun", metadata: { name }, spec },
      });
    },
    async getTaskRun(name: string) {
      return (await objects.getNamespacedCustomObject({
        ...v1,
        namespace: ns,
        plural: "taskruns",
        name,
      })) as TaskRun;
    },
    customRuns: (pipelineRun: string) => list<CustomRun>("customruns", pipelineRun, "v1beta1"),
    taskRuns: (pipelineRun: string) => list<TaskRun>("taskruns", pipelineRun, "v1"),
  });
  return w;
}

/**
 * A world for examples as users write them (the catalog's, the README's): on the real node, the
 * images built here answering to the references the examples name (Debian's aws CLI as
 * amazon/aws-cli:2.27.9, busybox as busybox:1.37, Debian's skopeo as quay.io/skopeo/stable:v1.18.0:
 * no registry is reachable), every step given the
 * AWS peer as AWS_ENDPOINT_URL (--step-aws-endpoint), and no policy of the world's own: the
 * examples' policies decide.
 */
export async function startExamplesWorld(): Promise<TektonWorld> {
  const c = await realCluster();
  const ctr = path.join(await buildTool("containerd"), "ctr");
  for (const [image, reference] of [
    [c.images.awscli, "docker.io/amazon/aws-cli:2.27.9"],
    [c.images.busybox, "docker.io/library/busybox:1.37"],
    [c.images.skopeo, "quay.io/skopeo/stable:v1.18.0"],
  ] as const) {
    // prettier-ignore
    await run(ctr, ["--address", c.containerdSocket, "-n", "k8s.io", "images", "tag", "--force", image, reference]);
  }
  const w = await startTektonWorld(
    { aws: { allowedRoleArns: ["arn:aws:iam::000000000000:role/none"] } },
    { realNode: true, stepAwsEndpoint: true },
  );
  await w.cluster.objects.deleteClusterCustomObject({
    group: "scopedstep.dev",
    version: "v1alpha1",
    plural: "scopedsteppolicies",
    name: `${w.ns}-identity`,
  });
  return w;
}

/**
 * Every place a run's secret could end up where people and tools look: the controller's log, the
 * CustomRuns, PipelineRuns and TaskRuns, the Events, and the pods (spec, annotations, labels,
 * status with termination messages), of the world's namespace, as one text.
 */
export async function writtenByRuns(w: TektonWorld): Promise<string> {
  const list = (plural: string, version = "v1") =>
    w.cluster.objects.listNamespacedCustomObject({ group: "tekton.dev", version, namespace: w.ns, plural });
  const pods = await w.cluster.core.listNamespacedPod({ namespace: w.ns });
  return [
    await published(w),
    JSON.stringify(await list("pipelineruns")),
    JSON.stringify(await list("taskruns")),
    JSON.stringify(pods),
  ].join("\n");
}

/**
 * No credential the AWS peer issued to the world's runs, nor any token it was shown, was written
 * anywhere `writtenByRuns` reads. Fails, too, when nothing was issued: the search would prove
 * nothing.
 */
export async function assertNoSecretWritten(w: TektonWorld): Promise<void> {
  const secrets = w.peer.issuedSecrets();
  assert.ok(secrets.length > 0, "the runs were issued credentials");
  const text = await writtenByRuns(w);
  const hits = secrets.filter((s) => text.includes(s));
  assert.deepEqual(
    hits.map((h) => `${h.slice(0, 4)}… (${h.length} characters)`),
    [],
    "credential values were written",
  );
  assert.doesNotMatch(text, /eyJ[\w-]{10,}\.[\w-]{10,}\.[\w-]+/, "a JWT was written");
}
