import { test } from "node:test";
import assert from "node:assert/strict";
import { isReservedResultName, stepFromDefinition, stepFromParams } from "../../tasks/scoped-step/step.ts";
import type { Param } from "../../tasks/scoped-step/types.ts";

const identity: Param[] = [
  { name: "application", value: "payments" },
  { name: "component", value: "api" },
];

test("a run's own params describe the step", () => {
  const { spec, source } = stepFromParams([
    { name: "image", value: "alpine:3" },
    { name: "script", value: "echo hi > $(results.greeting.path)" },
    { name: "results", value: ["greeting"] },
    { name: "env", value: { STAGE: "prod" } },
    { name: "requests", value: { cpu: "100m" } },
    ...identity,
  ]);
  assert.equal(source, "params");
  assert.equal(spec.script, "echo hi > /tekton/results/greeting");
  assert.deepEqual(spec.env, [{ name: "STAGE", value: "prod" }]);
  assert.deepEqual(spec.resources, { requests: { cpu: "100m" } });
  assert.equal(spec.trait, "scoped-identity");
});

test("a definition's params are substituted, defaults applied, arrays expanded", () => {
  const { spec } = stepFromDefinition(
    {
      params: [
        { name: "bucket" },
        { name: "files", type: "array" },
        { name: "opts", type: "object", default: { region: "eu-west-1" } },
        { name: "app", default: "payments" },
      ],
      results: [{ name: "uri" }],
      image: "amazon/aws-cli",
      command: [
        "aws",
        "s3",
        "cp",
        "$(params.files[*])",
        "s3://$(params.bucket)/",
        "--region",
        "$(params.opts.region)",
      ],
      args: ["$(results.uri.path)"],
      application: "$(params.app)",
      component: "api",
    },
    [
      { name: "bucket", value: "artifacts" },
      { name: "files", value: ["a.txt", "b.txt"] },
    ],
    "ScopedStep upload",
  );
  assert.deepEqual(spec.command, [
    "aws",
    "s3",
    "cp",
    "a.txt",
    "b.txt",
    "s3://artifacts/",
    "--region",
    "eu-west-1",
  ]);
  assert.deepEqual(spec.args, ["/tekton/results/uri"]);
  assert.equal(spec.application, "payments");
});

test("shell command substitution in scripts is left alone", () => {
  const { spec } = stepFromParams([
    { name: "image", value: "alpine" },
    { name: "script", value: 'echo "$(date)"' },
    ...identity,
  ]);
  assert.equal(spec.script, 'echo "$(date)"');
});

const failures: [string, () => unknown, string][] = [
  ["unknown param", () => stepFromParams([{ name: "imag", value: "x" }]), "UnknownParam"],
  ["wrong param type", () => stepFromParams([{ name: "command", value: "ls" }]), "WrongParamType"],
  ["missing image", () => stepFromParams([{ name: "script", value: "true" }, ...identity]), "MissingParam"],
  [
    "missing application",
    () =>
      stepFromParams([
        { name: "image", value: "a" },
        { name: "script", value: "true" },
      ]),
    "MissingParam",
  ],
  [
    "script and command together",
    () =>
      stepFromParams([
        { name: "image", value: "a" },
        { name: "script", value: "x" },
        { name: "command", value: ["x"] },
        ...identity,
      ]),
    "InvalidStepSpec",
  ],
  [
    "namespace param",
    () => stepFromParams([{ name: "namespace", value: "other" }]),
    "CrossNamespaceReference",
  ],
  [
    "namespaced application",
    () => stepFromParams([{ name: "application", value: "other/payments" }]),
    "CrossNamespaceReference",
  ],
  [
    "duplicate param",
    () =>
      stepFromParams([
        { name: "image", value: "a" },
        { name: "image", value: "b" },
      ]),
    "DuplicateParam",
  ],
  ["empty customSpec", () => stepFromDefinition({}, [], "customSpec"), "InvalidStepSpec"],
  ["missing customSpec", () => stepFromDefinition(undefined, [], "customSpec"), "InvalidStepSpec"],
  [
    "unknown spec field",
    () => stepFromDefinition({ image: "a", scrpt: "x" }, [], "customSpec"),
    "InvalidStepSpec",
  ],
  [
    "undeclared param",
    () =>
      stepFromDefinition(
        { image: "a", script: "x", ...{ application: "p", component: "c" } },
        [{ name: "x", value: "1" }],
        "customSpec",
      ),
    "UnknownParam",
  ],
  [
    "required param missing",
    () =>
      stepFromDefinition(
        { params: [{ name: "x" }], image: "a", script: "$(params.x)", application: "p", component: "c" },
        [],
        "customSpec",
      ),
    "MissingParam",
  ],
  [
    "undeclared param reference",
    () =>
      stepFromDefinition(
        { image: "a", script: "$(params.nope)", application: "p", component: "c" },
        [],
        "customSpec",
      ),
    "UnknownParamReference",
  ],
  [
    "undeclared result path",
    () =>
      stepFromDefinition(
        { image: "a", script: "echo > $(results.out.path)", application: "p", component: "c" },
        [],
        "customSpec",
      ),
    "UndeclaredResult",
  ],
  [
    "array param inside a string",
    () =>
      stepFromDefinition(
        {
          params: [{ name: "l", type: "array" }],
          image: "a",
          script: "echo $(params.l)",
          application: "p",
          component: "c",
        },
        [{ name: "l", value: ["1"] }],
        "customSpec",
      ),
    "WrongParamType",
  ],
  [
    "param of the wrong declared type",
    () =>
      stepFromDefinition(
        { params: [{ name: "l", type: "array" }], image: "a", script: "x", application: "p", component: "c" },
        [{ name: "l", value: "1" }],
        "customSpec",
      ),
    "WrongParamType",
  ],
  [
    "result declared twice",
    () =>
      stepFromDefinition(
        {
          results: [{ name: "a" }, { name: "a" }],
          image: "a",
          script: "x",
          application: "p",
          component: "c",
        },
        [],
        "customSpec",
      ),
    "InvalidStepSpec",
  ],
];

test("result names the controller writes about the identity are reserved, however the step declares them", () => {
  const reserved = [
    "identity-subject",
    "aws-role-arn",
    "credentials-expiration",
    "revoked-at",
    "revocation",
    "token-id",
    "Identity-Subject",
  ];
  for (const name of reserved) {
    assert.equal(isReservedResultName(name), true, name);
    const declared = () =>
      stepFromDefinition(
        { results: [{ name }], image: "a", script: "x", application: "p", component: "c" },
        [],
        "ScopedStep deploy",
      );
    assert.throws(declared, (err: { reason?: string; message?: string }) => {
      assert.equal(err.reason, "ReservedResultName", err.message);
      assert.match(
        err.message ?? "",
        new RegExp(`ScopedStep deploy declares result ${name}, but results named .*rename it`),
      );
      return true;
    });
    assert.throws(
      () =>
        stepFromParams([
          { name: "image", value: "a" },
          { name: "script", value: "x" },
          { name: "results", value: [name] },
          ...identity,
        ]),
      (err: { reason?: string }) => err.reason === "ReservedResultName",
    );
  }
  for (const name of ["subject", "role-arn", "my-identity", "expiration"])
    assert.equal(isReservedResultName(name), false, name);
});

for (const [what, run, reason] of failures) {
  test(`rejects ${what} with ${reason}`, () => {
    assert.throws(run, (err: { reason?: string; message?: string }) => {
      assert.equal(err.reason, reason, err.message);
      assert.ok((err.message ?? "").length > 10, "the message says what to fix");
      return true;
    });
  });
}
