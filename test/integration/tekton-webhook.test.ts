// Tekton Pipelines installed on the cluster with a real node as its release installs it
// (hack/cluster/tekton-install.ts): the controller, the events controller and the admission webhook
// run as Deployments from the images built here, and every Tekton object written to the cluster is
// validated and defaulted by the real webhook, which kube-apiserver calls through its Service.
import { readdir, readFile } from "node:fs/promises";
import { test } from "node:test";
import assert from "node:assert/strict";
import { AppsV1Api } from "@kubernetes/client-node";
import { statusMessage } from "../../hack/cluster/tekton-install.ts";
import { realCluster, testNamespace } from "../support/cluster.ts";
import { realTekton } from "../support/tekton.ts";

const v1 = { group: "tekton.dev", version: "v1" } as const;
const denied = 'admission webhook "validation.webhook.pipeline.tekton.dev" denied the request';
const step = { name: "hello", image: "busybox", script: "echo hello" };

async function setUp() {
  const [cluster, tekton] = await Promise.all([realCluster(), realTekton()]);
  const namespace = await testNamespace(cluster, "webhook");
  const plural = (kind: string) => `${kind.toLowerCase()}s`;
  return {
    cluster,
    tekton,
    create: (kind: "Pipeline" | "PipelineRun", name: string, spec: Record<string, unknown>) =>
      cluster.objects.createNamespacedCustomObject({
        ...v1,
        namespace,
        plural: plural(kind),
        body: { apiVersion: "tekton.dev/v1", kind, metadata: { name }, spec },
      }),
    read: async <T>(kind: "PipelineRun", name: string) =>
      (await cluster.objects.getNamespacedCustomObject({
        ...v1,
        namespace,
        plural: plural(kind),
        name,
      })) as T,
  };
}

/** The API server's message when it refuses the create, or fails the test when it stores it. */
async function refusal(create: Promise<unknown>): Promise<string> {
  return create.then(
    () => assert.fail("stored, though Tekton's webhook should have refused it"),
    statusMessage,
  );
}

test("Tekton's controller, events controller, webhook and resolvers run as Deployments from the images built here", async (t) => {
  const { cluster, tekton } = await setUp();
  t.diagnostic(`Tekton ready ${(tekton.readyMs / 1000).toFixed(1)} s after the first apply`);
  const apps = cluster.kc.makeApiClient(AppsV1Api);
  const images = cluster.images.tekton;
  const want: Record<string, string> = {
    "tekton-pipelines/tekton-pipelines-controller": images.controller,
    "tekton-pipelines/tekton-events-controller": images.events,
    "tekton-pipelines/tekton-pipelines-webhook": images.webhook,
    "tekton-pipelines-resolvers/tekton-pipelines-remote-resolvers": images.resolvers,
  };
  assert.deepEqual(tekton.deployments.toSorted(), Object.keys(want).sort());
  for (const [key, image] of Object.entries(want)) {
    const [namespace = "", name = ""] = key.split("/");
    const d = await apps.readNamespacedDeployment({ namespace, name });
    assert.equal(d.spec?.template.spec?.containers[0]?.image, image, `${name} runs the local image`);
    assert.ok((d.status?.availableReplicas ?? 0) >= 1, `${name} is available`);
    const pods = await cluster.core.listNamespacedPod({
      namespace,
      labelSelector: `app.kubernetes.io/name=${d.spec?.selector.matchLabels?.["app.kubernetes.io/name"] ?? ""}`,
    });
    const running = pods.items.filter((p) => p.status?.phase === "Running");
    assert.ok(running.length >= 1, `${name} has a running pod`);
    for (const p of running)
      assert.match(
        p.status?.containerStatuses?.[0]?.containerID ?? "",
        /^containerd:\/\//,
        `${name} in containerd`,
      );
  }
  const args = (
    await apps.readNamespacedDeployment({
      namespace: "tekton-pipelines",
      name: "tekton-pipelines-controller",
    })
  ).spec?.template.spec?.containers[0]?.args;
  for (const [flag, image] of [
    ["-entrypoint-image", images.entrypoint],
    ["-nop-image", images.nop],
    ["-workingdirinit-image", images.workingdirinit],
    ["-sidecarlogresults-image", images.sidecarlogresults],
    ["-shell-image", cluster.images.busybox],
  ] as const)
    assert.equal(args?.[args.indexOf(flag) + 1], image, `the controller's ${flag} is the local image`);

  // Their memory, reported and not asserted (it varies with the load): each program's resident
  // set, read in /proc, since the run's PID namespace holds the node's containers. (The kubelet's
  // stats summary reports 0 to 11 MiB working sets for them with the cgroup v1 hierarchies here.)
  for (const pid of (await readdir("/proc")).filter((d) => /^\d+$/.test(d))) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (!cmd.startsWith("/ko-app/")) continue;
    const rss = /VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, "utf8").catch(() => ""))?.[1];
    t.diagnostic(`${cmd.split("\0")[0] ?? ""}: ${(Number(rss ?? 0) / 1024).toFixed(0)} MiB resident`);
  }
});

test("Tekton's webhook refuses a Pipeline whose task takes a result of a task the pipeline does not have", async () => {
  const { create } = await setUp();
  const message = await refusal(
    create("Pipeline", "unknown-result", {
      tasks: [
        { name: "build", taskSpec: { steps: [step] } },
        {
          name: "publish",
          params: [{ name: "digest", value: "$(tasks.compile.results.digest)" }],
          taskSpec: { params: [{ name: "digest" }], steps: [step] },
        },
      ],
    }),
  );
  assert.ok(message.includes(denied), message);
  assert.match(message, /task publish depends on compile but compile wasn't present in Pipeline/, message);
});

test("Tekton's webhook refuses a Pipeline param of a type Tekton does not have", async () => {
  const { create } = await setUp();
  const message = await refusal(
    create("Pipeline", "bad-param-type", {
      params: [{ name: "count", type: "integer" }],
      tasks: [{ name: "build", taskSpec: { steps: [step] } }],
    }),
  );
  assert.ok(message.includes(denied), message);
  assert.match(message, /invalid value: integer: .*params\.count\.type/, message);
});

interface StoredRun {
  spec: {
    pipelineSpec: { tasks: { taskRef?: unknown }[] };
    timeouts?: { pipeline?: string };
    taskRunTemplate?: { serviceAccountName?: string };
  };
}

test("Tekton's webhook gives a PipelineRun config-defaults' timeout and service account", async () => {
  const { create, read } = await setUp();
  // Pending: the controller leaves it alone; only what admission wrote is read back.
  await create("PipelineRun", "defaulted", {
    status: "PipelineRunPending",
    pipelineSpec: { tasks: [{ name: "build", taskSpec: { steps: [step] } }] },
  });
  const pr = await read<StoredRun>("PipelineRun", "defaulted");
  // config-defaults as the release ships it: default-timeout-minutes 60, default-service-account default.
  assert.equal(pr.spec.timeouts?.pipeline, "1h0m0s");
  assert.equal(pr.spec.taskRunTemplate?.serviceAccountName, "default");
});

test("Tekton's webhook admits a PipelineRun whose pipeline task is a ScopedStep (a custom task)", async () => {
  const { create, read } = await setUp();
  const task = {
    name: "whoami",
    taskRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" },
    params: [
      { name: "image", value: "amazon/aws-cli" },
      {
        name: "script",
        value: "aws sts get-caller-identity --query Arn --output text > $(results.arn.path)",
      },
      { name: "results", value: ["arn"] },
      { name: "application", value: "payments" },
      { name: "component", value: "api" },
    ],
  };
  const pending = (t: Record<string, unknown>) => ({
    status: "PipelineRunPending",
    pipelineSpec: { tasks: [t] },
  });
  await create("PipelineRun", "custom-task", pending(task));
  const pr = await read<StoredRun>("PipelineRun", "custom-task");
  assert.deepEqual(
    pr.spec.pipelineSpec.tasks[0]?.taskRef,
    task.taskRef,
    "the custom task ref kept as written",
  );
  assert.equal(pr.spec.timeouts?.pipeline, "1h0m0s", "admitted through the webhook, which defaulted it");

  // The same task without its apiVersion is no custom task Tekton can route: refused.
  const message = await refusal(
    create(
      "PipelineRun",
      "custom-task-no-api-version",
      pending({ ...task, taskRef: { kind: "ScopedStep" } }),
    ),
  );
  assert.ok(message.includes(denied), message);
  assert.match(message, /custom task ref must specify apiVersion: .*taskRef\.apiVersion/, message);
});
