import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { parse, stringify } from "yaml";
import { isRunFailure } from "../../tasks/scoped-step/failure.ts";
import { stepFromTask, taskFromStep } from "../../tasks/scoped-step/packaged-task.ts";
import { scopedStepFrom } from "../../tasks/scoped-step/remote.ts";
import { stepFromDefinition } from "../../tasks/scoped-step/step.ts";

const b64 = (doc: unknown) => Buffer.from(stringify(doc)).toString("base64");
const annotations = {
  "scopedstep.dev/application": "$(params.application)",
  "scopedstep.dev/component": "api",
};
/** As Tekton's cluster resolver marshals a Task it read: Go writes the empty computeResources. */
const packaged = {
  apiVersion: "tekton.dev/v1",
  kind: "Task",
  metadata: { name: "whoami", namespace: "catalog", uid: "u", resourceVersion: "7", annotations },
  spec: {
    description: "Who am I",
    params: [{ name: "application", type: "string" }],
    results: [{ name: "caller", type: "string" }],
    workspaces: [{ name: "source", readOnly: true, optional: true }],
    steps: [
      {
        name: "whoami",
        image: "aws-cli",
        script: "aws sts get-caller-identity > $(results.caller.path)",
        env: [{ name: "HOME", value: "/tmp" }],
        computeResources: {},
      },
    ],
  },
};
const onlyStep = (t: typeof packaged) => {
  const [step] = t.spec.steps;
  assert.ok(step);
  return step;
};
const failsWith = (fn: () => unknown, message: RegExp) =>
  assert.throws(fn, (err: unknown) => {
    assert.ok(isRunFailure(err));
    assert.equal(err.reason, "NotAScopedStep");
    assert.match(err.message, message);
    return true;
  });

test("a Task packaging a ScopedStep, as a resolver returns it, is read as that ScopedStep", () => {
  const got = scopedStepFrom(b64(packaged), "resolver cluster");
  assert.equal(got.name, "whoami");
  assert.deepEqual(got.spec, {
    description: "Who am I",
    params: [{ name: "application", type: "string" }],
    results: [{ name: "caller", type: "string" }],
    workspaces: [{ name: "source", readOnly: true, optional: true }],
    image: "aws-cli",
    script: "aws sts get-caller-identity > $(results.caller.path)",
    env: [{ name: "HOME", value: "/tmp" }],
    application: "$(params.application)",
    component: "api",
  });
  // And the spec is then checked and substituted like any ScopedStep's.
  const step = stepFromDefinition(got.spec, [{ name: "application", value: "payments" }], "Task whoami");
  assert.equal(step.spec.application, "payments");
  const withTrait = structuredClone(packaged);
  Object.assign(withTrait.metadata.annotations, { "scopedstep.dev/trait": "deploy-identity" });
  Object.assign(onlyStep(withTrait), { computeResources: { limits: { memory: "64Mi" } } });
  const spec = scopedStepFrom(b64(withTrait), "r").spec as Record<string, unknown>;
  assert.equal(spec.trait, "deploy-identity");
  assert.deepEqual(spec.resources, { limits: { memory: "64Mi" } });
});

test("a Task that is not a packaged ScopedStep, or says what a ScopedStep cannot run, is refused by name", () => {
  const edited = (edit: (t: typeof packaged) => void) => {
    const t = structuredClone(packaged);
    edit(t);
    return b64(t);
  };
  /** The packaged Task, edited, is refused as a resolver's answer with `message`. */
  const refused = (edit: (t: typeof packaged) => void, message: RegExp) =>
    failsWith(() => scopedStepFrom(edited(edit), "resolver cluster"), message);
  refused(
    (t) => delete (t.metadata as { annotations?: unknown }).annotations,
    /resolver cluster returned a Task that is not a packaged ScopedStep: it lacks the scopedstep.dev\/application and scopedstep.dev\/component annotations/,
  );
  refused(
    (t) => Object.assign(t, { apiVersion: "tekton.dev/v1beta1" }),
    /a Task of tekton.dev\/v1beta1; package the step as a tekton.dev\/v1 Task/,
  );
  refused(
    (t) => Object.assign(t.spec, { sidecars: [{ name: "s", image: "x" }], volumes: [{ name: "v" }] }),
    /a Task with sidecars, volumes, which a ScopedStep does not run/,
  );
  refused(
    (t) => t.spec.steps.push(structuredClone(onlyStep(t))),
    /a Task with 2 steps: a packaged ScopedStep has exactly one/,
  );
  refused(
    (t) => Object.assign(onlyStep(t), { onError: "continue" }),
    /a Task whose step sets onError, which a ScopedStep does not run/,
  );
  // A key that only an object's prototype has is no field of the step either.
  refused(
    (t) => Object.assign(onlyStep(t), { constructor: "x" }),
    /a Task whose step sets constructor, which a ScopedStep does not run/,
  );
  // Empty fields, as Go writes them, say nothing and are not refused.
  const empties = edited((t) =>
    Object.assign(t.spec, { volumes: [], stepTemplate: { computeResources: {} } }),
  );
  assert.equal(scopedStepFrom(empties, "r").name, "whoami");
  // The direct path checks the same.
  assert.throws(
    () => stepFromTask({ apiVersion: "tekton.dev/v1", kind: "Task" }, (why) => new Error(why)),
    /lacks/,
  );
});

test("every catalog ScopedStep's Task packaging reads back as the same ScopedStep", async () => {
  let checked = 0;
  for (const name of await readdir("catalog/scopedstep")) {
    for (const version of await readdir(`catalog/scopedstep/${name}`)) {
      const step = parse(await readFile(`catalog/scopedstep/${name}/${version}/${name}.yaml`, "utf8")) as {
        metadata: Record<string, unknown>;
        spec: Record<string, unknown>;
      };
      const task = taskFromStep(step);
      assert.ok(task, `${name} has a Task packaging`);
      assert.deepEqual(scopedStepFrom(b64(task), "r"), { name, spec: step.spec }, name);
      checked++;
    }
  }
  assert.ok(checked >= 3, `${checked} catalog steps`);
  assert.equal(taskFromStep({ metadata: {}, spec: { image: "x", podTemplate: {} } }), undefined);
});
