import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { CustomRunSpec, Param } from "../../tasks/scoped-step/types.ts";
import { CreateKeyCommand, DisableKeyCommand } from "@aws-sdk/client-kms";
import { startController } from "../support/controller.ts";
import { kmsCredentials, startLocalKms } from "../support/kms.ts";
import { condition, paymentsApp, roleArn, scopedStepRef, startWorld } from "../support/world.ts";

// Every bad input ends the run Succeeded=False with a specific reason and a message that says
// what to fix, and the controller stays healthy: no crash, no hot retry loop.

const step: Param[] = [
  { name: "image", value: "alpine" },
  { name: "script", value: "true" },
];
const withIdentity = (application: string, component = "api"): Param[] => [
  ...step,
  { name: "application", value: application },
  { name: "component", value: component },
];
const trait = (properties: unknown) => [
  { name: "api", type: "webservice", traits: [{ type: "scoped-identity", properties }] },
];

/** A step given inline (customSpec) with these fields, as the payments api component. */
const inline = (
  spec: Record<string, unknown>,
  params: Param[] = [],
  workspaces?: unknown[],
): Partial<CustomRunSpec> => ({
  customRef: undefined,
  customSpec: {
    apiVersion: "scopedstep.dev/v1alpha1",
    kind: "ScopedStep",
    spec: { image: "alpine", application: "payments", component: "api", ...spec },
  },
  params,
  ...(workspaces ? { workspaces } : {}),
});

/** Each workspace mistake, on a step declaring one writable workspace `site`. */
function workspaceCases(): Case[] {
  const declares = (extra: Record<string, unknown> = {}) => ({
    workspaces: [{ name: "site" }],
    script: "ls $(workspaces.site.path)",
    ...extra,
  });
  const ws = (name: string, workspaces: unknown[], reason: string, message: RegExp, extra = {}): Case => ({
    name,
    spec: inline(declares(extra), [], workspaces),
    reason,
    message,
  });
  return [
    ws(
      "workspace-missing",
      [],
      "MissingWorkspace",
      /customSpec needs workspace site, and the run binds none/,
    ),
    ws(
      "workspace-unknown",
      [
        { name: "site", emptyDir: {} },
        { name: "cache", emptyDir: {} },
      ],
      "UnknownWorkspace",
      /workspace cache is bound but customSpec declares only site/,
    ),
    ws(
      "workspace-read-only",
      [{ name: "site", configMap: { name: "site" } }],
      "WorkspaceReadOnly",
      /bound to a configMap, which is mounted read-only, but customSpec declares it writable/,
    ),
    ws(
      "workspace-template",
      [{ name: "site", volumeClaimTemplate: { spec: {} } }],
      "UnsupportedWorkspaceBinding",
      /volumeClaimTemplate/,
    ),
    ws("workspace-no-source", [{ name: "site" }], "InvalidWorkspaceBinding", /exactly one of/),
    ws(
      "workspace-escapes",
      [{ name: "site", emptyDir: {}, subPath: "../../etc" }],
      "InvalidWorkspaceBinding",
      /subPath "\.\.\/\.\.\/etc"/,
    ),
    ws(
      "workspace-credentials",
      [{ name: "site", secret: { secretName: "other-run-credentials-0" } }],
      "WorkspaceNotAllowed",
      /Secret other-run-credentials-0, which is named as a run's credential Secret/,
      { workspaces: [{ name: "site", readOnly: true }] },
    ),
    ws(
      "workspace-reference",
      [{ name: "site", emptyDir: {} }],
      "UnknownWorkspaceReference",
      /\$\(workspaces\.sight\.path\) names nothing/,
      { script: "ls $(workspaces.sight.path)" },
    ),
  ];
}

interface Case {
  name: string;
  spec: Partial<CustomRunSpec>;
  reason: string;
  message: RegExp;
}

const cases: Case[] = [
  {
    name: "unknown-param",
    spec: { params: [...withIdentity("payments"), { name: "imagePullPolicy", value: "x" }] },
    reason: "UnknownParam",
    message: /param imagePullPolicy is not known/,
  },
  {
    name: "wrong-type",
    spec: {
      params: [
        ...withIdentity("payments").filter((p) => p.name !== "script"),
        { name: "command", value: "ls -l" },
      ],
    },
    reason: "WrongParamType",
    message: /command must be of type array/,
  },
  {
    name: "env-as-array",
    spec: { params: [...withIdentity("payments"), { name: "env", value: ["A=1"] }] },
    reason: "WrongParamType",
    message: /env must be of type object/,
  },
  {
    name: "no-image",
    spec: { params: withIdentity("payments").filter((p) => p.name !== "image") },
    reason: "MissingParam",
    message: /param image is required/,
  },
  {
    name: "no-script",
    spec: { params: withIdentity("payments").filter((p) => p.name !== "script") },
    reason: "MissingParam",
    message: /script or command/,
  },
  {
    name: "no-application",
    spec: { params: step },
    reason: "MissingParam",
    message: /param application is required/,
  },
  {
    name: "no-component",
    spec: { params: [...step, { name: "application", value: "payments" }] },
    reason: "MissingParam",
    message: /param component is required/,
  },
  {
    name: "duplicate-param",
    spec: { params: [...withIdentity("payments"), { name: "image", value: "b" }] },
    reason: "DuplicateParam",
    message: /image is given more than once/,
  },
  {
    name: "bad-app-name",
    spec: { params: withIdentity("Payments_App") },
    reason: "InvalidParams",
    message: /not a valid Application name/,
  },
  {
    name: "unknown-app",
    spec: { params: withIdentity("ledger") },
    reason: "ApplicationNotFound",
    message: /Application ledger not found in namespace/,
  },
  {
    name: "unknown-component",
    spec: { params: withIdentity("payments", "web") },
    reason: "ComponentNotFound",
    message: /component web not found in Application payments .* it has components api/,
  },
  {
    name: "no-trait",
    spec: { params: withIdentity("plain") },
    reason: "TraitNotFound",
    message: /trait scoped-identity not found on component api of Application plain/,
  },
  {
    name: "two-traits",
    spec: { params: withIdentity("twice") },
    reason: "AmbiguousTrait",
    message: /has 2 scoped-identity traits/,
  },
  { name: "bad-role", spec: { params: withIdentity("badrole") }, reason: "InvalidTrait", message: /roleArn/ },
  {
    name: "unknown-trait-field",
    spec: { params: withIdentity("typo") },
    reason: "InvalidTrait",
    message: /unknown field "sessionDurationSeconds"/,
  },
  {
    name: "short-session",
    spec: { params: withIdentity("short") },
    reason: "InvalidTrait",
    message: /sessionDuration: must be >= 900/,
  },
  {
    name: "cross-ns-app",
    spec: { params: withIdentity("team-b/payments") },
    reason: "CrossNamespaceReference",
    message: /must be in the run's own namespace/,
  },
  {
    name: "cross-ns-param",
    spec: { params: [...withIdentity("payments"), { name: "namespace", value: "team-b" }] },
    reason: "CrossNamespaceReference",
    message: /always read from the run's own namespace/,
  },
  {
    name: "unknown-scopedstep",
    spec: { customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", name: "nope" } },
    reason: "ScopedStepNotFound",
    message: /ScopedStep nope not found in namespace/,
  },
  {
    name: "empty-customspec",
    spec: {
      customRef: undefined,
      customSpec: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", spec: {} },
    },
    reason: "InvalidStepSpec",
    message: /empty spec/,
  },
  {
    name: "customspec-typo",
    spec: {
      customRef: undefined,
      customSpec: {
        apiVersion: "scopedstep.dev/v1alpha1",
        kind: "ScopedStep",
        spec: { image: "a", scriptt: "x" },
      },
    },
    reason: "InvalidStepSpec",
    message: /unknown field "scriptt"/,
  },
  {
    name: "script-and-command",
    spec: { params: [...withIdentity("payments"), { name: "command", value: ["ls"] }] },
    reason: "InvalidStepSpec",
    message: /both script and command/,
  },
  {
    name: "undeclared-result-path",
    spec: {
      params: [
        ...withIdentity("payments").filter((p) => p.name !== "script"),
        { name: "script", value: "echo > $(results.out.path)" },
      ],
    },
    reason: "UndeclaredResult",
    message: /does not declare/,
  },
  {
    name: "scopedstep-missing-param",
    spec: {
      customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", name: "upload" },
      params: [],
    },
    reason: "MissingParam",
    message: /param bucket is required by ScopedStep upload/,
  },
  {
    name: "scopedstep-extra-param",
    spec: {
      customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", name: "upload" },
      params: [
        { name: "bucket", value: "b" },
        { name: "region", value: "x" },
      ],
    },
    reason: "UnknownParam",
    message: /param region is not declared by ScopedStep upload; it declares bucket/,
  },
  {
    name: "bad-timeout",
    spec: { timeout: "ten minutes", params: withIdentity("payments") },
    reason: "InvalidTimeout",
    message: /not a duration/,
  },
  {
    name: "days-timeout",
    spec: { timeout: "1d", params: withIdentity("payments") },
    reason: "InvalidTimeout",
    message: /Go duration/,
  },
  {
    name: "undeclared-result",
    spec: {
      params: [
        ...withIdentity("payments").filter((p) => p.name !== "script"),
        // Tekton's entrypoint reads declared result files only, but appends its own entries to what
        // the termination file already holds: an entry forged there is still checked.
        { name: "script", value: `printf '[{"key":"secret","value":"x","type":1}]' > /tekton/termination` },
      ],
    },
    reason: "UndeclaredResult",
    message: /wrote result secret, which it does not declare/,
  },
  {
    name: "oversized-results",
    spec: {
      params: [
        ...withIdentity("payments").filter((p) => p.name !== "script"),
        { name: "script", value: "head -c 6000 /dev/zero | tr '\\0' y > $(results.r.path)" },
        { name: "results", value: ["r"] },
      ],
    },
    reason: "ResultsTooLarge",
    message: /at most 4096 bytes/,
  },
  {
    name: "array-looking-result",
    spec: {
      params: [
        ...withIdentity("payments").filter((p) => p.name !== "script"),
        { name: "script", value: 'echo \'["a","b"]\' > $(results.r.path)' },
        { name: "results", value: ["r"] },
      ],
    },
    reason: "ResultTypeMismatch",
    message: /declare it with type: array/,
  },
  {
    name: "image-pull",
    spec: {
      params: [
        ...withIdentity("payments").filter((p) => p.name !== "image"),
        { name: "image", value: "kubelet.test/image-pull-error" },
      ],
    },
    reason: "StepImagePullFailed",
    message: /could not be pulled/,
  },
  {
    name: "reserved-result",
    spec: { params: [...withIdentity("payments"), { name: "results", value: ["aws-role-arn"] }] },
    reason: "ReservedResultName",
    message: /declares result aws-role-arn, but results named .*rename it/,
  },
  {
    name: "reserved-tag",
    spec: { params: withIdentity("reserved-tag") },
    reason: "ReservedSessionTag",
    message: /aws\.sessionTags sets scoped-step:run-uid; tags under scoped-step: are set by the controller/,
  },
  {
    name: "tag-not-allowed",
    spec: { params: withIdentity("finance-tag") },
    reason: "SessionTagNotAllowed",
    message: /session tag team=finance not allowed .*allowed tags: team=payments\. Change aws\.sessionTags/,
  },
  {
    name: "transitive-not-allowed",
    spec: { params: withIdentity("transitive") },
    reason: "TransitiveTagKeyNotAllowed",
    message: /transitive tag key team not allowed .*Change aws\.transitiveTagKeys/,
  },
  {
    name: "token-only-audience",
    spec: { params: withIdentity("raw-gcp") },
    reason: "TokenOnlyAudienceNotAllowed",
    message: /token-only delivery for audience gcp is not allowed .*Use delivery env or file/,
  },
  {
    name: "token-only-sts",
    spec: { params: withIdentity("raw-sts") },
    reason: "UnscopedStsTokenNotAllowed",
    message:
      /audience sts\.amazonaws\.com, which AWS STS accepts, is not allowed .*could assume roles itself/,
  },
  {
    name: "token-only-lifetime",
    spec: { params: withIdentity("raw-long") },
    reason: "TokenLifetimeNotAllowed",
    message:
      /token lifetime 600 s is more than the 300 s allowed for token-only delivery .*Lower tokenExpirationSeconds/,
  },
  {
    name: "too-many-retries",
    spec: { retries: 4, params: withIdentity("payments") },
    reason: "RetriesNotAllowed",
    message: /retries 4 is more than the 3 allowed .*Lower the task's retries/,
  },
  ...workspaceCases(),
  {
    name: "issuer-mode-required",
    spec: { params: withIdentity("external-only") },
    reason: "IssuerModeNotAllowed",
    message:
      /policy .*-a-external requires tokens from the organisation's identity provider \(spec.issuer: external\), but this controller runs with issuer-mode self: the platform operator must set issuer-mode external/,
  },
  {
    name: "unknown-context",
    spec: {
      params: [
        ...withIdentity("payments").filter((p) => p.name !== "script"),
        { name: "script", value: "echo $(context.pipeline.name)" },
      ],
    },
    reason: "UnknownContextReference",
    message: /\$\(context\.pipeline\.name\) names nothing: known here are .*\$\(context\.taskRun\.name\)/,
  },
  {
    name: "array-index-out-of-range",
    spec: inline({ params: [{ name: "files", type: "array" }], script: "cat $(params.files[2])" }, [
      { name: "files", value: ["a", "b"] },
    ]),
    reason: "ParamIndexOutOfRange",
    message: /\$\(params\.files\[2\]\): array param files has 2 items/,
  },
  {
    name: "enum",
    spec: inline({ params: [{ name: "stage", enum: ["dev", "prod"] }], script: "echo $(params.stage)" }, [
      { name: "stage", value: "qa" },
    ]),
    reason: "InvalidParamValue",
    message: /param stage of customSpec is "qa", which is not one of dev, prod/,
  },
  {
    name: "object-missing-key",
    spec: inline(
      {
        params: [{ name: "target", type: "object", properties: { bucket: {} } }],
        script: "echo $(params.target.bucket)",
      },
      [{ name: "target", value: { prefix: "x" } }],
    ),
    reason: "InvalidParamValue",
    message: /object param target of customSpec lacks key bucket/,
  },
  {
    name: "resolver-params-only",
    spec: { customRef: { ...scopedStepRef, params: [{ name: "url", value: "https://git.example/c.git" }] } },
    reason: "InvalidResolverRef",
    message: /customRef.params is set but customRef.resolver is not/,
  },
  {
    name: "resolver-and-name",
    spec: { customRef: { ...scopedStepRef, name: "upload", resolver: "git" } },
    reason: "InvalidResolverRef",
    message: /customRef sets both name \(upload\) and resolver \(git\)/,
  },
];

test("a corpus of bad inputs each fail with a specific reason and an actionable message", async () => {
  const w = await startWorld();
  await w.createApplication("payments", paymentsApp);
  await w.createApplication("plain", [{ name: "api", type: "webservice" }]);
  await w.createApplication("twice", [
    {
      name: "api",
      type: "webservice",
      traits: [
        { type: "scoped-identity", properties: { aws: { roleArn } } },
        { type: "scoped-identity@v1", properties: { aws: { roleArn } } },
      ],
    },
  ]);
  await w.createApplication("badrole", trait({ aws: { roleArn: "arn:aws:iam::12:user/someone-else" } }));
  await w.createApplication("typo", trait({ aws: { roleArn }, sessionDurationSeconds: 900 }));
  await w.createApplication("short", trait({ aws: { roleArn, sessionDuration: 60 } }));
  // A second policy, beside the permissive one, with the rules for tags and raw tokens.
  await w.createPolicy("tags-and-tokens", {
    deliveryModes: ["env", "token-only"],
    tokenOnly: { audiences: ["sts.amazonaws.com", "vault"] },
    aws: { allowedRoleArns: [roleArn], allowedSessionTags: { team: ["payments"] } },
  });
  await w.createApplication(
    "reserved-tag",
    trait({ aws: { roleArn, sessionTags: { "scoped-step:run-uid": "x" } } }),
  );
  await w.createApplication("finance-tag", trait({ aws: { roleArn, sessionTags: { team: "finance" } } }));
  await w.createApplication(
    "transitive",
    trait({ aws: { roleArn, sessionTags: { team: "payments" }, transitiveTagKeys: ["team"] } }),
  );
  // Sorted before allow-all, so it decides for the one role it allows: only through the IdP.
  const externalRole = "arn:aws:iam::111122223333:role/external-only";
  await w.createPolicy("a-external", { issuer: "external", aws: { allowedRoleArns: [externalRole] } });
  await w.createApplication("external-only", trait({ aws: { roleArn: externalRole } }));
  await w.createApplication("raw-gcp", trait({ delivery: "token-only", audience: "gcp" }));
  await w.createApplication("raw-sts", trait({ delivery: "token-only" }));
  await w.createApplication(
    "raw-long",
    trait({ delivery: "token-only", audience: "vault", tokenExpirationSeconds: 600 }),
  );
  await w.createScopedStep("upload", {
    params: [{ name: "bucket" }],
    image: "amazon/aws-cli",
    script: "aws s3 ls s3://$(params.bucket)",
    application: "payments",
    component: "api",
  });
  assert.ok(cases.length >= 25);
  for (const c of cases) await w.createRun(c.name, c.spec);

  for (const c of cases) {
    const run = await w.waitDone(c.name);
    const cond = condition(run);
    assert.equal(cond?.status, "False", `${c.name}: ${cond?.message ?? ""}`);
    assert.equal(cond?.reason, c.reason, `${c.name}: ${cond?.message ?? ""}`);
    assert.match(cond?.message ?? "", c.message, c.name);
    assert.doesNotMatch(cond?.message ?? "", /\n\s+at /, `${c.name}: no stack trace in the message`);
  }

  // Still healthy: alive, no failed passes, and a good run still goes through.
  await w.createRun("still-fine", { params: withIdentity("payments") });
  assert.equal(condition(await w.waitDone("still-fine"))?.status, "True");
  assert.equal(w.controller?.child.exitCode, null);
  const failedPasses =
    w.controller?.logLines().filter((l) => l.msg === "reconcile failed; will retry with backoff") ?? [];
  assert.deepEqual(failedPasses, [], "no reconcile pass failed");
  // No hot loop: a finished bad run is not reconciled over and over.
  const passes = (w.controller?.logLines() ?? []).filter((l) => l.key === `${w.ns}/bad-timeout`).length;
  assert.ok(passes < 15, `bad-timeout was reconciled ${passes} times`);
});

// The KMS key store's misconfigurations are the operator's, not a run's: each stops the start
// (exit 2) with a message naming the setting, before any run could be signed with something else.
// A key that goes bad while running fails the run instead (SigningKeyUnavailable, kms-run.test.ts).
test("each KMS key store misconfiguration stops the controller at start with a message naming the setting", async () => {
  const w = await startWorld({ controller: false, policy: false });
  const kms = await startLocalKms();
  const symmetric = (await kms.client.send(new CreateKeyCommand({}))).KeyMetadata?.Arn ?? "";
  const disabled = await kms.createSigningKey();
  await kms.client.send(new DisableKeyCommand({ KeyId: disabled }));
  const secp256k1 = await kms.createSigningKey("ECC_SECG_P256K1");
  const store = ["--credentials=aws", "--issuer-url=http://127.0.0.1:9", "--allow-insecure-issuer=true"];
  const kmsFlags = (keyId: string) => [
    ...store,
    "--signing-key-store=kms",
    `--kms-key-id=${keyId}`,
    `--kms-endpoint=${kms.endpoint}`,
    "--kms-region=eu-west-1",
  ];
  const cases: { name: string; flags: string[]; message: RegExp }[] = [
    {
      name: "kms-key-id-missing",
      flags: [...store, "--signing-key-store=kms"],
      message: /--kms-key-id \(SCOPED_STEP_KMS_KEY_ID\) is required with --signing-key-store=kms/,
    },
    {
      name: "kms-key-id-malformed",
      flags: kmsFlags("scoped-step-signing"),
      message: /--kms-key-id .* must be alias\/NAME, a key id, or a key or alias ARN/,
    },
    {
      name: "kms-settings-without-kms-store",
      flags: [...store, "--kms-key-id=alias/scoped-step-signing"],
      message: /--kms-key-id .* is set, but --signing-key-store .* is not kms/,
    },
    {
      name: "kms-alias-not-found",
      flags: kmsFlags("alias/does-not-exist"),
      message: /KMS refused DescribeKey on alias\/does-not-exist: NotFoundException: .* kms-key-id/,
    },
    {
      name: "kms-key-symmetric",
      flags: kmsFlags(symmetric),
      message: /kms-key-id .* cannot sign tokens: its key usage is ENCRYPT_DECRYPT, not SIGN_VERIFY/,
    },
    {
      name: "kms-key-spec",
      flags: kmsFlags(secp256k1),
      message:
        /kms-key-id .* cannot sign tokens: its key spec is ECC_SECG_P256K1; tokens are signed with ECC_NIST_P256/,
    },
    {
      name: "kms-key-disabled",
      flags: kmsFlags(disabled),
      message: /kms-key-id .* cannot sign tokens: its state is Disabled, not Enabled/,
    },
  ];
  for (const c of cases) {
    const controller = startController({
      kubeconfig: w.cluster.kubeconfig,
      namespace: w.controllerNs,
      watchNamespaces: [w.ns],
      flags: c.flags,
      env: {
        AWS_ACCESS_KEY_ID: kmsCredentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: kmsCredentials.secretAccessKey,
      },
    });
    assert.equal(await controller.exited, 2, `${c.name}: ${controller.output()}`);
    assert.match(controller.output(), c.message, c.name);
    assert.doesNotMatch(controller.output(), /became leader/, `${c.name}: stopped before taking any work`);
  }
});

test("a bad external issuer setting stops the controller at start with a message naming the setting and the field", async () => {
  const w = await startWorld({ controller: false, kubelet: false, policy: false });
  const dir = mkdtempSync(path.join(tmpdir(), "external-issuer-"));
  const secret = path.join(dir, "client-secret");
  writeFileSync(secret, "s3cr3t-value\n");
  const idp = {
    issuer: "https://idp.example.com/oauth2/default",
    clientId: "scoped-step",
    clientSecretFile: secret,
  };
  const cases: [string, string[], RegExp][] = [
    [
      "mode without settings",
      [],
      /--external-issuer \(SCOPED_STEP_EXTERNAL_ISSUER\) is required with --issuer-mode=external/,
    ],
    ["not a map", ["--external-issuer=just a string"], /--external-issuer .*: not a YAML map/],
    ["not YAML", ["--external-issuer={issuer: [}"], /--external-issuer .*: not valid YAML/],
    [
      "no client",
      [`--external-issuer=${JSON.stringify({ ...idp, clientId: undefined })}`],
      /: clientId is required/,
    ],
    [
      "plain http",
      [`--external-issuer=${JSON.stringify({ ...idp, issuer: "http://idp.example.com" })}`],
      /: issuer must be an https URL/,
    ],
    [
      "no secret file",
      [`--external-issuer=${JSON.stringify({ ...idp, clientSecretFile: `${dir}/nope` })}`],
      /: clientSecretFile \(for clientAuth client_secret_basic\): no file at/,
    ],
    [
      "no private key",
      [
        `--external-issuer=${JSON.stringify({ ...idp, clientSecretFile: undefined, clientAuth: "private_key_jwt" })}`,
      ],
      /: privateKeyFile \(for clientAuth private_key_jwt\) is required/,
    ],
    [
      "unknown auth",
      [`--external-issuer=${JSON.stringify({ ...idp, clientAuth: "tls_client_auth" })}`],
      /: clientAuth must be one of client_secret_basic, client_secret_post, private_key_jwt/,
    ],
    [
      "unknown grant",
      [`--external-issuer=${JSON.stringify({ ...idp, grant: "password" })}`],
      /: grant must be one of token-exchange, client-credentials/,
    ],
    [
      "token type",
      [`--external-issuer=${JSON.stringify({ ...idp, requestedTokenType: "saml2" })}`],
      /: requestedTokenType must be one of/,
    ],
    [
      "type without exchange",
      [
        `--external-issuer=${JSON.stringify({ ...idp, grant: "client-credentials", requestedTokenType: "urn:ietf:params:oauth:token-type:jwt" })}`,
      ],
      /: requestedTokenType is for grant token-exchange only/,
    ],
    [
      "tenant-chosen fact",
      [`--external-issuer=${JSON.stringify({ ...idp, expect: { sub: "{subject}", run: "{pipelineRun}" } })}`],
      /: expect.run uses unknown placeholder \{pipelineRun\}/,
    ],
    [
      "audience by mapping",
      [`--external-issuer=${JSON.stringify({ ...idp, expect: { sub: "{subject}", aud: "x" } })}`],
      /: expect.aud: aud is always checked/,
    ],
    [
      "no subject check",
      [`--external-issuer=${JSON.stringify({ ...idp, expect: { namespace: "{namespace}" } })}`],
      /: expect must check at least one claim against \{subject\}/,
    ],
    [
      "reserved parameter",
      [`--external-issuer=${JSON.stringify({ ...idp, parameters: { subject_token: "{subject}" } })}`],
      /: parameters.subject_token is set by the controller itself/,
    ],
    [
      "unknown field",
      [`--external-issuer=${JSON.stringify({ ...idp, clientSecret: "inline" })}`],
      /: unknown field clientSecret/,
    ],
    [
      "settings without the mode",
      [`--external-issuer=${JSON.stringify(idp)}`, "--issuer-mode=self"],
      /--external-issuer .* is set but --issuer-mode .* is not external/,
    ],
  ];
  const outcomes = await Promise.all(
    cases.map(async ([name, flags]) => {
      const c = startController({
        kubeconfig: w.cluster.kubeconfig,
        namespace: w.controllerNs,
        watchNamespaces: [w.ns],
        flags: [
          "--credentials=aws",
          "--issuer-url=https://oidc.example.com",
          "--issuer-mode=external",
          ...flags,
        ],
      });
      return { name, code: await c.exited, output: c.output() };
    }),
  );
  for (const [i, [name, , message]] of cases.entries()) {
    const outcome = outcomes[i];
    assert.equal(outcome?.code, 2, `${name}: ${outcome?.output ?? ""}`);
    assert.match(outcome?.output ?? "", message, name);
    assert.ok(!outcome?.output.includes("s3cr3t-value"), `${name}: the client secret was printed`);
  }
});
