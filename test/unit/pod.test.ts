import { test } from "node:test";
import assert from "node:assert/strict";
import { defaultEntrypointImage, scriptFileContent } from "../../tasks/scoped-step/entrypoint.ts";
import { annotations, boundedName, buildStepPod, podName } from "../../tasks/scoped-step/pod.ts";
import { stepFromParams } from "../../tasks/scoped-step/step.ts";
import type { CustomRun } from "../../tasks/scoped-step/types.ts";

const run: CustomRun = {
  apiVersion: "tekton.dev/v1beta1",
  kind: "CustomRun",
  metadata: {
    name: "build-deploy",
    namespace: "team-a",
    uid: "uid-1",
    labels: { "tekton.dev/pipelineRun": "pr-1", "tekton.dev/pipelineTask": "deploy", "other.io/x": "y" },
  },
  spec: { serviceAccountName: "deployer" },
};
const step = stepFromParams([
  { name: "image", value: "alpine:3" },
  { name: "script", value: "echo hi" },
  { name: "application", value: "payments" },
  { name: "component", value: "api" },
]);

test("the step pod is owned by the run, hardened, and carries the pipeline labels", () => {
  const pod = buildStepPod({ run, step, attempt: 0 });
  assert.equal(pod.metadata?.name, "build-deploy-pod");
  assert.deepEqual(pod.metadata?.ownerReferences?.[0], {
    apiVersion: "tekton.dev/v1beta1",
    kind: "CustomRun",
    name: "build-deploy",
    uid: "uid-1",
    controller: true,
    blockOwnerDeletion: true,
  });
  assert.equal(pod.metadata?.labels?.["tekton.dev/pipelineRun"], "pr-1");
  assert.equal(pod.metadata?.labels?.["tekton.dev/customRun"], "build-deploy");
  assert.equal(pod.metadata?.labels?.["other.io/x"], undefined);
  assert.equal(pod.spec?.restartPolicy, "Never");
  assert.equal(pod.spec?.serviceAccountName, "deployer");
  assert.equal(pod.spec?.automountServiceAccountToken, false);
  const c = pod.spec?.containers[0];
  assert.equal(c?.securityContext?.readOnlyRootFilesystem, true);
  assert.equal(c?.securityContext?.allowPrivilegeEscalation, false);
  assert.deepEqual(c?.securityContext?.capabilities?.drop, ["ALL"]);
  assert.equal(pod.spec?.securityContext?.runAsNonRoot, true);
  assert.deepEqual(
    c?.volumeMounts?.map((m) => [m.mountPath, m.readOnly ?? false]),
    [
      ["/tekton/bin", true],
      ["/tekton/steps", true],
      ["/tekton/run", false],
      ["/tekton/results", false],
      ["/tmp", false],
      ["/workspace", false],
      ["/tekton/scripts", true],
    ],
  );
});

test("the step runs Tekton's entrypoint, which the init container prepare copies from its image", () => {
  const pod = buildStepPod({ run, step, attempt: 0, entrypointImage: "registry.example/entrypoint:v1" });
  const prepare = pod.spec?.initContainers?.[0];
  assert.equal(prepare?.name, "prepare");
  assert.equal(prepare?.image, "registry.example/entrypoint:v1");
  assert.deepEqual(prepare?.command, [
    "/ko-app/entrypoint",
    "init",
    "/ko-app/entrypoint",
    "/tekton/bin/entrypoint",
    "step-step",
  ]);
  assert.equal(prepare?.securityContext?.readOnlyRootFilesystem, true);
  const c = pod.spec?.containers[0];
  assert.deepEqual(c?.command, ["/tekton/bin/entrypoint"]);
  assert.deepEqual(c?.args?.slice(-3), ["-entrypoint", "/tekton/scripts/step", "--"]);
  assert.equal(c?.terminationMessagePath, "/tekton/termination");
  assert.equal(
    buildStepPod({ run, step, attempt: 0 }).spec?.initContainers?.[0]?.image,
    defaultEntrypointImage,
  );
});

test("a script reaches /tekton/scripts/step through the downward API, with sh and set -e unless it says #!", () => {
  const pod = buildStepPod({ run, step, attempt: 0 });
  assert.equal(pod.metadata?.annotations?.[annotations.script], "#!/bin/sh\nset -e\necho hi");
  const volume = pod.spec?.volumes?.find((v) => v.name === "tekton-scripts");
  assert.deepEqual(volume?.downwardAPI?.items, [
    { path: "step", fieldRef: { fieldPath: `metadata.annotations['${annotations.script}']` }, mode: 0o555 },
  ]);
  assert.equal(scriptFileContent("#!/usr/bin/env python3\nprint(1)"), "#!/usr/bin/env python3\nprint(1)");
});

test("a command step runs its command under the entrypoint: no shell, declared results named", () => {
  const s = {
    ...step,
    spec: {
      ...step.spec,
      script: undefined,
      command: ["/report", "a"],
      args: ["b"],
      results: [{ name: "r" }],
    },
  };
  const pod = buildStepPod({ run, step: s, attempt: 0 });
  const args = pod.spec?.containers[0]?.args ?? [];
  assert.deepEqual(args.slice(args.indexOf("-results")), [
    "-results",
    "r",
    "-entrypoint",
    "/report",
    "--",
    "a",
    "b",
  ]);
  assert.equal(
    pod.spec?.volumes?.some((v) => v.name === "tekton-scripts"),
    false,
  );
  assert.equal(pod.metadata?.annotations?.[annotations.script], undefined);
});

test("credentials arrive from the Secret by reference, never by value", () => {
  const pod = buildStepPod({
    run,
    step,
    attempt: 1,
    credential: {
      secretName: "build-deploy-credentials-1",
      mount: {
        secretEnv: { AWS_SECRET_ACCESS_KEY: "secretAccessKey" },
        env: { AWS_REGION: "eu-west-1" },
        files: { token: "token" },
      },
    },
  });
  assert.equal(pod.metadata?.name, "build-deploy-pod-retry1");
  const env = pod.spec?.containers[0]?.env ?? [];
  assert.deepEqual(env.find((e) => e.name === "AWS_SECRET_ACCESS_KEY")?.valueFrom?.secretKeyRef, {
    name: "build-deploy-credentials-1",
    key: "secretAccessKey",
  });
  assert.equal(
    pod.spec?.volumes?.find((v) => v.name === "scoped-step-credentials")?.secret?.secretName,
    "build-deploy-credentials-1",
  );
});

test("long names are shortened to valid, unique DNS labels", () => {
  const long = "x".repeat(80);
  const name = podName(long, 2);
  assert.ok(name.length <= 63);
  assert.notEqual(podName(long, 2), podName(`${long}y`, 2));
  assert.equal(boundedName("short", 63), "short");
});
