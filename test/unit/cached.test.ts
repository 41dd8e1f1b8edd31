// What the controller keeps in memory of runs and pods, and when a status write would change nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { V1Pod } from "@kubernetes/client-node";
import { keepPod, keepRun, settledRun } from "../../tasks/scoped-step/cached.ts";
import { podOutcome } from "../../tasks/scoped-step/outcome.ts";
import { annotations } from "../../tasks/scoped-step/pod.ts";
import { sameStatus, stepState, withStepState } from "../../tasks/scoped-step/status.ts";
import { canonicalJson, sameJson } from "../../tasks/scoped-step/canonical.ts";
import type { CustomRun, CustomRunStatus } from "../../tasks/scoped-step/types.ts";

const run = (status: CustomRunStatus | undefined, kind = "ScopedStep"): CustomRun => ({
  apiVersion: "tekton.dev/v1beta1",
  kind: "CustomRun",
  metadata: {
    name: "deploy",
    namespace: "team-a",
    uid: "u-1",
    resourceVersion: "42",
    finalizers: ["scopedstep.dev/cleanup"],
    managedFields: [{ manager: "tekton" }],
    labels: { "tekton.dev/pipelineRun": "pr" },
  },
  spec: {
    customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind },
    params: [{ name: "script", value: "x".repeat(1000) }],
  },
  ...(status ? { status } : {}),
});

const done = (credentialState: "active" | "revoked"): CustomRunStatus =>
  withStepState(
    {
      conditions: [{ type: "Succeeded", status: "True", reason: "Succeeded", message: "ok" }],
      results: [{ name: "out", value: "y".repeat(1000) }],
      retriesStatus: [{ conditions: [{ type: "Succeeded", status: "False", reason: "Failed" }] }],
    },
    {
      credential: {
        provider: "aws",
        attempt: 1,
        state: credentialState,
        intent: {},
        results: {},
      },
    },
  );

test("runs of other custom tasks are not kept", () => {
  assert.equal(keepRun(run(undefined, "SomethingElse")), undefined);
});

test("a run in progress is kept whole but for its managedFields", () => {
  const kept = keepRun(run(undefined));
  assert.equal(kept?.metadata.managedFields, undefined);
  assert.deepEqual(kept?.spec, run(undefined).spec);
});

test("a finished run whose credential is live is kept whole: its revocation still writes status", () => {
  assert.deepEqual(keepRun(run(done("active")))?.status, done("active"));
});

test("a finished, revoked run shrinks to a tombstone that still reads as ended, with its attempts and finalizer", () => {
  const kept = keepRun(run(done("revoked")));
  assert.ok(kept);
  assert.equal(kept.status?.results, undefined);
  assert.equal(kept.spec.params, undefined);
  assert.equal(kept.metadata.labels, undefined);
  assert.deepEqual(kept.metadata.finalizers, ["scopedstep.dev/cleanup"]);
  assert.equal(kept.status?.retriesStatus?.length, 1);
  assert.equal(kept.status?.conditions?.[0]?.reason, "Succeeded");
  assert.equal(stepState(kept.status ?? {}).credential?.state, "revoked");
  assert.ok(JSON.stringify(kept).length < JSON.stringify(run(done("revoked"))).length / 4);
});

test("a run is forgotten only once finished, revoked, released and not being deleted", () => {
  const released = (r: CustomRun): CustomRun => {
    const copy = structuredClone(r);
    copy.metadata.finalizers = [];
    return copy;
  };
  assert.equal(settledRun(released(run(done("revoked")))), true);
  const refused = released(
    run({ conditions: [{ type: "Succeeded", status: "False", reason: "RoleNotAllowed" }] }),
  );
  assert.equal(settledRun(refused), true, "ended before anything was minted");
  assert.equal(settledRun(run(done("revoked"))), false, "the finalizer is still to be released");
  assert.equal(settledRun(released(run(done("active")))), false, "the credential is still live");
  assert.equal(settledRun(released(run(undefined))), false, "in progress");
  const deleting = released(run(done("revoked")));
  deleting.metadata.deletionTimestamp = new Date("2026-11-30T00:00:00Z");
  assert.equal(settledRun(deleting), false, "being deleted");
  assert.equal(settledRun(released(run(done("revoked"), "SomethingElse"))), false, "not ours");
});

test("a step pod keeps what its outcome is read from, and nothing of its spec but the step image", () => {
  const pod: V1Pod = {
    metadata: {
      name: "deploy-pod",
      namespace: "team-a",
      annotations: { [annotations.results]: "out", "other/annotation": "z".repeat(500) },
      ownerReferences: [{ apiVersion: "tekton.dev/v1beta1", kind: "CustomRun", name: "deploy", uid: "u-1" }],
    },
    spec: {
      containers: [{ name: "step", image: "alpine", env: [{ name: "A", value: "b" }] }],
      volumes: [{ name: "v", emptyDir: {} }],
    },
    status: {
      phase: "Succeeded",
      containerStatuses: [
        {
          name: "step",
          image: "alpine",
          imageID: "",
          ready: false,
          restartCount: 0,
          state: { terminated: { exitCode: 0, message: '[{"key":"out","value":"hi"}]' } },
        },
      ],
    },
  };
  const kept = keepPod(pod);
  assert.deepEqual(podOutcome(kept), podOutcome(pod));
  assert.deepEqual(kept.metadata?.annotations, { [annotations.results]: "out" });
  assert.deepEqual(kept.spec, { containers: [{ name: "step", image: "alpine" }] });
  assert.deepEqual(kept.metadata?.ownerReferences, pod.metadata?.ownerReferences);
});

test("a status is the same whatever the order of its keys, so an unchanged one is not written", () => {
  const ours: CustomRunStatus = { startTime: "t", conditions: [{ type: "Succeeded", status: "Unknown" }] };
  const asServed = JSON.parse(
    '{"conditions":[{"status":"Unknown","type":"Succeeded"}],"startTime":"t"}',
  ) as CustomRunStatus;
  assert.ok(sameStatus(asServed, ours));
  assert.ok(!sameStatus(asServed, { ...ours, startTime: "u" }));
});

test("sameJson says what comparing canonical JSON says, without writing it", () => {
  const at = new Date("2026-01-01T00:00:00.000Z");
  const values: unknown[] = [
    {},
    { a: 1 },
    { a: 1, b: undefined },
    { b: undefined, a: 1 },
    { a: "1" },
    { a: [1, 2] },
    { a: [2, 1] },
    { a: [1, 2, 3] },
    { a: [1, undefined] },
    { a: [1, null] },
    { a: { b: { c: "d" } } },
    { a: { b: { c: "e" } } },
    { a: { b: {} } },
    { a: null },
    { when: at },
    { when: at.toISOString() },
    { when: "2026-01-02T00:00:00.000Z" },
    [],
    [{}],
    "x",
    1,
    true,
    null,
  ];
  for (const a of values)
    for (const b of values)
      assert.equal(
        sameJson(a, b),
        canonicalJson(a) === canonicalJson(b),
        `${canonicalJson(a)} vs ${canonicalJson(b)}`,
      );
});
