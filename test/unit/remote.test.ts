import { test } from "node:test";
import assert from "node:assert/strict";
import { withDefaultPodTemplate } from "../../tasks/scoped-step/default-pod-template.ts";
import { isRunFailure, RunFailure } from "../../tasks/scoped-step/failure.ts";
import { resolveRun } from "../../tasks/scoped-step/resolve.ts";
import type { ResolvedTrait } from "../../tasks/scoped-step/trait.ts";
import {
  buildResolutionRequest,
  resolutionRequestName,
  resolveRemote,
  resolverRef,
  scopedStepFrom,
} from "../../tasks/scoped-step/remote.ts";
import type { CustomRun } from "../../tasks/scoped-step/types.ts";
import { FakeCluster, fakeWorld, ns, stepParams } from "../support/fake-cluster.ts";
import { scopedStepRef } from "../support/world.ts";
import { parseTektonDefaults } from "../../controller/tekton-defaults.ts";

const gitParams = [
  { name: "url", value: "git://node/catalog.git" },
  { name: "pathInRepo", value: "steps/upload.yaml" },
];
const run = (customRef: CustomRun["spec"]["customRef"], uid = "uid-1"): CustomRun => ({
  apiVersion: "tekton.dev/v1beta1",
  kind: "CustomRun",
  metadata: { namespace: "team-a", name: "publish", uid },
  spec: { customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", ...customRef } },
});
const b64 = (s: string) => Buffer.from(s).toString("base64");
const failsWith = (fn: () => unknown, reason: string, message: RegExp) =>
  assert.throws(fn, (err: unknown) => {
    assert.ok(isRunFailure(err));
    assert.equal(err.reason, reason);
    assert.match(err.message, message);
    return true;
  });

test("a customRef with resolver and params asks that resolver; without them, none", () => {
  assert.deepEqual(resolverRef(run({ resolver: "git", params: gitParams })), {
    resolver: "git",
    params: gitParams,
  });
  assert.equal(resolverRef(run({ name: "upload" })), undefined);
  failsWith(() => resolverRef(run({ params: gitParams })), "InvalidResolverRef", /resolver is not/);
  failsWith(
    () => resolverRef(run({ name: "upload", resolver: "git" })),
    "InvalidResolverRef",
    /both name \(upload\) and resolver/,
  );
  failsWith(() => resolverRef(run({ resolver: "Git!" })), "InvalidResolverRef", /not a resolver name/);
});

test("the request's name is the same for the same run and question, and differs otherwise", () => {
  const ref = { resolver: "git", params: gitParams };
  const name = resolutionRequestName(run({}), ref);
  assert.match(name, /^git-[0-9a-f]{32}$/);
  assert.equal(resolutionRequestName(run({}), { ...ref, params: [...gitParams].reverse() }), name);
  assert.notEqual(resolutionRequestName(run({}, "uid-2"), ref), name);
  assert.notEqual(resolutionRequestName(run({}), { ...ref, params: gitParams.slice(0, 1) }), name);
  const rr = buildResolutionRequest(run({}), ref);
  assert.equal(rr.metadata?.labels?.["resolution.tekton.dev/type"], "git");
  assert.equal(rr.metadata?.ownerReferences?.[0]?.uid, "uid-1");
  assert.equal(rr.metadata?.ownerReferences?.[0]?.controller, true);
});

test("a resolved document must be exactly one ScopedStep", () => {
  const step =
    "apiVersion: scopedstep.dev/v1alpha1\nkind: ScopedStep\nmetadata: {name: upload, namespace: other}\nspec: {image: x}\n";
  assert.deepEqual(scopedStepFrom(b64(step), "resolver git"), { name: "upload", spec: { image: "x" } });
  const task = "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: t}\nspec: {steps: []}\n";
  failsWith(
    () => scopedStepFrom(b64(task), "resolver cluster"),
    "NotAScopedStep",
    /returned a Task that is not a packaged ScopedStep/,
  );
  failsWith(() => scopedStepFrom(b64(`${step}---\n${step}`), "r"), "NotAScopedStep", /2 YAML documents/);
  failsWith(() => scopedStepFrom(b64("key: [unclosed"), "r"), "NotAScopedStep", /not valid YAML/);
  failsWith(() => scopedStepFrom(b64("- a\n- b\n"), "r"), "NotAScopedStep", /not an object/);
  // Wrapped as Tekton's resolvers pass it on: a CustomRun holding only the ScopedStep as customSpec.
  const wrapped = (spec: unknown) =>
    b64(
      JSON.stringify({
        apiVersion: "tekton.dev/v1beta1",
        kind: "CustomRun",
        metadata: { name: "outer" },
        spec,
      }),
    );
  const inner = { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", spec: { image: "x" } };
  assert.deepEqual(scopedStepFrom(wrapped({ customSpec: inner }), "r"), {
    name: "outer",
    spec: { image: "x" },
  });
  assert.deepEqual(
    scopedStepFrom(wrapped({ customSpec: { ...inner, metadata: { name: "upload" } } }), "r").name,
    "upload",
  );
  failsWith(
    () => scopedStepFrom(wrapped({ customSpec: inner, serviceAccountName: "admin" }), "r"),
    "NotAScopedStep",
    /customSpec alone, not serviceAccountName/,
  );
  failsWith(
    () => scopedStepFrom(wrapped({ customSpec: { apiVersion: "example.dev/v1", kind: "Other" } }), "r"),
    "NotAScopedStep",
    /a Other \(example.dev\/v1\), not a ScopedStep/,
  );
  failsWith(
    () => scopedStepFrom(wrapped({ customRef: { name: "x" } }), "r"),
    "NotAScopedStep",
    /not a wrapped ScopedStep/,
  );
});

test("the request is made once, waited for, and its failure or silence ends the run", async () => {
  const cluster = new FakeCluster();
  const r = run({ resolver: "git", params: gitParams });
  const ref = { resolver: "git", params: gitParams };
  const t0 = new Date();
  const first = await resolveRemote(r, ref, cluster, t0, 60_000);
  assert.ok("pending" in first && first.retryAfterMs === 60_000);
  assert.equal(cluster.resolutionRequests.size, 1);
  await resolveRemote(r, ref, cluster, t0, 60_000);
  assert.equal(cluster.resolutionRequests.size, 1, "a second pass adopts the request");
  const [stored] = [...cluster.resolutionRequests.values()];
  assert.ok(stored);
  await assert.rejects(
    resolveRemote(r, ref, cluster, new Date(t0.getTime() + 61_000), 60_000),
    (err: unknown) =>
      isRunFailure(err) &&
      err.reason === "ResolutionTimedOut" &&
      /did not answer within 60 s/.test(err.message),
  );
  stored.status = {
    conditions: [
      {
        type: "Succeeded",
        status: "False",
        reason: "ResolutionFailed",
        message: 'error opening file "steps/upload.yaml": file does not exist',
      },
    ],
  };
  await assert.rejects(
    resolveRemote(r, ref, cluster, t0, 60_000),
    (err: unknown) =>
      isRunFailure(err) && err.reason === "ResolverFailed" && /file does not exist/.test(err.message),
  );
  stored.status = {
    conditions: [{ type: "Succeeded", status: "True" }],
    data: b64(
      "apiVersion: scopedstep.dev/v1alpha1\nkind: ScopedStep\nmetadata: {name: upload}\nspec: {image: x}\n",
    ),
  };
  assert.deepEqual(await resolveRemote(r, ref, cluster, t0, 60_000), {
    name: "upload",
    spec: { image: "x" },
  });
  // The same name, made for another run or another question, is not this run's answer.
  stored.spec = { params: gitParams.slice(0, 1) };
  await assert.rejects(
    resolveRemote(r, ref, cluster, t0, 60_000),
    (err: unknown) => isRunFailure(err) && err.reason === "ResolutionRequestNotOwned",
  );
  stored.spec = { params: gitParams };
  if (stored.metadata) stored.metadata.ownerReferences = [];
  await assert.rejects(
    resolveRemote(r, ref, cluster, t0, 60_000),
    (err: unknown) => isRunFailure(err) && err.reason === "ResolutionRequestNotOwned",
  );
});

test("Tekton's default pod template fills the fields the step leaves unset, as Tekton merges a TaskRun's", () => {
  const source = "ConfigMap tekton-pipelines/config-defaults";
  const defaults = {
    nodeSelector: { pool: "ci" },
    tolerations: [{ key: "ci", operator: "Exists" }],
    securityContext: { runAsNonRoot: true, runAsUser: 1001 },
    env: [{ name: "HTTP_PROXY", value: "x" }],
  };
  const merged = withDefaultPodTemplate({ nodeSelector: { pool: "gpu" } }, defaults, source);
  assert.deepEqual(merged.template, {
    nodeSelector: { pool: "gpu" },
    tolerations: [{ key: "ci", operator: "Exists" }],
    securityContext: { runAsUser: 1001 },
  });
  assert.deepEqual(merged.fromDefault, ["tolerations", "securityContext"]);
  assert.deepEqual(withDefaultPodTemplate(undefined, undefined, source), { fromDefault: [] });
  assert.deepEqual(withDefaultPodTemplate({ schedulerName: "s" }, {}, source).template, {
    schedulerName: "s",
  });
  failsWith(
    () => withDefaultPodTemplate({}, { hostNetwork: true }, source),
    "DefaultPodTemplateNotAllowed",
    /sets hostNetwork: true/,
  );
  failsWith(
    () => withDefaultPodTemplate(undefined, { securityContext: { runAsUser: 0 } }, source),
    "DefaultPodTemplateNotAllowed",
    /config-defaults\) gives podTemplate.securityContext.runAsUser: must be >= 1/,
  );
  failsWith(
    () => withDefaultPodTemplate(undefined, { securityContext: { runAsNonRoot: false } }, source),
    "DefaultPodTemplateNotAllowed",
    /runAsNonRoot: false/,
  );
  // The step's own securityContext wins whole: the default's root user never applies.
  assert.deepEqual(
    withDefaultPodTemplate(
      { securityContext: { runAsUser: 4242 } },
      { securityContext: { runAsUser: 0 } },
      source,
    ).template,
    { securityContext: { runAsUser: 4242 } },
  );
});

test("config-defaults is read as Tekton reads it", () => {
  const d = parseTektonDefaults(
    { "default-pod-template": "nodeSelector:\n  pool: ci\n", "default-maximum-resolution-timeout": "2m" },
    "s",
  );
  assert.deepEqual(d, {
    podTemplate: { nodeSelector: { pool: "ci" } },
    resolutionTimeoutMs: 120_000,
    source: "s",
  });
  assert.deepEqual(parseTektonDefaults({}, "s"), { resolutionTimeoutMs: 60_000, source: "s" });
  assert.throws(() => parseTektonDefaults({ "default-pod-template": "- a" }, "s"), /not a YAML mapping/);
  assert.throws(() => parseTektonDefaults({ "default-maximum-resolution-timeout": "soon" }, "s"));
});

test("the policy judges the merged pod template, and says which forbidden fields came from Tekton's default", async () => {
  const world = fakeWorld();
  const seen: string[][] = [];
  const policy = {
    decide: (_ns: string, trait: ResolvedTrait, r?: { podTemplateFields?: string[] }) => {
      seen.push(r?.podTemplateFields ?? []);
      if (r?.podTemplateFields?.includes("nodeSelector"))
        return Promise.reject(
          new RunFailure("PodTemplateFieldNotAllowed", "podTemplate.nodeSelector may not be set in team-a"),
        );
      return Promise.resolve({ trait, policy: "allow", revocation: "secret" as const });
    },
  };
  const defaults = () =>
    Promise.resolve({
      podTemplate: { nodeSelector: { pool: "ci" }, tolerations: [{ key: "ci", operator: "Exists" }] },
      resolutionTimeoutMs: 60_000,
      source: "ConfigMap tekton-pipelines/config-defaults",
    });
  const r = world.cluster.addRun(ns, "placed", { customRef: scopedStepRef, params: stepParams() });
  await assert.rejects(
    resolveRun(r, { ...world.ctx, policy, tektonDefaults: defaults }),
    (err: unknown) =>
      isRunFailure(err) &&
      err.reason === "PodTemplateFieldNotAllowed" &&
      /\(podTemplate.nodeSelector, podTemplate.tolerations come from Tekton's default-pod-template in ConfigMap tekton-pipelines\/config-defaults\)/.test(
        err.message,
      ),
  );
  assert.deepEqual(seen, [["nodeSelector", "tolerations"]]);
  const allowed = await resolveRun(r, {
    ...world.ctx,
    policy,
    tektonDefaults: async () => ({ ...(await defaults()), podTemplate: { tolerations: [] } }),
  });
  assert.ok("step" in allowed);
  assert.deepEqual(allowed.step.spec.podTemplate, { tolerations: [] });
});
