import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { generatedValidators } from "../../hack/validators.ts";
import { checkStepSpec, checkTraitProperties } from "../../tasks/scoped-step/schema.ts";
import { checkPolicy } from "../../tasks/scoped-step/policy-schema.ts";
import { parseKeySet } from "../../controller/issuer/keys.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

test("the committed validators are what ajv compiles from today's schemas", () => {
  for (const { file, code } of generatedValidators())
    assert.equal(readFileSync(`${root}/${file}`, "utf8"), code, `${file} is stale: run \`make generate\``);
});

test("the compiled validators check, fill defaults and report errors as ajv does", () => {
  const step = checkStepSpec(
    { application: "payments", component: "api", trait: "scoped-identity", image: "alpine", script: "true" },
    "spec",
  );
  assert.ok(step.ok, step.ok ? "" : step.message);
  const unknown = checkStepSpec({ application: "payments", colour: "blue" }, "spec");
  assert.equal(unknown.ok, false);
  assert.match(unknown.ok ? "" : unknown.message, /unknown field "colour"/);
  const trait = checkTraitProperties({ aws: { roleArn: 7 } }, "trait");
  assert.equal(trait.ok, false);
  assert.match(trait.ok ? "" : trait.message, /aws\.roleArn/);

  const policy = checkPolicy({ metadata: { name: "p" }, spec: { namespaces: ["team-a"] } });
  assert.ok(policy.ok, policy.ok ? "" : policy.message);
  assert.equal(policy.value.spec.revocation, "secret", "the schema's default is filled in");
  const refused = checkPolicy({ metadata: { name: "p" }, spec: { namespaces: "team-a" } });
  assert.equal(refused.ok, false);

  assert.throws(
    () =>
      parseKeySet(
        JSON.stringify({
          version: 1,
          keys: [{ kid: "k", alg: "ES256", state: "active", createdAt: "soon" }],
        }),
      ),
    /is not a key set: \/keys\/0\/createdAt must match format "date-time"/,
  );
});

test("the controller's validators load no part of ajv's compiler", () => {
  const probe = `
    import { createRequire } from "node:module";
    const { checkStepSpec } = await import(${JSON.stringify(`${root}/tasks/scoped-step/schema.ts`)});
    const { checkPolicy } = await import(${JSON.stringify(`${root}/tasks/scoped-step/policy-schema.ts`)});
    await import(${JSON.stringify(`${root}/controller/issuer/keys.ts`)});
    checkStepSpec({ application: "a" }, "spec");
    checkPolicy({ metadata: { name: "p" }, spec: {} });
    console.log(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));`;
  const loaded = JSON.parse(
    execFileSync(process.execPath, ["--input-type=module", "-e", probe], { encoding: "utf8" }),
  ) as string[];
  assert.ok(
    loaded.some((f) => f.includes("ajv/dist/runtime")),
    "ajv's runtime helpers are what they use",
  );
  assert.deepEqual(
    loaded.filter((f) => /ajv\/dist\/(core|ajv|compile)/.test(f)),
    [],
  );
});
