import { test } from "node:test";
import assert from "node:assert/strict";
import { isRunFailure } from "../../tasks/scoped-step/failure.ts";
import { buildStepPod } from "../../tasks/scoped-step/pod.ts";
import { stepFromDefinition, stepFromParams, type RunContext } from "../../tasks/scoped-step/step.ts";
import type { CustomRun, Param } from "../../tasks/scoped-step/types.ts";
import type { WorkspaceBinding } from "../../tasks/scoped-step/workspaces.ts";

const identity = { application: "payments", component: "api" };
const context = (workspaces: WorkspaceBinding[] = [], retryCount = 0): RunContext => ({
  workspaces,
  run: { name: "release-1-publish", namespace: "team", uid: "0b7c-uid" },
  retryCount,
});

/** A ScopedStep whose script prints `text`, resolved against these bindings. */
const define = (spec: Record<string, unknown>, bindings: WorkspaceBinding[] = [], params: Param[] = []) =>
  stepFromDefinition(
    { image: "busybox", ...identity, ...spec },
    params,
    "ScopedStep publish",
    context(bindings),
    "publish",
  );

function failsWith(reason: string, pattern: RegExp, f: () => unknown): void {
  assert.throws(f, (err: unknown) => {
    assert.ok(isRunFailure(err), String(err));
    assert.equal(err.reason, reason, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

test("a declared workspace bound to a claim is mounted at /workspace/<name>, and its variables are substituted", () => {
  const step = define(
    {
      workspaces: [{ name: "site" }, { name: "cache", mountPath: "/cache", optional: true }],
      script:
        "ls $(workspaces.site.path) $(workspaces.site.bound) $(workspaces.site.claim) $(workspaces.site.volume) " +
        "[$(workspaces.cache.path)] $(workspaces.cache.bound)",
    },
    [{ name: "site", persistentVolumeClaim: { claimName: "pvc-abc" }, subPath: "build" }],
  );
  assert.equal(step.spec.script, "ls /workspace/site true pvc-abc ws-site [] false");
  assert.deepEqual(step.workspaces.volumes, [
    { name: "ws-site", persistentVolumeClaim: { claimName: "pvc-abc" } },
  ]);
  assert.deepEqual(step.workspaces.mounts, [
    { name: "ws-site", mountPath: "/workspace/site", subPath: "build" },
  ]);
});

test("mountPath: absolute as given, relative under /workspace; readOnly declared is mounted read-only", () => {
  const step = define(
    {
      workspaces: [
        { name: "a", mountPath: "/src" },
        { name: "b", mountPath: "out/b", readOnly: true },
      ],
      script: "$(workspaces.a.path) $(workspaces.b.path)",
    },
    [
      { name: "a", emptyDir: {} },
      { name: "b", emptyDir: {} },
    ],
  );
  assert.equal(step.spec.script, "/src /workspace/out/b");
  assert.deepEqual(
    step.workspaces.mounts.map((m) => [m.mountPath, m.readOnly ?? false]),
    [
      ["/src", false],
      ["/workspace/out/b", true],
    ],
  );
});

test("one claim bound to two workspaces is one volume, as in Tekton", () => {
  const step = define({ workspaces: [{ name: "a" }, { name: "b" }], script: "true" }, [
    { name: "a", persistentVolumeClaim: { claimName: "shared" }, subPath: "a" },
    { name: "b", persistentVolumeClaim: { claimName: "shared" }, subPath: "b" },
  ]);
  assert.equal(step.workspaces.volumes.length, 1);
  assert.deepEqual(
    step.workspaces.mounts.map((m) => `${m.name}:${m.subPath}`),
    ["ws-a:a", "ws-a:b"],
  );
});

test("every binding source is mounted as its own volume type", () => {
  const bindings: WorkspaceBinding[] = [
    { name: "pvc", persistentVolumeClaim: { claimName: "c" } },
    { name: "empty", emptyDir: { medium: "Memory" } },
    { name: "cm", configMap: { name: "settings" } },
    { name: "sec", secret: { secretName: "deploy-key" } },
    { name: "proj", projected: { sources: [{ configMap: { name: "x" } }] } },
    { name: "csi", csi: { driver: "example.csi", readOnly: true } },
  ];
  const step = define(
    {
      workspaces: bindings.map((b) => ({ name: b.name, readOnly: !["pvc", "empty"].includes(b.name) })),
      script: "true",
    },
    bindings,
  );
  assert.deepEqual(
    step.workspaces.volumes.map((v) => Object.keys(v).filter((k) => k !== "name")[0]),
    ["persistentVolumeClaim", "emptyDir", "configMap", "secret", "projected", "csi"],
  );
});

test("a run given by params mounts whatever it binds, with nothing to declare", () => {
  const step = stepFromParams(
    [
      { name: "image", value: "busybox" },
      { name: "script", value: "cat $(workspaces.config.path)/a; echo $(context.taskRun.name)" },
      { name: "application", value: "payments" },
      { name: "component", value: "api" },
    ],
    context([{ name: "config", configMap: { name: "settings" } }]),
  );
  assert.equal(step.spec.script, "cat /workspace/config/a; echo release-1-publish");
  assert.deepEqual(step.workspaces.mounts, [
    { name: "ws-config", mountPath: "/workspace/config", readOnly: true },
  ]);
});

test("workspace mistakes fail with a named reason", () => {
  failsWith("MissingWorkspace", /needs workspace site/, () =>
    define({ workspaces: [{ name: "site" }], script: "true" }, []),
  );
  failsWith("UnknownWorkspace", /workspace extra is bound but ScopedStep publish declares only site/, () =>
    define({ workspaces: [{ name: "site" }], script: "true" }, [
      { name: "site", emptyDir: {} },
      { name: "extra", emptyDir: {} },
    ]),
  );
  failsWith("UnknownWorkspace", /declares no workspaces/, () =>
    define({ script: "true" }, [{ name: "extra", emptyDir: {} }]),
  );
  failsWith("WorkspaceReadOnly", /bound to a configMap.*declares it writable/, () =>
    define({ workspaces: [{ name: "out" }], script: "true" }, [{ name: "out", configMap: { name: "x" } }]),
  );
  failsWith("WorkspaceReadOnly", /read-only persistentVolumeClaim/, () =>
    define({ workspaces: [{ name: "out" }], script: "true" }, [
      { name: "out", persistentVolumeClaim: { claimName: "c", readOnly: true } },
    ]),
  );
  failsWith("UnsupportedWorkspaceBinding", /volumeClaimTemplate.*Tekton creates the claim/, () =>
    define({ workspaces: [{ name: "out" }], script: "true" }, [{ name: "out", volumeClaimTemplate: {} }]),
  );
  failsWith("InvalidWorkspaceBinding", /exactly one of/, () =>
    define({ workspaces: [{ name: "out" }], script: "true" }, [{ name: "out" }]),
  );
  failsWith("InvalidWorkspaceBinding", /sets emptyDir and configMap/, () =>
    define({ workspaces: [{ name: "out", readOnly: true }], script: "true" }, [
      { name: "out", emptyDir: {}, configMap: { name: "x" } },
    ]),
  );
  failsWith("InvalidWorkspaceBinding", /subPath "\.\.\/other"/, () =>
    define({ workspaces: [{ name: "out" }], script: "true" }, [
      { name: "out", emptyDir: {}, subPath: "../other" },
    ]),
  );
  failsWith("InvalidWorkspaceBinding", /bound more than once/, () =>
    define({ workspaces: [{ name: "out" }], script: "true" }, [
      { name: "out", emptyDir: {} },
      { name: "out", emptyDir: {} },
    ]),
  );
  failsWith("InvalidStepSpec", /mounted at \/tekton\/results/, () =>
    define({ workspaces: [{ name: "out", mountPath: "/tekton/results" }], script: "true" }, [
      { name: "out", emptyDir: {} },
    ]),
  );
  failsWith("InvalidStepSpec", /same mountPath \/data/, () =>
    define(
      {
        workspaces: [
          { name: "a", mountPath: "/data" },
          { name: "b", mountPath: "/data" },
        ],
        script: "true",
      },
      [
        { name: "a", emptyDir: {} },
        { name: "b", emptyDir: {} },
      ],
    ),
  );
  failsWith(
    "UnknownWorkspaceReference",
    /\$\(workspaces\.sight\.path\) names nothing.*\$\(workspaces\.site\.path\)/,
    () =>
      define({ workspaces: [{ name: "site" }], script: "ls $(workspaces.sight.path)" }, [
        { name: "site", emptyDir: {} },
      ]),
  );
});

test("a workspace may not mount another run's credential Secret", () => {
  for (const secretName of ["deploy-7-credentials-0", `${"r".repeat(244)}-0123abcd`]) {
    failsWith("WorkspaceNotAllowed", /named as a run's credential Secret/, () =>
      define({ workspaces: [{ name: "creds", readOnly: true }], script: "true" }, [
        { name: "creds", secret: { secretName } },
      ]),
    );
  }
  failsWith("WorkspaceNotAllowed", /Secret other-credentials-1/, () =>
    define({ workspaces: [{ name: "creds", readOnly: true }], script: "true" }, [
      { name: "creds", projected: { sources: [{ secret: { name: "other-credentials-1" } }] } },
    ]),
  );
});

test("Tekton's context variables come from the run; an unknown one fails with its reason", () => {
  const step = stepFromDefinition(
    {
      image: "busybox",
      ...identity,
      script:
        "$(context.taskRun.name) $(context.taskRun.namespace) $(context.taskRun.uid) $(context.task.name) $(context.task.retry-count) $(date) ${HOME}",
    },
    [],
    "ScopedStep publish",
    context([], 2),
    "publish",
  );
  assert.equal(
    step.spec.script,
    "release-1-publish team 0b7c-uid publish 2 $(date) ${HOME}",
    "shell syntax is left alone",
  );
  failsWith("UnknownContextReference", /\$\(context\.pipelineRun\.name\) names nothing/, () =>
    define({ script: "echo $(context.pipelineRun.name)" }),
  );
});

test("array items by index, object params with declared properties, enums", () => {
  const spec = {
    params: [
      { name: "files", type: "array" },
      {
        name: "target",
        type: "object",
        properties: { bucket: {}, prefix: {} },
        default: { prefix: "releases" },
      },
      { name: "stage", enum: ["dev", "prod"], default: "dev" },
    ],
    script: "cp $(params.files[1]) s3://$(params.target.bucket)/$(params.target.prefix)/$(params.stage)",
  };
  const step = define(
    spec,
    [],
    [
      { name: "files", value: ["a.txt", "b.txt"] },
      { name: "target", value: { bucket: "artifacts" } },
    ],
  );
  assert.equal(step.spec.script, "cp b.txt s3://artifacts/releases/dev");
  failsWith("ParamIndexOutOfRange", /\$\(params\.files\[1\]\): array param files has 1 item$/, () =>
    define(
      spec,
      [],
      [
        { name: "files", value: ["a.txt"] },
        { name: "target", value: { bucket: "artifacts" } },
      ],
    ),
  );
  failsWith(
    "InvalidParamValue",
    /param stage of ScopedStep publish is "staging", which is not one of dev, prod/,
    () =>
      define(
        spec,
        [],
        [
          { name: "files", value: ["a"] },
          { name: "target", value: { bucket: "b" } },
          { name: "stage", value: "staging" },
        ],
      ),
  );
  failsWith("InvalidParamValue", /object param target of ScopedStep publish lacks key bucket/, () =>
    define(
      spec,
      [],
      [
        { name: "files", value: ["a"] },
        { name: "target", value: { prefix: "x" } },
      ],
    ),
  );
});

test("resources are checked after substitution, so a param may hold a quantity", () => {
  const spec = {
    params: [{ name: "cpu" }],
    resources: { requests: { cpu: "$(params.cpu)" } },
    script: "true",
  };
  assert.deepEqual(define(spec, [], [{ name: "cpu", value: "250m" }]).spec.resources, {
    requests: { cpu: "250m" },
  });
  failsWith("InvalidStepSpec", /resources\.requests\.cpu is "lots", which is not a quantity/, () =>
    define(spec, [], [{ name: "cpu", value: "lots" }]),
  );
});

test("the step pod mounts the workspaces and sits beside Tekton's affinity assistant", () => {
  const run: CustomRun = {
    apiVersion: "tekton.dev/v1beta1",
    kind: "CustomRun",
    metadata: {
      name: "release-1-publish",
      namespace: "team",
      uid: "0b7c-uid",
      annotations: { "pipeline.tekton.dev/affinity-assistant": "affinity-assistant-7c1f1b2a3d" },
    },
    spec: {},
  };
  const step = define({ workspaces: [{ name: "site" }], script: "true" }, [
    { name: "site", persistentVolumeClaim: { claimName: "pvc-abc" } },
  ]);
  const pod = buildStepPod({ run, step, attempt: 0 });
  assert.ok(
    pod.spec?.volumes?.some((v) => v.name === "ws-site" && v.persistentVolumeClaim?.claimName === "pvc-abc"),
  );
  assert.ok(pod.spec?.containers[0]?.volumeMounts?.some((m) => m.mountPath === "/workspace/site"));
  assert.deepEqual(pod.spec?.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution, [
    {
      labelSelector: {
        matchLabels: {
          "app.kubernetes.io/instance": "affinity-assistant-7c1f1b2a3d",
          "app.kubernetes.io/component": "affinity-assistant",
        },
      },
      topologyKey: "kubernetes.io/hostname",
    },
  ]);
  const alone = buildStepPod({
    run: { ...run, metadata: { name: "release-1-publish", namespace: "team", uid: "0b7c-uid" } },
    step,
    attempt: 0,
  });
  assert.equal(alone.spec?.affinity, undefined);
});
