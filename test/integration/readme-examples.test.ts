// The README's YAML examples, as written, run on the cluster with a real node and Tekton's own
// controller and admission webhook: the trait's Application and the policy are the ones the
// pipelines run under, the "three ways" are the tasks of one pipeline, the clone/build → publish
// pipeline runs with a claim made from a template, the pod template places a step, and the
// resolver examples take the wrapped step from git and the catalog's packaged step from the cluster. What the test adds is only what the README
// says is around them (a namespace, a role in the AWS peer, the workspace binding, the build before
// a publish) and what startExamplesWorld gives every example: local images under the references the
// examples name (no registry is reachable), the AWS peer as every step's AWS_ENDPOINT_URL
// (--step-aws-endpoint), and github.com/example served by a local git daemon (realTekton). Examples that are not objects (the revoker-roles
// ConfigMap line) are loaded as the controller loads them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { IAMClient, PutRolePolicyCommand } from "@aws-sdk/client-iam";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { parse } from "yaml";
import { loadConfig } from "../../controller/config.ts";
import { parseTektonDefaults } from "../../controller/tekton-defaults.ts";
import { withDefaultPodTemplate } from "../../tasks/scoped-step/default-pod-template.ts";
import type { CustomRun } from "../../tasks/scoped-step/types.ts";
import { readDocs, yamlBlocks } from "../support/catalog.ts";
import { realCluster } from "../support/cluster.ts";
import { examplesGitPort, gitDaemon } from "../support/git.ts";
import { applyRaw, createRaw, statusMessage, type ApiObject } from "../support/raw-api.ts";
import {
  assertNoSecretWritten,
  pipelineCondition,
  pipelineResults,
  startExamplesWorld,
  type TektonWorld,
} from "../support/tekton.ts";
import { provisionHostPathClaims } from "../support/volumes.ts";
import { policyInUse } from "../support/policy.ts";
import { eventually } from "../support/wait.ts";
import { condition, resultsOf } from "../support/world.ts";
import { nodeName } from "../../hack/cluster/node.ts";

const c = await realCluster();

const blocks = await yamlBlocks("README.md");
const block = (heading: string, has: string) => {
  const found = blocks.find((b) => b.heading === heading && b.text.includes(has));
  assert.ok(found, `README.md: a yaml example under "${heading}" with ${has}`);
  return found.text;
};
// Each example a test below uses, found by what it holds; the last test checks none is left out.
const examples = {
  threeWays: block("Using it in a pipeline", "# 1. A named ScopedStep"),
  workspaces: block("Using it in a pipeline", "workspaces: [{ name: shared }]"),
  podTemplate: block("Using it in a pipeline", "podTemplate:"),
  trait: block("The trait", "kind: Application"),
  policy: block("The policy", "kind: ScopedStepPolicy"),
  revokers: block("Revocation", "aws-revoker-roles:"),
  tektonDefaults: block("Using it in a pipeline", "default-pod-template:"),
  resolverRef: block("Using it in a pipeline", "resolver: git"),
  wrappedStep: block("Using it in a pipeline", "kind: CustomRun"),
  clusterRef: block("Using it in a pipeline", "resolver: cluster"),
  externalIssuer: block("External issuer mode", "issuer-mode: external"),
};

// The README's policy and Application decide, in place of the world's own.
const world: Promise<TektonWorld> = startExamplesWorld().then(async (w) => {
  // The README's policy names its namespace; here it is the test's.
  const policy = parse(examples.policy) as ApiObject & { spec: { namespaces: string[] } };
  assert.deepEqual(policy.spec.namespaces, ["team-payments"]);
  policy.spec.namespaces = [w.ns];
  await created(w, policy);
  await policyInUse(w.cluster.objects, policy.metadata.name ?? "", () => w.controller?.output() ?? "");
  // The trait's Application, in the test's namespace rather than team-payments.
  const application = parse(examples.trait) as ApiObject;
  assert.equal(application.metadata.namespace, "team-payments");
  delete application.metadata.namespace;
  await created(w, application);
  // The role the trait names trusts the controller's issuer (the world made it); what it may do in
  // AWS is the operator's business: here the bucket the examples write to.
  const iam = new IAMClient({
    endpoint: w.peer.endpoint,
    region: "us-east-1",
    credentials: w.peer.adminCredentials,
  });
  await iam.send(
    new PutRolePolicyCommand({
      RoleName: "payments-deployer",
      PolicyName: "payments-artifacts",
      PolicyDocument: JSON.stringify({
        Version: "2012-10-17",
        Statement: [{ Effect: "Allow", Action: "s3:*", Resource: "arn:aws:s3:::payments-artifacts/*" }],
      }),
    }),
  );
  iam.destroy();
  w.peer.createBucket("payments-artifacts");
  for (const doc of await readDocs("catalog/scopedstep/s3-upload/0.1/s3-upload.yaml")) await created(w, doc);
  return w;
});

async function created(w: TektonWorld, doc: ApiObject): Promise<ApiObject> {
  const res = await createRaw(w.cluster.kc, doc, { namespace: w.ns });
  assert.equal(res.status, 201, `${doc.kind} ${doc.metadata.name ?? ""}: ${statusMessage(res)}`);
  assert.deepEqual(res.warnings, [], `${doc.kind}: the API server warned`);
  return res.body as ApiObject;
}

const claimTemplate = {
  volumeClaimTemplate: {
    spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "64Mi" } } },
  },
};

async function runPipeline(w: TektonWorld, name: string, pipelineSpec: unknown, workspace?: string) {
  const provisioner = provisionHostPathClaims(c, w.ns);
  try {
    await created(w, {
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: { name },
      spec: {
        pipelineSpec,
        ...(workspace ? { workspaces: [{ name: workspace, ...claimTemplate }] } : {}),
      },
    });
    const pr = await w.waitPipelineRunDone(name, 300_000);
    const runs = await w.customRuns(name);
    const why = runs.map((r) => `${r.metadata.name ?? ""}: ${condition(r)?.message ?? ""}`).join("; ");
    assert.equal(pipelineCondition(pr)?.status, "True", `${pipelineCondition(pr)?.message ?? ""}; ${why}`);
    for (const r of runs) assert.ok(resultsOf(r)["revoked-at"], `${r.metadata.name ?? ""}: revoked`);
    return { pr, runs };
  } finally {
    provisioner.stop();
  }
}

/** A Tekton task named build that writes `line` into dist/`file` of the workspace `shared`. */
const buildTask = (file: string, line: string) => ({
  name: "build",
  workspaces: [{ name: "out", workspace: "shared" }],
  taskSpec: {
    workspaces: [{ name: "out" }],
    steps: [
      {
        name: "build",
        image: "busybox:1.37",
        script: `mkdir -p $(workspaces.out.path)/dist && echo ${line} > $(workspaces.out.path)/dist/${file}`,
      },
    ],
  },
});

const byTask = (runs: CustomRun[]) =>
  Object.fromEntries(runs.map((r) => [r.metadata.labels?.["tekton.dev/pipelineTask"] ?? "", r]));

test("README: the three ways to give a task its step run in one pipeline, under the README's trait and policy", async () => {
  const w = await world;
  const tasks = parse(examples.threeWays) as { name: string }[];
  assert.deepEqual(
    tasks.map((t) => t.name),
    ["publish", "whoami", "notes"],
  );
  // "The pipeline binds a workspace shared for the first": something must have put dist/ there.
  const build = buildTask("VERSION", "1.4.2");
  const [publish, ...rest] = tasks;
  const { pr, runs } = await runPipeline(
    w,
    "three-ways",
    {
      workspaces: [{ name: "shared" }],
      tasks: [build, { ...publish, runAfter: ["build"] }, ...rest],
      results: [{ name: "arn", value: "$(tasks.whoami.results.arn)" }],
    },
    "shared",
  );
  const steps = byTask(runs);
  assert.match(
    String(pipelineResults(pr).arn),
    /^arn:aws:sts::111122223333:assumed-role\/payments-deployer\//,
  );
  assert.equal(resultsOf(steps.publish ?? ({} as CustomRun)).uri, "s3://payments-artifacts/releases/");
  assert.equal(w.peer.getObject("payments-artifacts", "releases/VERSION")?.toString(), "1.4.2\n");
  assert.equal(
    w.peer.getObject("payments-artifacts", "releases/notes.txt")?.toString(),
    `published by ${steps.notes?.metadata.name ?? "?"}\n`,
  );
});

test("README: the clone/build → publish pipeline shares its workspace with the scoped step", async () => {
  const w = await world;
  const { spec } = parse(examples.workspaces) as { spec: unknown };
  await runPipeline(w, "build-publish", spec, "shared");
  assert.equal(
    w.peer.getObject("payments-artifacts", "releases/site/index.html")?.toString(),
    "<h1>hi</h1>\n",
  );
});

test("README: the pod template's step is placed and runs", async () => {
  const w = await world;
  const { spec } = parse(examples.podTemplate) as { spec: Record<string, unknown> };
  await created(w, {
    apiVersion: "scopedstep.dev/v1alpha1",
    kind: "ScopedStep",
    metadata: { name: "placed" },
    spec: { ...spec, image: "busybox:1.37", script: "id -u", application: "payments", component: "api" },
  });
  const { runs } = await runPipeline(w, "placed", {
    tasks: [
      {
        name: "placed",
        taskRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", name: "placed" },
      },
    ],
  });
  const pods = await w.pods();
  const pod = pods.find((p) => p.metadata?.labels?.["tekton.dev/customRun"] === runs[0]?.metadata.name);
  assert.ok(pod, "the step pod is there");
  assert.deepEqual(pod.spec?.nodeSelector, { "kubernetes.io/os": "linux" });
  assert.equal(pod.spec?.securityContext?.runAsUser, 4242);
});

test("README: the revoker roles line is a setting the controller loads", () => {
  const data = parse(examples.revokers) as Record<string, string>;
  const config = loadConfig(["--credentials=none"], {}, data);
  assert.deepEqual(config.awsRevokerRoles, [
    "arn:aws:iam::444455556666:role/scoped-step-revoker",
    "arn:aws:iam::555566667777:role/scoped-step-revoker",
  ]);
});

test("README: the external issuer example is a setting the controller loads, with the defaults it shows", () => {
  // The secret file is where the README's Deployment would mount it; here, a file of the test's.
  const secretFile = path.join(mkdtempSync(path.join(tmpdir(), "readme-idp-")), "client-secret");
  writeFileSync(secretFile, "client-secret-value");
  const text = examples.externalIssuer.replace("/var/run/secrets/scoped-step-idp/client-secret", secretFile);
  const data = parse(text) as Record<string, string>;
  const config = loadConfig(["--issuer-url=https://oidc.example.com/scoped-step"], {}, data);
  assert.equal(config.issuerMode, "external");
  assert.deepEqual(config.externalIssuer?.expect, {
    sub: "{subject}",
    "https://aws.amazon.com/source_identity": "{sourceIdentity}",
  });
  assert.deepEqual(config.externalIssuer?.parameters, { audience: "{audience}" });
  assert.equal(config.externalIssuer?.clientAuth, "client_secret_basic");
  const defaults = loadConfig(
    [],
    {},
    {
      ...data,
      "issuer-url": "https://oidc.example.com/scoped-step",
      "external-issuer": `{issuer: "${config.externalIssuer?.issuer ?? ""}", clientId: x, clientSecretFile: "${secretFile}"}`,
    },
  );
  assert.deepEqual(
    { ...defaults.externalIssuer, clientId: config.externalIssuer?.clientId },
    config.externalIssuer,
    "the example shows the defaults",
  );
});

// Applied as written, server-side, so that only its two keys are this test's and the keys Tekton's
// release ships stay. The example's default pod template sends every TaskRun and step pod of the
// cluster to a node labelled pool=ci, tolerating the taint ci: what the README says is around it is
// such a node, so the node is labelled first and every other test's pods still land. Its keys are
// removed again at the end.
test("README: Tekton's config-defaults example, applied, places a step pod as it places a TaskRun pod", async () => {
  const w = await world;
  const cm = parse(examples.tektonDefaults) as ApiObject & { data: Record<string, string> };
  assert.deepEqual(cm.metadata, { name: "config-defaults", namespace: "tekton-pipelines" });
  await c.core.patchNode(
    { name: nodeName, body: { metadata: { labels: { pool: "ci" } } } },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
  const manager = "readme-example";
  const applied = await applyRaw(c.kc, cm, manager);
  assert.equal(applied.status, 200, statusMessage(applied));
  try {
    await eventually(
      "the controller to read the example's defaults",
      () =>
        Promise.resolve(
          (w.controller?.output() ?? "")
            .split("\n")
            .some((l) => l.includes('"Tekton defaults read"') && l.includes('"tolerations"'))
            ? true
            : undefined,
        ),
      { timeoutMs: 120_000 },
    );
    const { pr, runs } = await runPipeline(w, "defaults", {
      tasks: [
        {
          name: "build",
          taskSpec: { steps: [{ name: "build", image: "busybox:1.37", script: "true" }] },
        },
        {
          name: "whoami",
          taskRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" },
          params: [
            { name: "image", value: "busybox:1.37" },
            { name: "script", value: "true" },
            { name: "application", value: "payments" },
            { name: "component", value: "api" },
          ],
        },
      ],
    });
    const pods = await w.pods();
    const stepPod = pods.find((p) => p.metadata?.labels?.["tekton.dev/customRun"] === runs[0]?.metadata.name);
    const taskRunPod = pods.find(
      (p) =>
        p.metadata?.labels?.["tekton.dev/pipelineRun"] === pr.metadata?.name &&
        p.metadata?.labels?.["tekton.dev/pipelineTask"] === "build",
    );
    for (const [what, pod] of [
      ["the step pod", stepPod],
      ["Tekton's TaskRun pod", taskRunPod],
    ] as const) {
      assert.ok(pod, `${what} is there`);
      assert.deepEqual(pod.spec?.nodeSelector, { pool: "ci" }, what);
      assert.ok(
        pod.spec?.tolerations?.some(
          (t) => t.key === "ci" && t.operator === "Exists" && t.effect === "NoSchedule",
        ),
        `${what}: ${JSON.stringify(pod.spec?.tolerations)}`,
      );
    }
    // And as the controller merges it under a step's own pod template.
    const defaults = parseTektonDefaults(cm.data, "ConfigMap tekton-pipelines/config-defaults");
    assert.equal(defaults.resolutionTimeoutMs, 60_000);
    const merged = withDefaultPodTemplate({ nodeSelector: { pool: "gpu" } }, defaults.podTemplate, "x");
    assert.deepEqual(merged.template, {
      nodeSelector: { pool: "gpu" },
      tolerations: [{ key: "ci", operator: "Exists", effect: "NoSchedule" }],
    });
  } finally {
    const removed = await applyRaw(c.kc, { ...cm, data: {} }, manager);
    assert.equal(removed.status, 200, statusMessage(removed));
    assert.equal(
      (removed.body as { data?: Record<string, string> }).data?.["default-pod-template"],
      undefined,
      "the example's keys are gone again",
    );
  }
});

test("README: the resolver example takes the wrapped ScopedStep example from git and runs it", async () => {
  const w = await world;
  // The README's repository, served where the cluster's git resolver clones github.com/example from.
  await gitDaemon(c.nodeIp, { "steps/s3-upload.yaml": examples.wrappedStep }, examplesGitPort);
  const [publish] = parse(examples.resolverRef) as { name: string; taskRef: { resolver?: string } }[];
  assert.equal(publish?.taskRef.resolver, "git");
  // It runs after a build that leaves dist/ in the shared workspace, as the README's pipelines do.
  const build = buildTask("ORIGIN", "from git");
  const { runs } = await runPipeline(
    w,
    "from-git",
    { workspaces: [{ name: "shared" }], tasks: [build, publish] },
    "shared",
  );
  assert.equal(runs[0]?.spec.customRef?.resolver, "git", "Tekton passes the resolver on");
  assert.equal(w.peer.getObject("payments-artifacts", "releases/from-git/ORIGIN")?.toString(), "from git\n");
});

test("README: the cluster resolver example takes the catalog's packaged s3-upload from its own namespace and runs it", async () => {
  const w = await world;
  // As the README's two commands publish it: the packaging the catalog ships, in scoped-step-catalog.
  const file = "catalog/scopedstep/s3-upload/0.1/s3-upload.task.yaml";
  const readme = await readFile("README.md", "utf8");
  assert.ok(readme.includes("kubectl create namespace scoped-step-catalog\n"));
  assert.ok(readme.includes(`kubectl apply -n scoped-step-catalog -f ${file}\n`));
  const ns = { apiVersion: "v1", kind: "Namespace", metadata: { name: "scoped-step-catalog" } };
  assert.equal((await createRaw(c.kc, ns)).status, 201, "the catalog's namespace is new");
  for (const doc of await readDocs(file)) {
    const res = await createRaw(c.kc, doc, { namespace: "scoped-step-catalog" });
    assert.equal(res.status, 201, `${file}: ${statusMessage(res)}`);
    assert.deepEqual(res.warnings, [], `${file}: Tekton's webhook warned`);
  }
  const [publish] = parse(examples.clusterRef) as { name: string; taskRef: { resolver?: string } }[];
  assert.equal(publish?.taskRef.resolver, "cluster");
  const { runs } = await runPipeline(
    w,
    "from-catalog",
    { workspaces: [{ name: "shared" }], tasks: [buildTask("CATALOG", "from the catalog"), publish] },
    "shared",
  );
  assert.equal(runs[0]?.spec.customRef?.resolver, "cluster", "Tekton passes the resolver on");
  assert.equal(resultsOf(runs[0] ?? ({} as CustomRun)).uri, "s3://payments-artifacts/releases/from-catalog/");
  assert.equal(
    w.peer.getObject("payments-artifacts", "releases/from-catalog/CATALOG")?.toString(),
    "from the catalog\n",
  );
});

test("README: every yaml example is one of those above", () => {
  assert.equal(blocks.length, Object.keys(examples).length, blocks.map((b) => b.heading).join(", "));
});

test("no credential or token the runs were issued was written to a log, status, event or pod", async () => {
  await assertNoSecretWritten(await world);
});
