import { test } from "node:test";
import assert from "node:assert/strict";
import type { V1Pod } from "@kubernetes/client-node";
import { isRunFailure } from "../../tasks/scoped-step/failure.ts";
import { keepPod } from "../../tasks/scoped-step/cached.ts";
import { podOutcome } from "../../tasks/scoped-step/outcome.ts";
import { buildStepPod } from "../../tasks/scoped-step/pod.ts";
import { stepFromDefinition } from "../../tasks/scoped-step/step.ts";
import type { CustomRun } from "../../tasks/scoped-step/types.ts";

const run: CustomRun = {
  apiVersion: "tekton.dev/v1beta1",
  kind: "CustomRun",
  metadata: { name: "deploy-1", namespace: "team", uid: "u-1" },
  spec: {},
};
const step = (podTemplate: unknown) =>
  stepFromDefinition(
    { image: "busybox", script: "true", application: "payments", component: "api", podTemplate },
    [],
    "customSpec",
  );

test("the pod template places the step pod; its securityContext can never make it root", () => {
  const template = {
    nodeSelector: { "kubernetes.io/arch": "amd64" },
    tolerations: [{ key: "ci", operator: "Exists", effect: "NoSchedule" }],
    affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] } },
    imagePullSecrets: [{ name: "registry" }],
    priorityClassName: "ci-high",
    runtimeClassName: "gvisor",
    topologySpreadConstraints: [{ maxSkew: 1, topologyKey: "zone", whenUnsatisfiable: "ScheduleAnyway" }],
    schedulerName: "batch",
    securityContext: {
      runAsUser: 1000,
      fsGroup: 2000,
      seccompProfile: { type: "Localhost", localhostProfile: "p.json" },
    },
  };
  const spec = buildStepPod({ run, step: step(template), attempt: 0 }).spec;
  assert.deepEqual(spec?.nodeSelector, template.nodeSelector);
  assert.deepEqual(spec?.tolerations, template.tolerations);
  assert.deepEqual(spec?.affinity, template.affinity);
  assert.deepEqual(spec?.imagePullSecrets, template.imagePullSecrets);
  assert.equal(spec?.priorityClassName, "ci-high");
  assert.equal(spec?.runtimeClassName, "gvisor");
  assert.deepEqual(spec?.topologySpreadConstraints, template.topologySpreadConstraints);
  assert.equal(spec?.schedulerName, "batch");
  assert.deepEqual(spec?.securityContext, {
    runAsUser: 1000,
    runAsGroup: 65532,
    fsGroup: 2000,
    seccompProfile: { type: "Localhost", localhostProfile: "p.json" },
    runAsNonRoot: true,
  });
  assert.equal(spec?.hostNetwork, undefined);
});

test("host namespaces, privilege and root are not in the template's vocabulary", () => {
  for (const [template, pattern] of [
    [{ hostNetwork: true }, /unknown field "hostNetwork"/],
    [{ hostPID: true }, /unknown field "hostPID"/],
    [{ securityContext: { runAsUser: 0 } }, /runAsUser: must be >= 1/],
    [{ securityContext: { runAsNonRoot: false } }, /unknown field "runAsNonRoot"/],
    [{ securityContext: { privileged: true } }, /unknown field "privileged"/],
    [
      { securityContext: { seccompProfile: { type: "Unconfined" } } },
      /must be one of RuntimeDefault, Localhost/,
    ],
  ] as const) {
    assert.throws(
      () => step(template),
      (err: unknown) => isRunFailure(err) && err.reason === "InvalidStepSpec" && pattern.test(err.message),
      JSON.stringify(template),
    );
  }
});

test("a step pod the scheduler cannot place says why, from its PodScheduled condition", () => {
  const pod: V1Pod = {
    metadata: { name: "deploy-1-pod" },
    status: {
      phase: "Pending",
      conditions: [
        {
          type: "PodScheduled",
          status: "False",
          reason: "Unschedulable",
          message: "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        },
      ],
    },
  };
  const out = podOutcome(keepPod(pod));
  assert.equal(out.phase, "pending");
  assert.match(
    out.phase === "pending" ? out.message : "",
    /^step pod deploy-1-pod cannot be scheduled yet \(Unschedulable: 0\/1 nodes are available: 1 node\(s\) didn't match Pod's node affinity\/selector\.\); check the step's podTemplate/,
  );
});
