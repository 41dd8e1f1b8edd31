// End to end with Tekton Pipelines' own controller (v1.15.1) on the cluster with a real node:
// PipelineRuns drive our CustomRuns, which mint real credentials against the loopback AWS peer, and
// both our step pods and Tekton's TaskRun pods run as containers from images built here (busybox
// for shell steps, Debian's aws CLI where a step calls AWS). What Tekton does is asserted as v1.15.1
// really does it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { credentialSecretName, podName } from "../../tasks/scoped-step/pod.ts";
import type { CustomRun } from "../../tasks/scoped-step/types.ts";
import { readDocs } from "../support/catalog.ts";
import { realCluster } from "../support/cluster.ts";
import { account, deployRole, sigv4 } from "../support/identity-world.ts";
import {
  assertNoSecretWritten,
  callerPipeline,
  pipelineCondition,
  pipelineResults,
  pipelineTask,
  startTektonWorld,
  type TektonWorld,
} from "../support/tekton.ts";
import { hostStorageClass, provisionHostPathClaims } from "../support/volumes.ts";
import { eventually } from "../support/wait.ts";
import { condition, resultsOf } from "../support/world.ts";

const scopedStep = { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" } as const;
const workerRole = `arn:aws:iam::${account}:role/payments-worker`;
const adminRole = `arn:aws:iam::${account}:role/admin`;

const component = (name: string, roleArn: string) => ({
  name,
  type: "webservice",
  traits: [
    {
      type: "scoped-identity",
      properties: { audience: "sts.amazonaws.com", aws: { roleArn, region: "eu-west-1" } },
    },
  ],
});

const { images } = await realCluster();
const world: Promise<TektonWorld> = startTektonWorld(
  {
    aws: { allowedRoleArns: [`arn:aws:iam::${account}:role/payments-*`], maxSessionDuration: 3600 },
    deliveryModes: ["env"],
  },
  { realNode: true },
).then(async (w) => {
  // A second role, trusted the same way, for the matrix over components.
  w.peer.createRole({
    arn: workerRole,
    trustPolicy: {
      Version: "2012-10-17",
      Statement: [
        {
          Effect: "Allow",
          Principal: { Federated: `arn:aws:iam::${account}:oidc-provider/${w.providerHost}` },
          Action: ["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"],
          Condition: { StringLike: { [`${w.providerHost}:sub`]: `system:scoped-step:${w.ns}:*` } },
        },
      ],
    },
  });
  await w.createApplication("payments", [
    component("api", deployRole),
    component("worker", workerRole),
    component("ops", adminRole),
  ]);
  return w;
});

const byTask = <T extends { metadata: { labels?: Record<string, string> } }>(runs: T[]) =>
  Object.fromEntries(runs.map((r) => [pipelineTask(r), r]));

/** A ScopedStep task given by params only, running `script` as the payments api component. */
const paramsTask = (name: string, script: string, results: string[] = [], componentName = "api") => ({
  name,
  taskRef: scopedStep,
  params: [
    { name: "image", value: images.busybox },
    { name: "script", value: script },
    { name: "results", value: results },
    { name: "application", value: "payments" },
    { name: "component", value: componentName },
  ],
});

async function credentialsGone(w: TektonWorld, run: CustomRun, attempt = 0): Promise<void> {
  const name = run.metadata.name ?? "";
  await eventually(
    `the credential Secret of ${name} to be deleted`,
    async () => ((await w.secretData(credentialSecretName(name, attempt))) ? undefined : true),
    { timeoutMs: 120_000 },
  );
}

async function podGone(w: TektonWorld, run: CustomRun): Promise<void> {
  const name = podName(run.metadata.name ?? "", 0);
  // A real kubelet stops the containers first; on a loaded machine that takes a while.
  await eventually(
    `step pod ${name} to be deleted`,
    async () => ((await w.pods()).some((p) => p.metadata?.name === name) ? undefined : true),
    { timeoutMs: 120_000 },
  );
}

test("a Pipeline uses the custom task three ways; later tasks, finally and the results see our identity", async () => {
  const w = await world;
  await w.createScopedStep("deploy-step", {
    params: [{ name: "application" }, { name: "component" }],
    results: [{ name: "caller" }],
    image: images.awscli,
    env: [{ name: "AWS_ENDPOINT_URL", value: w.peer.endpoint }],
    script: [
      "set -e",
      `${sigv4("sts")} -d "Action=GetCallerIdentity&Version=2011-06-15" "$AWS_ENDPOINT_URL" | sed -n 's:.*<Arn>\\(.*\\)</Arn>.*:\\1:p' > $(results.caller.path)`,
    ].join("\n"),
    application: "$(params.application)",
    component: "$(params.component)",
  });
  await w.createPipeline("release", {
    tasks: [
      {
        name: "deploy",
        taskRef: { ...scopedStep, name: "deploy-step" },
        params: [
          { name: "application", value: "payments" },
          { name: "component", value: "api" },
        ],
      },
      paramsTask("build", 'printf "built as %s" "$(id -u)" > $(results.message.path)', ["message"]),
      {
        name: "check",
        taskSpec: {
          ...scopedStep,
          spec: {
            results: [{ name: "region" }],
            image: images.busybox,
            script: 'printf %s "$AWS_REGION" > $(results.region.path)',
            application: "payments",
            component: "api",
          },
        },
      },
      {
        name: "report",
        params: [
          { name: "role", value: "$(tasks.deploy.results.aws-assumed-role-arn)" },
          { name: "caller", value: "$(tasks.deploy.results.caller)" },
          { name: "message", value: "$(tasks.build.results.message)" },
        ],
        taskSpec: {
          params: [{ name: "role" }, { name: "caller" }, { name: "message" }],
          results: [{ name: "verdict" }],
          steps: [
            {
              name: "compare",
              image: images.busybox,
              script: [
                'if [ "$(params.role)" = "$(params.caller)" ]; then v=same; else v="differ: $(params.role) vs $(params.caller)"; fi',
                'printf "%s; %s" "$v" "$(params.message)" > $(results.verdict.path)',
              ].join("\n"),
            },
          ],
        },
      },
    ],
    finally: [
      {
        name: "notify",
        params: [
          { name: "deploy", value: "$(tasks.deploy.status)" },
          { name: "overall", value: "$(tasks.status)" },
        ],
        taskSpec: {
          params: [{ name: "deploy" }, { name: "overall" }],
          results: [{ name: "seen" }],
          steps: [
            {
              name: "notify",
              image: images.busybox,
              script: 'printf "%s/%s" "$(params.deploy)" "$(params.overall)" > $(results.seen.path)',
            },
          ],
        },
      },
    ],
    results: [
      { name: "role", value: "$(tasks.deploy.results.aws-assumed-role-arn)" },
      { name: "subject", value: "$(tasks.build.results.identity-subject)" },
      { name: "region", value: "$(tasks.check.results.region)" },
      { name: "verdict", value: "$(tasks.report.results.verdict)" },
      { name: "notified", value: "$(finally.notify.results.seen)" },
    ],
  });
  await w.createPipelineRun("release-1", { pipelineRef: { name: "release" } });

  // Five tasks, three of them step pods with an init container each: slow on a loaded machine.
  const pr = await w.waitPipelineRunDone("release-1", 300_000);
  assert.equal(pipelineCondition(pr)?.status, "True", pipelineCondition(pr)?.message);
  assert.equal(pipelineCondition(pr)?.reason, "Succeeded");

  const runs = byTask(await w.customRuns("release-1"));
  assert.deepEqual(Object.keys(runs).sort(), ["build", "check", "deploy"]);
  const [deploy, build, check] = [runs.deploy, runs.build, runs.check] as [CustomRun, CustomRun, CustomRun];
  assert.deepEqual(
    deploy.spec.customRef,
    { ...scopedStep, name: "deploy-step" },
    "taskRef to a named ScopedStep",
  );
  assert.deepEqual(build.spec.customRef, scopedStep, "taskRef with params only");
  assert.equal(build.spec.customSpec, undefined);
  assert.equal(check.spec.customSpec?.kind, "ScopedStep", "inline taskSpec becomes customSpec");
  for (const run of [deploy, build, check]) {
    assert.equal(condition(run)?.reason, "Succeeded", condition(run)?.message);
    assert.equal(run.metadata.ownerReferences?.[0]?.kind, "PipelineRun");
    assert.equal(run.metadata.ownerReferences[0].uid, pr.metadata.uid);
    await credentialsGone(w, run);
  }

  const session = resultsOf(deploy)["aws-session-name"] ?? "";
  const assumed = `arn:aws:sts::${account}:assumed-role/payments-deployer/${session}`;
  assert.equal(resultsOf(deploy)["aws-assumed-role-arn"], assumed);
  assert.equal(resultsOf(deploy).caller, assumed, "the step called STS with the credentials it was given");
  assert.deepEqual(pipelineResults(pr), {
    role: assumed,
    subject: `system:scoped-step:${w.ns}:payments:api`,
    region: "eu-west-1",
    verdict: "same; built as 65532",
    notified: "Succeeded/Succeeded",
  });

  const taskRuns = byTask(await w.taskRuns("release-1"));
  assert.deepEqual(Object.keys(taskRuns).sort(), ["notify", "report"]);
  for (const tr of Object.values(taskRuns)) assert.equal(pipelineCondition(tr)?.reason, "Succeeded");
  assert.deepEqual(pr.status?.childReferences?.map((c) => `${c.kind}/${c.pipelineTaskName}`).sort(), [
    "CustomRun/build",
    "CustomRun/check",
    "CustomRun/deploy",
    "TaskRun/notify",
    "TaskRun/report",
  ]);

  // A result that parses as a JSON array of strings would become an array param downstream.
  for (const run of [deploy, build, check]) {
    for (const { name, value } of run.status?.results ?? []) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(value);
      } catch {
        parsed = undefined;
      }
      assert.equal(
        Array.isArray(parsed),
        false,
        `result ${name} of ${pipelineTask(run)} is not a JSON array`,
      );
    }
  }
});

test("a disallowed role fails our task with RoleNotAllowed and the PipelineRun fails", async () => {
  const w = await world;
  await w.createPipelineRun("forbidden-1", {
    pipelineSpec: {
      tasks: [
        paramsTask("escalate", "echo never runs", [], "ops"),
        { ...paramsTask("after", "echo never runs either"), runAfter: ["escalate"] },
      ],
    },
  });
  const pr = await w.waitPipelineRunDone("forbidden-1");
  assert.equal(pipelineCondition(pr)?.status, "False");
  assert.equal(pipelineCondition(pr)?.reason, "Failed");
  assert.match(pipelineCondition(pr)?.message ?? "", /Failed: 1.*Skipped: 1/);

  const runs = byTask(await w.customRuns("forbidden-1"));
  assert.deepEqual(Object.keys(runs), ["escalate"], "the dependent task never starts");
  const run = runs.escalate as CustomRun;
  assert.equal(condition(run)?.reason, "RoleNotAllowed");
  assert.match(condition(run)?.message ?? "", /role arn:aws:iam::111122223333:role\/admin is not allowed/);
  assert.equal(await w.secretData(credentialSecretName(run.metadata.name ?? "", 0)), undefined);
  const minted = w.peer
    .calls()
    .filter((c) => c.action === "AssumeRoleWithWebIdentity" && c.roleArn === adminRole);
  assert.deepEqual(minted, [], "nothing was minted for the disallowed role");
});

test("cancelling the PipelineRun cancels our running CustomRuns, deletes their pods and revokes", async () => {
  const w = await world;
  await w.createPipelineRun("cancel-1", {
    pipelineSpec: { tasks: [paramsTask("first", "sleep 300"), paramsTask("second", "sleep 300")] },
  });
  const running = await eventually("both CustomRuns to run with their credentials", async () => {
    const runs = await w.customRuns("cancel-1");
    if (runs.length !== 2 || !runs.every((r) => condition(r)?.reason === "Running")) return undefined;
    for (const r of runs)
      if (!(await w.secretData(credentialSecretName(r.metadata.name ?? "", 0)))) return undefined;
    return runs;
  });

  await w.patchPipelineRun("cancel-1", { status: "Cancelled" });
  const pr = await w.waitPipelineRunDone("cancel-1");
  assert.equal(pipelineCondition(pr)?.status, "False");
  assert.equal(pipelineCondition(pr)?.reason, "Cancelled");

  for (const before of running) {
    const run = await w.getRun(before.metadata.name ?? "");
    assert.equal(run.spec.status, "RunCancelled");
    assert.equal(condition(run)?.status, "False");
    assert.equal(condition(run)?.reason, "CustomRunCancelled");
    assert.equal(
      condition(run)?.message,
      run.spec.statusMessage,
      "the status message Tekton set is kept as the condition's message",
    );
    assert.equal(
      run.spec.statusMessage,
      "CustomRun cancelled as the PipelineRun it belongs to has been cancelled.",
    );
    await podGone(w, run);
    await credentialsGone(w, run);
  }
});

test("a PipelineRun timeout reaches our run as a cancellation; Tekton reports PipelineRunTimeout", async () => {
  const w = await world;
  await w.createPipelineRun("timeout-1", {
    timeouts: { pipeline: "5s" },
    pipelineSpec: { tasks: [paramsTask("wait", "sleep 300")] },
  });
  const pr = await w.waitPipelineRunDone("timeout-1");
  assert.equal(pipelineCondition(pr)?.status, "False");
  assert.equal(pipelineCondition(pr)?.reason, "PipelineRunTimeout");

  const [before] = await w.customRuns("timeout-1");
  assert.ok(before);
  assert.equal(before.spec.timeout, undefined, "Tekton leaves the CustomRun's own timeout unset");
  const run = await w.waitDone(before.metadata.name ?? "");
  assert.equal(condition(run)?.reason, "CustomRunCancelled");
  assert.equal(
    condition(run)?.message,
    "CustomRun cancelled as the PipelineRun it belongs to has timed out.",
  );
  await podGone(w, run);
  await credentialsGone(w, run);
});

test("a pipeline task timeout is enforced by our controller as CustomRunTimedOut", async () => {
  const w = await world;
  await w.createPipelineRun("task-timeout-1", {
    pipelineSpec: { tasks: [{ ...paramsTask("slow", "sleep 300"), timeout: "3s" }] },
  });
  const pr = await w.waitPipelineRunDone("task-timeout-1");
  assert.equal(pipelineCondition(pr)?.status, "False");
  assert.equal(pipelineCondition(pr)?.reason, "Failed");

  const [run] = await w.customRuns("task-timeout-1");
  assert.ok(run);
  assert.equal(run.spec.timeout, "3s", "Tekton passes the task's timeout on");
  assert.equal(run.spec.status, undefined, "Tekton did not cancel it: our controller timed it out");
  assert.equal(condition(run)?.reason, "CustomRunTimedOut");
  await podGone(w, run);
  await credentialsGone(w, run);
});

test("retries on a pipeline task re-run our step and record retriesStatus", async () => {
  const w = await world;
  await w.createPipelineRun("retry-1", {
    pipelineSpec: { tasks: [{ ...paramsTask("flaky", "echo attempt; exit 3"), retries: 2 }] },
  });
  const pr = await w.waitPipelineRunDone("retry-1");
  assert.equal(pipelineCondition(pr)?.reason, "Failed");

  const runs = await w.customRuns("retry-1");
  assert.equal(runs.length, 1, "one CustomRun: the custom task controller does the retrying");
  const run = runs[0] as CustomRun;
  assert.equal(run.spec.retries, 2);
  assert.equal(condition(run)?.reason, "Failed");
  assert.equal(run.status?.retriesStatus?.length, 2);
  for (const attempt of run.status?.retriesStatus ?? []) {
    assert.equal(attempt.conditions?.[0]?.status, "False");
    assert.match(attempt.conditions?.[0]?.message ?? "", /exited with code 3/);
  }
  const name = run.metadata.name ?? "";
  const pods = (await w.pods()).map((p) => p.metadata?.name).filter((n) => n?.startsWith(`${name}-pod`));
  assert.deepEqual(pods.sort(), [podName(name, 0), podName(name, 1), podName(name, 2)].sort());
  for (const attempt of [0, 1, 2]) await credentialsGone(w, run, attempt);
});

test("a matrix over two components gives each combination its own CustomRun and identity", async () => {
  const w = await world;
  await w.createPipelineRun("matrix-1", {
    pipelineSpec: {
      tasks: [
        {
          name: "fan",
          taskRef: scopedStep,
          params: [
            { name: "image", value: images.busybox },
            { name: "script", value: "true" },
            { name: "application", value: "payments" },
          ],
          matrix: { params: [{ name: "component", value: ["api", "worker"] }] },
        },
      ],
    },
  });
  const pr = await w.waitPipelineRunDone("matrix-1");
  assert.equal(pipelineCondition(pr)?.reason, "Succeeded", pipelineCondition(pr)?.message);

  const runs = await w.customRuns("matrix-1");
  assert.equal(runs.length, 2);
  const identities = runs
    .map((r) => {
      const given = r.spec.params?.find((p) => p.name === "component")?.value;
      const results = resultsOf(r);
      return {
        component: typeof given === "string" ? given : JSON.stringify(given),
        subject: results["identity-subject"],
        role: results["aws-role-arn"],
        session: results["aws-session-name"],
      };
    })
    .sort((a, b) => a.component.localeCompare(b.component));
  assert.deepEqual(
    identities.map(({ component: c, subject, role }) => ({ component: c, subject, role })),
    [
      { component: "api", subject: `system:scoped-step:${w.ns}:payments:api`, role: deployRole },
      { component: "worker", subject: `system:scoped-step:${w.ns}:payments:worker`, role: workerRole },
    ],
  );
  assert.notEqual(identities[0]?.session, identities[1]?.session, "each combination has its own session");
  for (const run of runs) await credentialsGone(w, run);
});

test("a step result that parses as a JSON array fails the run with ResultTypeMismatch", async () => {
  const w = await world;
  await w.createPipelineRun("array-1", {
    pipelineSpec: {
      tasks: [paramsTask("sneaky", `printf '["a","b"]' > $(results.list.path)`, ["list"])],
    },
  });
  const pr = await w.waitPipelineRunDone("array-1");
  assert.equal(pipelineCondition(pr)?.reason, "Failed");
  const [run] = await w.customRuns("array-1");
  assert.ok(run);
  assert.equal(condition(run)?.reason, "ResultTypeMismatch");
  assert.match(condition(run)?.message ?? "", /result list looks like a JSON array/);
  assert.equal(resultsOf(run).list, undefined, "the array-looking value is not published");
});

test("Tekton's own TaskRun pods: scripts, task and step results, a failing step skips the rest", async () => {
  const w = await world;
  const done = (name: string) =>
    eventually(`TaskRun ${name} to finish`, async () => {
      const tr = await w.getTaskRun(name);
      return ["True", "False"].includes(pipelineCondition(tr)?.status ?? "") ? tr : undefined;
    });

  await w.createTaskRun("steps-ok", {
    taskSpec: {
      results: [{ name: "greeting" }, { name: "from-step", value: "$(steps.second.results.note)" }],
      steps: [
        {
          name: "first",
          image: images.busybox,
          script: "#!/bin/sh\nprintf 'hello \"tekton\"\\n' > $(results.greeting.path)",
        },
        {
          name: "second",
          image: images.busybox,
          results: [{ name: "note" }],
          command: ["sh", "-c"],
          args: ['test -f /tekton/run/0/out && printf second > "$0"', "$(step.results.note.path)"],
        },
      ],
    },
  });
  const ok = await done("steps-ok");
  assert.equal(pipelineCondition(ok)?.reason, "Succeeded", pipelineCondition(ok)?.message);
  assert.deepEqual(
    Object.fromEntries((ok.status?.results ?? []).map((r) => [r.name, r.value])),
    { greeting: 'hello "tekton"\n', "from-step": "second" },
    "values exactly as written, trailing newline included; the second step ran after the first",
  );

  await w.createTaskRun("steps-fail", {
    taskSpec: {
      steps: [
        { name: "breaks", image: images.busybox, script: "echo broken >&2; exit 4" },
        { name: "never", image: images.busybox, script: "echo should not run" },
      ],
    },
  });
  const failed = await done("steps-fail");
  assert.equal(pipelineCondition(failed)?.status, "False");
  assert.equal(pipelineCondition(failed)?.reason, "StepFailed", "Tekton v1.15 names the failing part");
  const steps = failed.status?.steps ?? [];
  assert.equal(steps[0]?.terminated?.exitCode, 4);
  assert.equal(steps[1]?.terminationReason, "Skipped");
  const neverLog = await w.cluster.core.readNamespacedPodLog({
    namespace: w.ns,
    name: failed.status?.podName ?? "",
    container: "step-never",
  });
  assert.doesNotMatch(neverLog, /should not run/);
});

test("a PipelineRun's scoped-step task and TaskRun run as containers from locally built images", async () => {
  const w = await world;
  await w.createPipelineRun("on-node", callerPipeline(w, images));
  const pr = await w.waitPipelineRunDone("on-node", 300_000);
  const pods = await w.pods();
  const step = pods.find((p) => p.spec?.containers[0]?.image === images.awscli);
  const stepLog = step
    ? await w.cluster.core
        .readNamespacedPodLog({ namespace: w.ns, name: step.metadata?.name ?? "" })
        .catch((err: unknown) => String(err))
    : "no step pod";
  assert.equal(pipelineCondition(pr)?.status, "True", `${pipelineCondition(pr)?.message}\n${stepLog}`);
  assert.match(
    String(pipelineResults(pr).seen),
    /^arn:aws:sts::111122223333:assumed-role\/payments-deployer\/\S+ as 0$/,
    `the TaskRun saw the caller the AWS CLI reported with the minted credentials; step log:\n${stepLog}`,
  );
  const taskRunPod = pods.find((p) => p.metadata?.labels?.["tekton.dev/pipelineTask"] === "report");
  for (const pod of [step, taskRunPod]) {
    assert.ok(pod, "both tasks ran as pods");
    for (const c of pod.status?.containerStatuses ?? []) {
      assert.match(c.containerID ?? "", /^containerd:\/\//, `${c.name} ran in containerd`);
      assert.match(c.imageID ?? "", /^sha256:|@sha256:/, `${c.name} ran from an image`);
    }
  }
  assert.deepEqual(
    taskRunPod?.spec?.initContainers?.map((c) => c.image).filter((i) => i === images.tekton.entrypoint),
    [images.tekton.entrypoint],
    "Tekton's own entrypoint image prepared the TaskRun pod",
  );
});

/** The step pod's containers ran in containerd, `prepare` from the node's Tekton entrypoint image. */
async function ranOnNode(w: TektonWorld, run: string, image: string): Promise<void> {
  const pod = (await w.pods()).find((p) => p.metadata?.name === podName(run, 0));
  assert.ok(pod, `the step pod of ${run}`);
  assert.deepEqual(
    pod.spec?.initContainers?.map((c) => [c.name, c.image]),
    [["prepare", images.tekton.entrypoint]],
  );
  assert.equal(pod.spec?.containers[0]?.image, image);
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
  assert.equal(statuses.length, 2);
  for (const c of statuses) {
    assert.match(c.containerID ?? "", /^containerd:\/\//, `${c.name} ran in containerd`);
    assert.match(c.imageID ?? "", /^sha256:|@sha256:/, `${c.name} ran from an image`);
  }
}

const identity = [
  { name: "application", value: "payments" },
  { name: "component", value: "api" },
];

test("a step whose image has no shell runs its command and returns its results", async () => {
  const w = await world;
  const written = "hello from an image without a shell";
  await w.createRun("shell-less", {
    params: [
      { name: "image", value: images.static },
      { name: "command", value: ["/report", `--write=$(results.greeting.path)=${written}`] },
      { name: "results", value: ["greeting"] },
      ...identity,
    ],
  });
  const run = await w.waitDone("shell-less", 180_000);
  assert.equal(condition(run)?.reason, "Succeeded", condition(run)?.message);
  assert.equal(resultsOf(run).greeting, written);
  await ranOnNode(w, "shell-less", images.static);
});

test("a step whose image has no shell fails with its exit code and the last lines of its log", async () => {
  const w = await world;
  await w.createRun("shell-less-fails", {
    params: [
      { name: "image", value: images.static },
      { name: "command", value: ["/report", "--exit=3"] },
      ...identity,
    ],
  });
  const run = await w.waitDone("shell-less-fails", 180_000);
  assert.equal(condition(run)?.reason, "Failed");
  assert.match(condition(run)?.message ?? "", /step exited with code 3; last lines:\nargs: --exit=3\nenv: /);
  assert.doesNotMatch(condition(run)?.message ?? "", /StartedAt/);
  await ranOnNode(w, "shell-less-fails", images.static);
});

test("the catalog's s3-upload step runs in the aws CLI image and uploads with its scoped identity", async () => {
  const w = await world;
  const [doc] = await readDocs("catalog/scopedstep/s3-upload/0.1/s3-upload.yaml");
  await w.createScopedStep("s3-upload", doc?.spec);
  await w.createRun("catalog-upload", {
    customRef: { ...scopedStep, name: "s3-upload" },
    params: [
      { name: "bucket", value: "artifacts" },
      { name: "prefix", value: "catalog/" },
      // A file of the image itself (hack/cluster/images.ts writes it).
      { name: "source", value: "/etc/group" },
      { name: "image", value: images.awscli },
      { name: "extra-args", value: ["--endpoint-url", w.peer.endpoint] },
      ...identity,
    ],
  });
  const run = await w.waitDone("catalog-upload", 180_000);
  assert.equal(condition(run)?.reason, "Succeeded", condition(run)?.message);
  assert.equal(resultsOf(run).uri, "s3://artifacts/catalog/");
  assert.equal(w.peer.getObject("artifacts", "catalog/group")?.toString(), "root:x:0:\nnogroup:x:65534:\n");
  await ranOnNode(w, "catalog-upload", images.awscli);
  await credentialsGone(w, run);
});

/** A build (Tekton Task) writes a site into the shared workspace; a scoped step uploads it. */
const buildAndPublish = (endpoint: string) => {
  const upload = `${sigv4("s3")} -f -H "x-amz-content-sha256: UNSIGNED-PAYLOAD"`;
  return {
    workspaces: [{ name: "shared" }],
    params: [{ name: "version" }],
    tasks: [
      {
        name: "build",
        workspaces: [{ name: "output", workspace: "shared" }],
        params: [{ name: "version", value: "$(params.version)" }],
        taskSpec: {
          params: [{ name: "version" }],
          workspaces: [{ name: "output" }],
          steps: [
            {
              name: "build",
              image: images.busybox,
              script: [
                "set -e",
                "cd $(workspaces.output.path)",
                "mkdir -p site/css site/img",
                "printf '<h1>release $(params.version)</h1>' > site/index.html",
                "printf 'body { margin: 0 }' > site/css/main.css",
                "printf 'not a real png' > site/img/logo.png",
                "printf 'kept out of the site' > notes.txt",
              ].join("\n"),
            },
          ],
        },
      },
      {
        name: "publish",
        runAfter: ["build"],
        workspaces: [{ name: "site", workspace: "shared", subPath: "site" }],
        params: [{ name: "version", value: "$(params.version)" }],
        taskSpec: {
          ...scopedStep,
          spec: {
            params: [{ name: "version" }],
            workspaces: [{ name: "site", readOnly: true, description: "the built site" }],
            results: [{ name: "uploaded" }, { name: "claim" }],
            image: images.awscli,
            application: "payments",
            component: "api",
            script: [
              "set -e",
              "cd $(workspaces.site.path)",
              "n=0",
              "for f in $(find . -type f | sort); do",
              `  ${upload} -T "$f" "${endpoint}/artifacts/site/$(params.version)/\${f#./}"`,
              "  n=$((n + 1))",
              "done",
              "printf %s $n > $(results.uploaded.path)",
              "printf %s '$(workspaces.site.claim)' > $(results.claim.path)",
              // The workspace is read-only here: the step cannot change what the build wrote.
              "! touch index.html 2>/dev/null",
            ].join("\n"),
          },
        },
      },
    ],
    results: [
      { name: "uploaded", value: "$(tasks.publish.results.uploaded)" },
      { name: "claim", value: "$(tasks.publish.results.claim)" },
    ],
  };
};

const siteFiles = {
  "index.html": (version: string) => `<h1>release ${version}</h1>`,
  "css/main.css": () => "body { margin: 0 }",
  "img/logo.png": () => "not a real png",
};

for (const binding of ["persistentVolumeClaim", "volumeClaimTemplate"] as const) {
  test(`a build TaskRun and our publish step share a ${binding} workspace: the bucket holds exactly the files the build wrote`, async () => {
    const w = await world;
    const c = await realCluster();
    const provisioner = provisionHostPathClaims(c, w.ns);
    try {
      const claimSpec = {
        accessModes: ["ReadWriteOnce"],
        storageClassName: hostStorageClass,
        resources: { requests: { storage: "64Mi" } },
      };
      const version = binding === "persistentVolumeClaim" ? "1.0.0" : "2.0.0";
      if (binding === "persistentVolumeClaim") {
        await c.core.createNamespacedPersistentVolumeClaim({
          namespace: w.ns,
          body: { metadata: { name: "site-source" }, spec: claimSpec },
        });
      }
      const name = `site-${binding.toLowerCase()}`;
      await w.createPipelineRun(name, {
        pipelineSpec: buildAndPublish(w.peer.endpoint),
        params: [{ name: "version", value: version }],
        workspaces: [
          binding === "persistentVolumeClaim"
            ? { name: "shared", persistentVolumeClaim: { claimName: "site-source" } }
            : { name: "shared", volumeClaimTemplate: { metadata: { name: "site" }, spec: claimSpec } },
        ],
      });
      const pr = await w.waitPipelineRunDone(name, 300_000);
      const [run] = await w.customRuns(name);
      assert.equal(
        pipelineCondition(pr)?.status,
        "True",
        `${pipelineCondition(pr)?.message}; run: ${condition(run ?? ({} as CustomRun))?.message}`,
      );

      // What Tekton passed on: a claim in both cases (it makes the claim of a template itself),
      // and the affinity assistant our pod was placed beside.
      assert.ok(run);
      const bound = (run.spec.workspaces ?? []) as {
        name: string;
        subPath?: string;
        persistentVolumeClaim?: { claimName: string };
      }[];
      assert.equal(bound.length, 1);
      assert.equal(bound[0]?.subPath, "site");
      const claim = bound[0]?.persistentVolumeClaim?.claimName ?? "";
      if (binding === "persistentVolumeClaim") assert.equal(claim, "site-source");
      else assert.notEqual(claim, "", "Tekton bound the claim it made from the template");
      assert.equal(pipelineResults(pr).claim, claim, "$(workspaces.site.claim) is the claim Tekton passed");
      assert.match(
        run.metadata.annotations?.["pipeline.tekton.dev/affinity-assistant"] ?? "",
        /^affinity-assistant-/,
      );

      assert.equal(pipelineResults(pr).uploaded, String(Object.keys(siteFiles).length));
      for (const [file, content] of Object.entries(siteFiles)) {
        assert.equal(
          w.peer.getObject("artifacts", `site/${version}/${file}`)?.toString(),
          content(version),
          file,
        );
      }
      const put = w.peer
        .calls()
        .filter(
          (call) =>
            call.action === "PutObject" &&
            call.outcome === "ok" &&
            call.resource?.includes(`/site/${version}/`),
        )
        .map((call) => call.resource)
        .sort();
      assert.deepEqual(
        put,
        Object.keys(siteFiles)
          .map((f) => `arn:aws:s3:::artifacts/site/${version}/${f}`)
          .sort(),
        "nothing outside the build's site was uploaded",
      );
    } finally {
      provisioner.stop();
    }
  });
}

test("the pod template places the step on the real scheduler; a step it cannot place says why, then times out", async () => {
  const w = await world;
  const step = (name: string, nodeSelector: Record<string, string>) =>
    w.createRun(name, {
      customRef: undefined,
      customSpec: {
        ...scopedStep,
        spec: {
          image: images.busybox,
          script: "id -u > $(results.uid.path)",
          results: [{ name: "uid" }],
          application: "payments",
          component: "api",
          podTemplate: {
            nodeSelector,
            tolerations: [{ key: "dedicated", operator: "Equal", value: "ci", effect: "NoSchedule" }],
            securityContext: { runAsUser: 4242 },
          },
        },
      },
      timeout: "60s",
    });
  await step("placed", { "kubernetes.io/os": "linux" });
  await step("nowhere", { "scopedstep.dev/pool": "gpu" });

  const placed = await w.waitDone("placed");
  assert.equal(condition(placed)?.reason, "Succeeded", condition(placed)?.message);
  assert.equal(resultsOf(placed).uid, "4242", "the template's securityContext took effect in the container");

  const waiting = await w.waitForRun("nowhere", "to say why its pod waits", (r) =>
    /cannot be scheduled yet/.test(condition(r)?.message ?? ""),
  );
  assert.equal(condition(waiting)?.status, "Unknown");
  assert.match(
    condition(waiting)?.message ?? "",
    /step pod nowhere-pod cannot be scheduled yet \(Unschedulable: 0\/1 nodes are available: 1 node\(s\) didn't match Pod's node affinity\/selector/,
  );
  const ended = await w.waitDone("nowhere", 120_000);
  assert.equal(condition(ended)?.reason, "CustomRunTimedOut");
  await podGone(w, ended);
  await credentialsGone(w, ended);
});

test("no credential or token the runs were issued was written to a log, status, event or pod", async () => {
  await assertNoSecretWritten(await world);
});
