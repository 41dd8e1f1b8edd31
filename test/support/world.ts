// A test world: a namespace on the shared control plane with a default ServiceAccount, the real
// controller watching it (as a child process), and the test kubelet running its step pods.
import { after } from "node:test";
import { CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import type { CustomRun, CustomRunSpec } from "../../tasks/scoped-step/types.ts";
import { testCluster, testNamespace, type TestCluster } from "./cluster.ts";
import { startController, waitForLeader, type ControllerProcess } from "./controller.ts";
import { startTestKubelet, type TestKubelet } from "../../simulators/kubelet/index.ts";
import { eventually } from "./wait.ts";
import { createApplication } from "./application.ts";

export const scopedStepRef = { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" } as const;
export const roleArn = "arn:aws:iam::111122223333:role/payments-deployer";

const runs = { group: "tekton.dev", version: "v1beta1", plural: "customruns" } as const;

export interface World {
  cluster: TestCluster;
  ns: string;
  controllerNs: string;
  controller?: ControllerProcess;
  kubelet?: TestKubelet;
  startController(flags?: string[], env?: Record<string, string>): Promise<ControllerProcess>;
  createApplication(name: string, components: unknown[]): Promise<void>;
  /** A cluster-scoped ScopedStepPolicy selecting this world's namespace by name. */
  createPolicy(name: string, spec: Record<string, unknown>): Promise<void>;
  createScopedStep(name: string, spec: unknown): Promise<void>;
  createRun(name: string, spec: Partial<CustomRunSpec>, labels?: Record<string, string>): Promise<CustomRun>;
  getRun(name: string): Promise<CustomRun>;
  patchRunSpec(name: string, spec: Partial<CustomRunSpec>): Promise<void>;
  deleteRun(name: string): Promise<void>;
  waitForRun(
    name: string,
    what: string,
    done: (run: CustomRun) => boolean,
    timeoutMs?: number,
  ): Promise<CustomRun>;
  waitDone(name: string, timeoutMs?: number): Promise<CustomRun>;
  pods(): Promise<V1Pod[]>;
  events(name: string): Promise<{ reason: string; message: string; type: string }[]>;
  /** Events are written without waiting for them; this polls until each reason has appeared. */
  waitForEvents(name: string, reasons: string[], type?: string): Promise<void>;
}

export const condition = (run: CustomRun) => run.status?.conditions?.find((c) => c.type === "Succeeded");
export const resultsOf = (run: CustomRun) =>
  Object.fromEntries((run.status?.results ?? []).map((r) => [r.name, r.value]));

/** The usual identity reference and a step that writes one result. */
export const identityParams = [
  { name: "application", value: "payments" },
  { name: "component", value: "api" },
];

export const paymentsApp = [
  {
    name: "api",
    type: "webservice",
    properties: { image: "example/api:1" },
    traits: [
      {
        type: "scoped-identity",
        properties: { audience: "sts.amazonaws.com", aws: { roleArn, region: "eu-west-1" } },
      },
    ],
  },
];

const worlds = new Set<World>();
after(async () => {
  for (const w of worlds) {
    await w.controller?.kill("SIGTERM");
    await w.kubelet?.stop();
  }
});

/** Allows every role, audience and delivery mode: for tests about the lifecycle, not the policy. */
export const permissivePolicy = {
  audiences: ["sts.amazonaws.com"],
  deliveryModes: ["env", "file", "token-only"],
  aws: {
    allowedRoleArns: ["arn:aws:iam::*:role/*"],
    allowedPolicyArns: ["arn:aws:iam::*:policy/*"],
    maxSessionDuration: 43200,
  },
};

export interface WorldOptions {
  controller?: boolean;
  /** The test kubelet runs the namespace's pods; false on a cluster with a real node. */
  kubelet?: boolean;
  flags?: string[];
  policy?: boolean;
  /** Default the shared control plane; `realCluster()` for real pods. */
  cluster?: Promise<TestCluster>;
}

export async function startWorld(opts: WorldOptions = {}): Promise<World> {
  const cluster = await (opts.cluster ?? testCluster());
  const ns = await testNamespace(cluster, "run");
  const controllerNs = await testNamespace(cluster, "ctl");
  const core = cluster.kc.makeApiClient(CoreV1Api);
  // A controller-manager makes it where one runs; the shared control plane has none.
  await core
    .createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: "default" } } })
    .catch((err: unknown) => {
      if ((err as { code?: number }).code !== 409) throw err;
    });
  const { objects } = cluster;

  const world: World = {
    cluster,
    ns,
    controllerNs,
    async startController(flags = opts.flags ?? [], env = {}) {
      const c = startController({
        kubeconfig: cluster.kubeconfig,
        namespace: controllerNs,
        watchNamespaces: [ns],
        flags,
        env,
      });
      world.controller = c;
      await waitForLeader(c);
      return c;
    },
    async createApplication(name, components) {
      await createApplication(objects, ns, name, components);
    },
    async createPolicy(name, spec) {
      await objects.createClusterCustomObject({
        group: "scopedstep.dev",
        version: "v1alpha1",
        plural: "scopedsteppolicies",
        body: {
          apiVersion: "scopedstep.dev/v1alpha1",
          kind: "ScopedStepPolicy",
          metadata: { name: `${ns}-${name}` },
          spec: { namespaces: [ns], ...spec },
        },
      });
    },
    async createScopedStep(name, spec) {
      await objects.createNamespacedCustomObject({
        group: "scopedstep.dev",
        version: "v1alpha1",
        namespace: ns,
        plural: "scopedsteps",
        body: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", metadata: { name }, spec },
      });
    },
    async createRun(name, spec, labels) {
      return (await objects.createNamespacedCustomObject({
        ...runs,
        namespace: ns,
        body: {
          apiVersion: "tekton.dev/v1beta1",
          kind: "CustomRun",
          metadata: { name, ...(labels ? { labels } : {}) },
          spec: { customRef: scopedStepRef, ...spec },
        },
      })) as CustomRun;
    },
    async getRun(name) {
      return (await objects.getNamespacedCustomObject({ ...runs, namespace: ns, name })) as CustomRun;
    },
    async patchRunSpec(name, spec) {
      const { PatchStrategy, setHeaderOptions } = await import("@kubernetes/client-node");
      await objects.patchNamespacedCustomObject(
        { ...runs, namespace: ns, name, body: { spec } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    },
    async deleteRun(name) {
      await objects.deleteNamespacedCustomObject({ ...runs, namespace: ns, name });
    },
    waitForRun(name, what, done, timeoutMs = 60_000) {
      return eventually(
        `run ${name} ${what}`,
        async () => {
          const run = await world.getRun(name);
          return done(run) ? run : undefined;
        },
        { timeoutMs },
      );
    },
    waitDone(name, timeoutMs) {
      return world.waitForRun(
        name,
        "to finish",
        (r) => ["True", "False"].includes(condition(r)?.status ?? ""),
        timeoutMs,
      );
    },
    async pods() {
      return (await core.listNamespacedPod({ namespace: ns })).items;
    },
    async waitForEvents(name, reasons, type) {
      await eventually(`events ${reasons.join(", ")} on ${name}`, async () => {
        const seen = (await world.events(name)).filter((e) => type === undefined || e.type === type);
        return reasons.every((r) => seen.some((e) => e.reason === r)) ? true : undefined;
      });
    },
    async events(name) {
      const list = await core.listNamespacedEvent({
        namespace: ns,
        fieldSelector: `involvedObject.name=${name}`,
      });
      return list.items.map((e) => ({
        reason: e.reason ?? "",
        message: e.message ?? "",
        type: e.type ?? "",
      }));
    },
  };
  if (opts.policy !== false) await world.createPolicy("allow-all", permissivePolicy);
  if (opts.kubelet !== false) world.kubelet = await startTestKubelet(cluster.kc, { namespace: ns });
  worlds.add(world);
  if (opts.controller !== false) await world.startController();
  return world;
}
