import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveTrait, traitBaseName } from "../../tasks/scoped-step/trait.ts";
import type { Application, ApplicationTrait } from "../../tasks/scoped-step/types.ts";

const ref = { namespace: "team-a", application: "payments", component: "api", trait: "scoped-identity" };
const roleArn = "arn:aws:iam::111122223333:role/payments-deployer";
const app = (traits: ApplicationTrait[]): Application => ({
  apiVersion: "core.oam.dev/v1beta1",
  kind: "Application",
  metadata: { name: "payments", namespace: "team-a" },
  spec: {
    components: [
      { name: "api", type: "webservice", traits },
      { name: "worker", type: "worker" },
    ],
  },
});

test("finds the one trait, ignoring a version suffix, and fills defaults", () => {
  const resolved = resolveTrait(
    app([{ type: "scaler" }, { type: "scoped-identity@v2", properties: { aws: { roleArn } } }]),
    ref,
  );
  assert.equal(resolved.type, "scoped-identity@v2");
  assert.equal(resolved.properties.audience, "sts.amazonaws.com");
  assert.equal(resolved.properties.delivery, "env");
  assert.equal(resolved.properties.aws?.sessionDuration, 900);
  assert.equal(traitBaseName("scoped-identity@v1.2"), "scoped-identity");
});

const cases: [string, Application, string, RegExp][] = [
  [
    "an unknown component",
    app([]),
    "ComponentNotFound",
    /component api not found .* components api, worker|component/,
  ],
  [
    "no trait of the type",
    app([{ type: "scaler" }]),
    "TraitNotFound",
    /trait scoped-identity not found on component api of Application payments in namespace team-a/,
  ],
  [
    "two traits of the type",
    app([
      { type: "scoped-identity", properties: { aws: { roleArn } } },
      { type: "scoped-identity@v1", properties: { aws: { roleArn } } },
    ]),
    "AmbiguousTrait",
    /2 scoped-identity traits/,
  ],
  [
    "properties failing the schema",
    app([{ type: "scoped-identity", properties: { aws: { roleArn: "not-an-arn-at-all-really" } } }]),
    "InvalidTrait",
    /roleArn/,
  ],
  [
    "an unknown property",
    app([{ type: "scoped-identity", properties: { aws: { roleArn }, lifetime: 5 } }]),
    "InvalidTrait",
    /unknown field "lifetime"/,
  ],
  [
    "a session duration out of STS range",
    app([{ type: "scoped-identity", properties: { aws: { roleArn, sessionDuration: 60 } } }]),
    "InvalidTrait",
    /sessionDuration/,
  ],
  [
    "more than ten policy ARNs",
    app([
      {
        type: "scoped-identity",
        properties: {
          aws: { roleArn, policyArns: Array.from({ length: 11 }, (_, i) => `arn:aws:iam::aws:policy/P${i}`) },
        },
      },
    ]),
    "InvalidTrait",
    /policyArns/,
  ],
  [
    "no role and AWS delivery",
    app([{ type: "scoped-identity", properties: { delivery: "env" } }]),
    "InvalidTrait",
    /aws.roleArn/,
  ],
  [
    "a session tag under the controller's own prefix",
    app([
      {
        type: "scoped-identity",
        properties: { aws: { roleArn, sessionTags: { "Scoped-Step:namespace": "prod", team: "a" } } },
      },
    ]),
    "ReservedSessionTag",
    /aws\.sessionTags sets Scoped-Step:namespace; tags under scoped-step: are set by the controller/,
  ],
  [
    "an Application in another namespace",
    { ...app([]), metadata: { name: "payments", namespace: "team-b" } },
    "CrossNamespaceReference",
    /not in namespace team-a/,
  ],
];

for (const [what, application, reason, message] of cases) {
  test(`fails on ${what} with ${reason}`, () => {
    const wanted = what === "an unknown component" ? { ...ref, component: "web" } : ref;
    assert.throws(
      () => resolveTrait(application, wanted),
      (err: { reason?: string; message?: string }) => {
        assert.equal(err.reason, reason);
        if (what !== "an unknown component") assert.match(err.message ?? "", message);
        return true;
      },
    );
  });
}
