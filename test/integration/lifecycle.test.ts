import { test } from "node:test";
import assert from "node:assert/strict";
import type { CustomRunSpec, Param } from "../../tasks/scoped-step/types.ts";
import { eventually } from "../support/wait.ts";
import {
  condition,
  identityParams,
  paymentsApp,
  resultsOf,
  startWorld,
  type World,
} from "../support/world.ts";

const world: Promise<World> = startWorld().then(async (w) => {
  await w.createApplication("payments", paymentsApp);
  return w;
});

type Way = "params" | "customSpec" | "ScopedStep";

/** The same step, said each of the three ways a run can say it. */
async function runSpec(
  w: World,
  way: Way,
  name: string,
  script: string,
  extra: Partial<CustomRunSpec> = {},
): Promise<Partial<CustomRunSpec>> {
  const definition = {
    params: [{ name: "greeting", default: "hello" }, { name: "application" }, { name: "component" }],
    results: [{ name: "message" }],
    image: "alpine:3",
    script,
    application: "$(params.application)",
    component: "$(params.component)",
  };
  if (way === "params") {
    const params: Param[] = [
      { name: "image", value: "alpine:3" },
      { name: "script", value: script.replaceAll("$(params.greeting)", "hello") },
      { name: "results", value: ["message"] },
      ...identityParams,
    ];
    return { params, ...extra };
  }
  if (way === "customSpec") {
    return {
      customRef: undefined,
      customSpec: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", spec: definition },
      params: identityParams,
      ...extra,
    };
  }
  await w.createScopedStep(name, definition);
  return {
    customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", name },
    params: identityParams,
    ...extra,
  };
}

for (const way of ["params", "customSpec", "ScopedStep"] as const) {
  const slug = way.toLowerCase();

  test(`a step defined by ${way} runs and succeeds with its results`, async () => {
    const w = await world;
    const name = `ok-${slug}`;
    await w.createRun(
      name,
      await runSpec(w, way, name, 'echo "$(params.greeting) from uid $(id -u)" > $(results.message.path)'),
    );
    const run = await w.waitDone(name);
    assert.equal(condition(run)?.status, "True", condition(run)?.message);
    assert.equal(condition(run)?.reason, "Succeeded");
    assert.equal(resultsOf(run).message, "hello from uid 65532", "the step ran as the pod's non-root user");
    assert.ok(run.status?.startTime && run.status.completionTime);
    assert.ok(new Date(run.status.startTime) >= new Date(String(run.metadata.creationTimestamp)));
    const finished = await w.waitForRun(
      name,
      "to drop its finalizer",
      (r) => !(r.metadata.finalizers ?? []).length,
    );
    assert.deepEqual(finished.metadata.finalizers ?? [], []);
    await w.waitForEvents(name, ["Started", "Succeeded"]);
  });

  test(`a step defined by ${way} that exits non-zero fails with its exit code and last lines`, async () => {
    const w = await world;
    const name = `fail-${slug}`;
    await w.createRun(
      name,
      await runSpec(w, way, name, 'echo "deploying"; echo "no such bucket" >&2; exit 7'),
    );
    const run = await w.waitDone(name);
    assert.equal(condition(run)?.status, "False");
    assert.equal(condition(run)?.reason, "Failed");
    assert.match(condition(run)?.message ?? "", /exited with code 7/);
    assert.match(condition(run)?.message ?? "", /no such bucket/);
    await w.waitForEvents(name, ["Failed"], "Warning");
  });

  test(`a step defined by ${way} is cancelled: pod deleted, CustomRunCancelled with the status message`, async () => {
    const w = await world;
    const name = `cancel-${slug}`;
    await w.createRun(name, await runSpec(w, way, name, "sleep 300"));
    await w.waitForRun(name, "to run", (r) => condition(r)?.reason === "Running");
    await w.patchRunSpec(name, {
      status: "RunCancelled",
      statusMessage: "CustomRun cancelled as the PipelineRun it belongs to has timed out.",
    });
    const run = await w.waitDone(name);
    assert.equal(condition(run)?.status, "False");
    assert.equal(condition(run)?.reason, "CustomRunCancelled");
    assert.equal(
      condition(run)?.message,
      "CustomRun cancelled as the PipelineRun it belongs to has timed out.",
    );
    // Gone once its processes end: at once when the step has started (the entrypoint passes
    // SIGTERM on), after the 30 s grace period when a loaded machine delivers it before then.
    await eventually(
      "the cancelled step pod to be gone",
      async () => ((await w.pods()).some((p) => p.metadata?.name === `${name}-pod`) ? undefined : true),
      { timeoutMs: 120_000 },
    );
    await w.waitForEvents(name, ["Cancelled"]);
  });
}

test("spec.timeout is enforced by the controller: CustomRunTimedOut and the pod deleted", async () => {
  const w = await world;
  await w.createRun("slow", {
    timeout: "3s",
    params: [{ name: "image", value: "alpine" }, { name: "script", value: "sleep 300" }, ...identityParams],
  });
  const run = await w.waitDone("slow");
  assert.equal(condition(run)?.reason, "CustomRunTimedOut");
  assert.match(condition(run)?.message ?? "", /timed out after 3s/);
  await eventually("the timed-out pod to be gone", async () =>
    (await w.pods()).some((p) => p.metadata?.name === "slow-pod") ? undefined : true,
  );
});

test("a pod that never starts times out too", async () => {
  const w = await world;
  await w.createRun("stuck", {
    timeout: "2s",
    params: [
      { name: "image", value: "kubelet.test/never-start" },
      { name: "script", value: "true" },
      ...identityParams,
    ],
  });
  const run = await w.waitDone("stuck");
  assert.equal(condition(run)?.reason, "CustomRunTimedOut");
});

test("retries re-run the step and record each failed attempt in retriesStatus", async () => {
  const w = await world;
  await w.createRun("flaky", {
    retries: 2,
    params: [
      { name: "image", value: "alpine" },
      { name: "script", value: "echo attempt; exit 3" },
      ...identityParams,
    ],
  });
  const run = await w.waitDone("flaky");
  assert.equal(condition(run)?.reason, "Failed");
  assert.equal(run.status?.retriesStatus?.length, 2);
  for (const attempt of run.status?.retriesStatus ?? []) {
    assert.equal(attempt.conditions?.[0]?.status, "False");
    assert.match(attempt.conditions?.[0]?.message ?? "", /code 3/);
    assert.ok(attempt.startTime && attempt.completionTime);
  }
  const names = (await w.pods()).map((p) => p.metadata?.name).filter((n) => n?.startsWith("flaky-"));
  assert.deepEqual(names.sort(), ["flaky-pod", "flaky-pod-retry1", "flaky-pod-retry2"]);
});

test("the timeout applies per attempt when retrying", async () => {
  const w = await world;
  await w.createRun("slow-retry", {
    retries: 1,
    timeout: "2s",
    params: [{ name: "image", value: "alpine" }, { name: "script", value: "sleep 300" }, ...identityParams],
  });
  const run = await w.waitDone("slow-retry");
  assert.equal(condition(run)?.reason, "CustomRunTimedOut");
  assert.equal(run.status?.retriesStatus?.length, 1);
  assert.equal(run.status?.retriesStatus?.[0]?.conditions?.[0]?.reason, "CustomRunTimedOut");
});

test("deleting a running run cleans up through the finalizer", async () => {
  const w = await world;
  await w.createRun("doomed", {
    params: [{ name: "image", value: "alpine" }, { name: "script", value: "sleep 300" }, ...identityParams],
  });
  await w.waitForRun("doomed", "to run", (r) => condition(r)?.reason === "Running");
  await w.deleteRun("doomed");
  await eventually("run and pod to be gone", async () => {
    const gone = await w.getRun("doomed").then(
      () => false,
      () => true,
    );
    const podGone = !(await w.pods()).some((p) => p.metadata?.name === "doomed-pod");
    return gone && podGone ? true : undefined;
  });
});

test("oversized results fail the run with ResultsTooLarge", async () => {
  const w = await world;
  await w.createRun("big", {
    params: [
      { name: "image", value: "alpine" },
      { name: "script", value: "head -c 5000 /dev/zero | tr '\\0' x > $(results.blob.path)" },
      { name: "results", value: ["blob"] },
      ...identityParams,
    ],
  });
  const run = await w.waitDone("big");
  assert.equal(condition(run)?.reason, "ResultsTooLarge");
  assert.match(condition(run)?.message ?? "", /at most 4096 bytes/);
});

test("a result file the step does not declare is not read, as in a TaskRun", async () => {
  const w = await world;
  await w.createRun("sneaky", {
    params: [
      { name: "image", value: "alpine" },
      { name: "script", value: "echo x > /tekton/results/other; echo ok > $(results.message.path)" },
      { name: "results", value: ["message"] },
      ...identityParams,
    ],
  });
  const run = await w.waitDone("sneaky");
  assert.equal(condition(run)?.reason, "Succeeded", condition(run)?.message);
  assert.equal(resultsOf(run).message, "ok");
  assert.equal(resultsOf(run).other, undefined);
});

test("a CustomRun for another custom task is left untouched", async () => {
  const w = await world;
  await w.createRun("foreign", {
    customRef: { apiVersion: "example.dev/v1", kind: "Other" },
    params: identityParams,
  });
  await w.createRun("marker", {
    params: [{ name: "image", value: "alpine" }, { name: "script", value: "true" }, ...identityParams],
  });
  await w.waitDone("marker");
  const foreign = await w.getRun("foreign");
  assert.equal(foreign.status, undefined);
  assert.equal(foreign.metadata.finalizers, undefined);
});
