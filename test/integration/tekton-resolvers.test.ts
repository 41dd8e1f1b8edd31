// Steps from Tekton's own remote resolvers (cmd/resolvers of v1.15.1, its release Deployment on
// the real node, under tini, with git): a PipelineRun on Tekton's controller makes a CustomRun
// whose customRef names a resolver, the controller asks through a ResolutionRequest, the resolver
// answers, and the step runs with minted credentials that are revoked after it. The git resolver
// clones from a bare repository that `git daemon` serves on the node's address (test/support/git.ts);
// the cluster resolver reads a ScopedStep packaged as a Task from a shared catalog namespace.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { parse } from "yaml";
import { taskFromStep } from "../../tasks/scoped-step/packaged-task.ts";
import { credentialSecretName } from "../../tasks/scoped-step/pod.ts";
import type { ResolutionRequest } from "../../tasks/scoped-step/remote.ts";
import type { CustomRun } from "../../tasks/scoped-step/types.ts";
import { realCluster, testNamespace } from "../support/cluster.ts";
import { gitDaemon } from "../support/git.ts";
import { account, sigv4 } from "../support/identity-world.ts";
import {
  assertNoSecretWritten,
  pipelineCondition,
  startTektonWorld,
  type TektonWorld,
} from "../support/tekton.ts";
import { tenantConfig } from "../support/tenant.ts";
import { eventually } from "../support/wait.ts";
import { condition, resultsOf } from "../support/world.ts";

const scopedStep = { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" } as const;
const deployRole = `arn:aws:iam::${account}:role/payments-deployer`;

/** The catalog step: the image and the AWS endpoint come as params. */
const whoami = [
  "apiVersion: scopedstep.dev/v1alpha1",
  "kind: ScopedStep",
  "metadata:",
  "  name: whoami",
  "spec:",
  "  params: [{ name: image }, { name: endpoint }]",
  "  results: [{ name: caller }]",
  "  image: $(params.image)",
  "  env: [{ name: AWS_ENDPOINT_URL, value: $(params.endpoint) }]",
  "  script: |",
  "    set -e",
  `    ${sigv4("sts")} -d "Action=GetCallerIdentity&Version=2011-06-15" "$AWS_ENDPOINT_URL" | sed -n 's:.*<Arn>\\(.*\\)</Arn>.*:\\1:p' > $(results.caller.path)`,
  "  application: payments",
  "  component: api",
  "",
].join("\n");
/** As it sits in git: Tekton's resolvers pass on tekton.dev kinds only, so it is wrapped in a CustomRun. */
const wrappedWhoami = [
  "apiVersion: tekton.dev/v1beta1",
  "kind: CustomRun",
  "metadata: { name: whoami }",
  "spec:",
  "  customSpec:",
  ...whoami.split("\n").map((l) => (l ? `    ${l}` : l)),
].join("\n");

const cluster = await realCluster();
const world: Promise<{ w: TektonWorld; url: string }> = startTektonWorld(
  {
    aws: { allowedRoleArns: [`arn:aws:iam::${account}:role/payments-*`], maxSessionDuration: 3600 },
    deliveryModes: ["env"],
  },
  { realNode: true },
).then(async (w) => {
  await w.createApplication("payments", [
    {
      name: "api",
      type: "webservice",
      traits: [
        { type: "scoped-identity", properties: { aws: { roleArn: deployRole, region: "eu-west-1" } } },
      ],
    },
  ]);
  const files = { "steps/whoami.yaml": wrappedWhoami, "steps/bare.yaml": whoami };
  return { w, url: await gitDaemon(cluster.nodeIp, files) };
});

const customRunOf = async (w: TektonWorld, pipelineRun: string): Promise<CustomRun> => {
  const [only] = await w.customRuns(pipelineRun);
  assert.ok(only, `a CustomRun of ${pipelineRun}`);
  return only;
};

/** The pipeline task that runs whoami from `resolver` with `params`. */
const whoamiTask = (w: TektonWorld, resolver: string, params: { name: string; value: string }[]) => ({
  name: "whoami",
  taskRef: { ...scopedStep, resolver, params },
  params: [
    { name: "image", value: cluster.images.awscli },
    { name: "endpoint", value: w.peer.endpoint },
  ],
});

/** The PipelineRun succeeded with the trait's role, and revoked it: its CustomRun. */
async function ranAsDeployer(w: TektonWorld, pipelineRun: string): Promise<CustomRun> {
  const pr = await w.waitPipelineRunDone(pipelineRun, 300_000);
  const cr = await customRunOf(w, pipelineRun);
  assert.equal(
    pipelineCondition(pr)?.status,
    "True",
    `${pipelineCondition(pr)?.message ?? ""}; ${condition(cr)?.message ?? ""}`,
  );
  const results = resultsOf(cr);
  assert.match(results.caller ?? "", /^arn:aws:sts::111122223333:assumed-role\/payments-deployer\//);
  assert.ok(results["revoked-at"], "the credential was revoked");
  return cr;
}

/** A PipelineRun of these tasks, made by the namespace's user. */
async function pipelineRunAsTenant(w: TektonWorld, name: string, tasks: unknown[]): Promise<void> {
  const tenant = (await tenantConfig(cluster, w.ns)).makeApiClient(CustomObjectsApi);
  await tenant.createNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1",
    plural: "pipelineruns",
    namespace: w.ns,
    body: {
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: { name },
      spec: { pipelineSpec: { tasks } },
    },
  });
}

/** The ResolutionRequests the controller made for a run. */
const requestsOf = async (w: TektonWorld, cr: CustomRun): Promise<ResolutionRequest[]> => {
  const requests = (await cluster.objects.listNamespacedCustomObject({
    group: "resolution.tekton.dev",
    version: "v1beta1",
    plural: "resolutionrequests",
    namespace: w.ns,
  })) as { items: ResolutionRequest[] };
  return requests.items.filter((r) => r.metadata?.ownerReferences?.[0]?.uid === cr.metadata.uid);
};

test("a step from the git resolver runs end to end: PipelineRun → CustomRun → ResolutionRequest → minted → step → revoked", async () => {
  const { w, url } = await world;
  await w.createPipelineRun("from-git", {
    pipelineSpec: {
      tasks: [
        whoamiTask(w, "git", [
          { name: "url", value: url },
          { name: "revision", value: "main" },
          { name: "pathInRepo", value: "steps/whoami.yaml" },
        ]),
      ],
    },
  });
  const cr = await ranAsDeployer(w, "from-git");
  assert.equal(cr.spec.customRef?.resolver, "git", "Tekton passes the resolver on in customRef");
  await eventually("the credential Secret to be deleted", async () =>
    (await w.secretData(credentialSecretName(cr.metadata.name ?? "", 0))) ? undefined : true,
  );
  // Answered by Tekton's git resolver, not by anyone else.
  const mine = await requestsOf(w, cr);
  assert.equal(mine.length, 1);
  assert.equal(mine[0]?.status?.conditions?.find((c) => c.type === "Succeeded")?.status, "True");
  assert.match(JSON.stringify(mine[0]?.status?.annotations ?? {}), /steps\/whoami.yaml/);
});

test("as the tenant: a step from Tekton's cluster resolver, packaged as a Task in a shared catalog namespace, runs end to end", async () => {
  const { w } = await world;
  const catalog = await testNamespace(cluster, "catalog");
  const step = parse(whoami) as Parameters<typeof taskFromStep>[0];
  const task = taskFromStep(step);
  assert.ok(task, "whoami has a Task packaging");
  // Through Tekton's admission webhook, as an operator publishes it.
  await cluster.objects.createNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1",
    plural: "tasks",
    namespace: catalog,
    body: task,
  });
  await pipelineRunAsTenant(w, "from-cluster", [
    whoamiTask(w, "cluster", [
      { name: "kind", value: "task" },
      { name: "name", value: "whoami" },
      { name: "namespace", value: catalog },
    ]),
  ]);
  const cr = await ranAsDeployer(w, "from-cluster");
  // The identity came from the run's namespace: the catalog namespace has no Application at all.
  assert.equal(cr.metadata.namespace, w.ns);
  const mine = await requestsOf(w, cr);
  assert.equal(mine.length, 1);
  assert.equal(mine[0]?.metadata?.labels?.["resolution.tekton.dev/type"], "cluster");
  assert.equal(mine[0]?.status?.conditions?.find((c) => c.type === "Succeeded")?.status, "True");
});

test("Tekton's resolvers' refusals end the run with ResolverFailed", async () => {
  const { w, url } = await world;
  const runWith = (name: string, resolver: string, params: { name: string; value: string }[]) =>
    w.createPipelineRun(name, {
      pipelineSpec: { tasks: [{ name: "step", taskRef: { ...scopedStep, resolver, params } }] },
    });
  await runWith("git-missing", "git", [
    { name: "url", value: url },
    { name: "revision", value: "main" },
    { name: "pathInRepo", value: "steps/nothing.yaml" },
  ]);
  // Tekton's resolver framework passes on tekton.dev kinds only: a bare ScopedStep file is refused.
  await runWith("git-bare", "git", [
    { name: "url", value: url },
    { name: "revision", value: "main" },
    { name: "pathInRepo", value: "steps/bare.yaml" },
  ]);
  // Tekton's cluster resolver serves Tasks, Pipelines and StepActions only.
  await runWith("cluster-kind", "cluster", [
    { name: "kind", value: "scopedstep" },
    { name: "name", value: "whoami" },
    { name: "namespace", value: w.ns },
  ]);
  for (const [name, message] of [
    ["git-missing", /resolver git \(ResolutionRequest git-[0-9a-f]+\) failed: .*steps\/nothing.yaml/],
    [
      "git-bare",
      /resolver git \(ResolutionRequest git-[0-9a-f]+\) failed: .*resolved data is not of a supported type/,
    ],
    [
      "cluster-kind",
      /resolver cluster \(ResolutionRequest cluster-[0-9a-f]+\) failed: .*unknown or unsupported resource kind 'scopedstep'/,
    ],
  ] as const) {
    await w.waitPipelineRunDone(name, 300_000);
    const c = condition(await customRunOf(w, name));
    assert.equal(c?.status, "False", `${name}: ${c?.message ?? ""}`);
    assert.equal(c?.reason, "ResolverFailed", `${name}: ${c?.message ?? ""}`);
    assert.match(c?.message ?? "", message);
  }
});

test("as the tenant: another namespace's Task that is not a packaged ScopedStep is refused through the cluster resolver, and nothing of it shows", async () => {
  const { w } = await world;
  const other = await testNamespace(cluster, "other");
  const secret = "build-token-5f2c9d";
  await cluster.objects.createNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1",
    plural: "tasks",
    namespace: other,
    body: {
      apiVersion: "tekton.dev/v1",
      kind: "Task",
      metadata: { name: "build" },
      spec: { steps: [{ name: "build", image: "busybox", script: `echo ${secret}` }] },
    },
  });
  await pipelineRunAsTenant(w, "borrow", [
    {
      name: "step",
      taskRef: {
        ...scopedStep,
        resolver: "cluster",
        params: [
          { name: "kind", value: "task" },
          { name: "name", value: "build" },
          { name: "namespace", value: other },
        ],
      },
    },
  ]);
  const pr = await w.waitPipelineRunDone("borrow", 300_000);
  const cr = await customRunOf(w, "borrow");
  const c = condition(cr);
  assert.equal(c?.reason, "NotAScopedStep", c?.message);
  assert.match(
    c?.message ?? "",
    /returned a Task that is not a packaged ScopedStep: it lacks the scopedstep.dev\/application/,
  );
  for (const text of [
    JSON.stringify(cr),
    JSON.stringify(pr),
    JSON.stringify(await w.events(cr.metadata.name ?? "")),
  ])
    assert.ok(!text.includes(secret), "the other namespace's Task shows nowhere the tenant reads");
});

test("no credential or token the runs were issued was written to a log, status, event or pod", async () => {
  await assertNoSecretWritten((await world).w);
});
