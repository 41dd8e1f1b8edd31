// Steps from Tekton's remote resolution and Tekton's default pod template, on the real API server.
// Here the test answers the ResolutionRequest as a resolver does (status.data, the Succeeded
// condition), through the status subresource; tekton-e2e.test.ts runs Tekton's own resolvers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import type { ResolutionRequest } from "../../tasks/scoped-step/remote.ts";
import type { Param } from "../../tasks/scoped-step/types.ts";
import { testCluster, testNamespace } from "../support/cluster.ts";
import { statusOf, tenantConfig } from "../support/tenant.ts";
import { eventually } from "../support/wait.ts";
import { condition, paymentsApp, resultsOf, startWorld, type World } from "../support/world.ts";

const requests = {
  group: "resolution.tekton.dev",
  version: "v1beta1",
  plural: "resolutionrequests",
} as const;
const scopedStep = { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" } as const;
const gitParams: Param[] = [
  { name: "url", value: "https://git.example/catalog.git" },
  { name: "pathInRepo", value: "steps/greet.yaml" },
];
const greet = {
  ...scopedStep,
  metadata: { name: "greet" },
  spec: {
    params: [{ name: "who" }],
    results: [{ name: "greeting" }],
    image: "busybox",
    script: "echo hello $(params.who) from $(context.task.name) > $(results.greeting.path)",
    application: "payments",
    component: "api",
  },
};
const yamlOf = (doc: unknown) => JSON.stringify(doc); // JSON is YAML
const b64 = (s: string) => Buffer.from(s).toString("base64");

interface Fixture {
  w: World;
  tekton: string;
  objects: CustomObjectsApi;
  core: CoreV1Api;
}

const fixture: Promise<Fixture> = (async () => {
  const cluster = await testCluster();
  // Tekton's namespace of this world: the config-defaults the controller reads.
  const tekton = await testNamespace(cluster, "tkn");
  // There before the controller starts: read by its first list.
  await cluster.kc.makeApiClient(CoreV1Api).createNamespacedConfigMap({
    namespace: tekton,
    body: {
      metadata: { name: "config-defaults" },
      data: { "default-pod-template": "tolerations: [{ key: boot, operator: Exists }]\n" },
    },
  });
  const w = await startWorld({ flags: [`--tekton-namespace=${tekton}`] });
  await w.createApplication("payments", paymentsApp);
  return {
    w,
    tekton,
    objects: cluster.kc.makeApiClient(CustomObjectsApi),
    core: cluster.kc.makeApiClient(CoreV1Api),
  };
})();

/** The run's ResolutionRequest, once the controller has made it. */
async function requestOf(f: Fixture, run: string): Promise<ResolutionRequest> {
  const r = await f.w.getRun(run);
  return eventually(`the ResolutionRequest of ${run}`, async () => {
    const list = (await f.objects.listNamespacedCustomObject({ ...requests, namespace: f.w.ns })) as {
      items: ResolutionRequest[];
    };
    return list.items.find((i) => i.metadata?.ownerReferences?.some((o) => o.uid === r.metadata.uid));
  });
}

/** Answers a request as a resolver does: data (base64), where it came from, the condition. */
async function answer(f: Fixture, rr: ResolutionRequest, status: ResolutionRequest["status"]): Promise<void> {
  const source = { uri: "https://git.example/catalog.git", digest: { sha1: "0".repeat(40) } };
  await f.objects.patchNamespacedCustomObjectStatus(
    {
      ...requests,
      namespace: f.w.ns,
      name: rr.metadata?.name ?? "",
      body: { status: { data: "", source, refSource: source, ...status } },
    },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
}
const resolved = (doc: unknown) => ({
  conditions: [{ type: "Succeeded", status: "True", reason: "" }],
  data: b64(typeof doc === "string" ? doc : yamlOf(doc)),
});

async function setDefaults(f: Fixture, data: Record<string, string> | undefined): Promise<void> {
  const name = "config-defaults";
  await f.core.deleteNamespacedConfigMap({ namespace: f.tekton, name }).catch(() => undefined);
  if (data)
    await f.core.createNamespacedConfigMap({ namespace: f.tekton, body: { metadata: { name }, data } });
}

test("a step from a resolver waits for the answer, then runs as a named ScopedStep", async () => {
  const f = await fixture;
  await f.w.createRun("from-git", {
    customRef: { ...scopedStep, resolver: "git", params: gitParams },
    params: [{ name: "who", value: "team" }],
  });
  const rr = await requestOf(f, "from-git");
  assert.equal(rr.metadata?.labels?.["resolution.tekton.dev/type"], "git");
  assert.deepEqual(rr.spec?.params, gitParams);
  assert.equal(rr.metadata?.ownerReferences?.[0]?.controller, true);
  const waiting = await f.w.waitForRun("from-git", "to wait for the resolver", (r) =>
    /waiting for resolver git/.test(condition(r)?.message ?? ""),
  );
  assert.equal(condition(waiting)?.status, "Unknown");
  assert.equal((await f.w.pods()).filter((p) => p.metadata?.name?.startsWith("from-git")).length, 0);
  await answer(f, rr, resolved(greet));
  const done = await f.w.waitDone("from-git");
  assert.equal(condition(done)?.status, "True", condition(done)?.message);
  assert.equal(resultsOf(done).greeting, "hello team from greet");
  const pod = (await f.w.pods()).find((p) => p.metadata?.name === "from-git-pod");
  assert.ok(
    pod?.spec?.tolerations?.some((t) => t.key === "boot"),
    "config-defaults as it was when the controller started applies",
  );
  // One request for the run, however many passes it took.
  const list = (await f.objects.listNamespacedCustomObject({ ...requests, namespace: f.w.ns })) as {
    items: ResolutionRequest[];
  };
  assert.equal(
    list.items.filter((i) => i.metadata?.ownerReferences?.[0]?.uid === done.metadata.uid).length,
    1,
  );
});

test("each resolution mistake ends the run with its reason", async () => {
  const f = await fixture;
  const ask = (name: string, resolver = "git", params = gitParams) =>
    f.w.createRun(name, {
      customRef: { ...scopedStep, resolver, params },
      params: [{ name: "who", value: "x" }],
    });
  await ask("rr-failed");
  await ask("rr-task", "cluster", [
    { name: "kind", value: "task" },
    { name: "name", value: "build" },
  ]);
  await ask("rr-invalid");
  await ask("rr-two-docs");
  await f.w.createRun("rr-name-and-resolver", {
    customRef: { ...scopedStep, name: "greet", resolver: "git" },
  });
  await answer(f, await requestOf(f, "rr-failed"), {
    conditions: [
      {
        type: "Succeeded",
        status: "False",
        reason: "ResolutionFailed",
        message: 'error opening file "steps/greet.yaml": file does not exist',
      },
    ],
  });
  await answer(
    f,
    await requestOf(f, "rr-task"),
    resolved({ apiVersion: "tekton.dev/v1", kind: "Task", metadata: { name: "build" }, spec: { steps: [] } }),
  );
  await answer(
    f,
    await requestOf(f, "rr-invalid"),
    resolved({ ...greet, spec: { ...greet.spec, privileged: true } }),
  );
  await answer(f, await requestOf(f, "rr-two-docs"), resolved(`${yamlOf(greet)}\n---\n${yamlOf(greet)}\n`));
  const expect: Record<string, [string, RegExp]> = {
    "rr-failed": [
      "ResolverFailed",
      /resolver git \(ResolutionRequest git-[0-9a-f]+\) failed: error opening file "steps\/greet.yaml": file does not exist; check customRef.params/,
    ],
    "rr-task": [
      "NotAScopedStep",
      /returned a Task that is not a packaged ScopedStep: it lacks the scopedstep.dev\/application and scopedstep.dev\/component annotations/,
    ],
    "rr-invalid": ["InvalidStepSpec", /ScopedStep greet from resolver git spec: unknown field "privileged"/],
    "rr-two-docs": ["NotAScopedStep", /2 YAML documents, not one/],
    "rr-name-and-resolver": ["InvalidResolverRef", /both name \(greet\) and resolver \(git\)/],
  };
  for (const [name, [reason, message]] of Object.entries(expect)) {
    const c = condition(await f.w.waitDone(name));
    assert.equal(c?.status, "False", `${name}: ${c?.message ?? ""}`);
    assert.equal(c?.reason, reason, `${name}: ${c?.message ?? ""}`);
    assert.match(c?.message ?? "", message, name);
  }
});

test("a resolver that never answers times the run out after Tekton's default-maximum-resolution-timeout", async () => {
  const f = await fixture;
  await setDefaults(f, { "default-maximum-resolution-timeout": "3s" });
  await eventually("the controller to read the new timeout", () =>
    Promise.resolve(
      f.w.controller
        ?.logLines()
        .some((l) => l.msg === "Tekton defaults read" && l.resolutionTimeoutMs === 3000) || undefined,
    ),
  );
  await f.w.createRun("rr-silent", {
    customRef: { ...scopedStep, resolver: "hub", params: [{ name: "name", value: "x" }] },
  });
  const c = condition(await f.w.waitDone("rr-silent"));
  assert.equal(c?.reason, "ResolutionTimedOut", c?.message);
  assert.match(
    c?.message ?? "",
    /resolver hub \(ResolutionRequest hub-[0-9a-f]+\) did not answer within 3 s: check that Tekton's resolvers run/,
  );
  await setDefaults(f, undefined);
  const passes = (f.w.controller?.logLines() ?? []).filter((l) => l.key === `${f.w.ns}/rr-silent`).length;
  assert.ok(passes < 15, `rr-silent was reconciled ${passes} times`);
});

test("Tekton's default-pod-template applies to step pods, follows the ConfigMap, and cannot open host namespaces", async () => {
  const f = await fixture;
  const podOf = async (run: string) => {
    const done = await f.w.waitDone(run);
    assert.equal(condition(done)?.status, "True", condition(done)?.message);
    const pods = await f.w.pods();
    return pods.find((p) => p.metadata?.name === `${run}-pod`);
  };
  const step = (podTemplate?: Record<string, unknown>) => ({
    customRef: undefined,
    customSpec: {
      ...scopedStep,
      spec: {
        image: "busybox",
        script: "true",
        application: "payments",
        component: "api",
        ...(podTemplate ? { podTemplate } : {}),
      },
    },
  });
  const seen = async (fields: string[]) =>
    eventually(`the controller to read default-pod-template with ${fields.join(", ") || "nothing"}`, () =>
      Promise.resolve(
        f.w.controller
          ?.logLines()
          .filter((l) => l.msg === "Tekton defaults read")
          .some(
            (l, i, all) =>
              i === all.length - 1 && JSON.stringify(l.podTemplateFields) === JSON.stringify(fields),
          ) || undefined,
      ),
    );
  await setDefaults(f, {
    "default-pod-template":
      "nodeSelector:\n  pool: ci\ntolerations:\n  - {key: ci, operator: Exists, effect: NoSchedule}\nenv:\n  - {name: HTTP_PROXY, value: http://proxy}\n",
  });
  await seen(["nodeSelector", "tolerations", "env"]);
  await f.w.createRun("dpt-created", step({ nodeSelector: { pool: "gpu" } }));
  const created = await podOf("dpt-created");
  assert.deepEqual(created?.spec?.nodeSelector, { pool: "gpu" }, "the step's own field wins");
  const [toleration] = created?.spec?.tolerations ?? [];
  assert.deepEqual(
    [toleration?.key, toleration?.operator, toleration?.effect],
    ["ci", "Exists", "NoSchedule"],
  );
  assert.equal(
    (created?.spec?.containers[0]?.env ?? []).some((e) => e.name === "HTTP_PROXY"),
    false,
    "env is not taken from the default",
  );

  await setDefaults(f, {
    "default-pod-template": "securityContext: { runAsUser: 4321, runAsNonRoot: true }\n",
  });
  await seen(["securityContext"]);
  await f.w.createRun("dpt-changed", step());
  const changed = await podOf("dpt-changed");
  assert.equal(changed?.spec?.securityContext?.runAsUser, 4321);
  assert.equal(changed?.spec?.securityContext?.runAsNonRoot, true);
  assert.equal(
    changed?.spec?.tolerations?.some((t) => t.key === "ci"),
    false,
    "the old default no longer applies",
  );

  await setDefaults(f, { "default-pod-template": "hostNetwork: true\n" });
  await seen(["hostNetwork"]);
  await f.w.createRun("dpt-host", step());
  const host = condition(await f.w.waitDone("dpt-host"));
  assert.equal(host?.reason, "DefaultPodTemplateNotAllowed", host?.message);
  assert.match(
    host?.message ?? "",
    new RegExp(`default-pod-template \\(ConfigMap ${f.tekton}/config-defaults\\) sets hostNetwork: true`),
  );

  await setDefaults(f, undefined);
  await seen([]);
  await f.w.createRun("dpt-absent", step());
  const absent = await podOf("dpt-absent");
  assert.equal(absent?.spec?.securityContext?.runAsUser, 65532, "the step pod's own user again");
  assert.equal(absent?.spec?.hostNetwork, undefined);
});

test("as the tenant: no direct access to ResolutionRequests, and a resolved step gets only its own namespace's identity", async () => {
  const f = await fixture;
  const kc = await tenantConfig(f.w.cluster, f.w.ns);
  const tenant = kc.makeApiClient(CustomObjectsApi);
  const body = {
    apiVersion: "resolution.tekton.dev/v1beta1",
    kind: "ResolutionRequest",
    metadata: { name: "mine" },
    spec: { params: gitParams },
  };
  assert.equal(
    await statusOf(tenant.createNamespacedCustomObject({ ...requests, namespace: f.w.ns, body })),
    403,
  );
  assert.equal(await statusOf(tenant.listNamespacedCustomObject({ ...requests, namespace: f.w.ns })), 403);
  // Another team's ScopedStep, as the cluster resolver (or a git repository) returns it, naming
  // that team's namespace and Application. The run's namespace has no Application by that name.
  const other = await testNamespace(f.w.cluster, "other");
  const foreign = {
    ...greet,
    metadata: { name: "deploy", namespace: other },
    spec: { ...greet.spec, application: "billing" },
  };
  await tenant.createNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1beta1",
    plural: "customruns",
    namespace: f.w.ns,
    body: {
      apiVersion: "tekton.dev/v1beta1",
      kind: "CustomRun",
      metadata: { name: "rr-foreign" },
      spec: {
        customRef: { ...scopedStep, resolver: "cluster", params: [{ name: "namespace", value: other }] },
        params: [{ name: "who", value: "x" }],
      },
    },
  });
  await answer(f, await requestOf(f, "rr-foreign"), resolved(foreign));
  const c = condition(await f.w.waitDone("rr-foreign"));
  assert.equal(c?.reason, "ApplicationNotFound", c?.message);
  assert.match(c?.message ?? "", new RegExp(`billing.*${f.w.ns}`));
});
