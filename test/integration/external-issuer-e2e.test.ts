// External issuer mode end to end: a PipelineRun (Tekton's own controller, steps on the test
// kubelet) drives our CustomRun; the controller signs the run token, the organisation's IdP
// (oidc-provider on loopback) exchanges it for its own token, STS (the AWS peer, which trusts the
// IdP and not the controller) issues the session the step uses, and the run's end revokes it.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { startTestIdp } from "../support/idp.ts";
import { account, deployerApp, deployRole, sigv4 } from "../support/identity-world.ts";
import {
  assertNoSecretWritten,
  pipelineCondition,
  pipelineResults,
  startTektonWorld,
  writtenByRuns,
} from "../support/tekton.ts";
import { statusOf, tenantConfig } from "../support/tenant.ts";
import { eventually } from "../support/wait.ts";
import { condition, resultsOf } from "../support/world.ts";

const scopedStep = { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" } as const;

const idp = await startTestIdp();
after(() => idp.stop());
const w = await startTektonWorld(
  {
    issuer: "external",
    revocation: "deny-policy",
    aws: { allowedRoleArns: [`arn:aws:iam::${account}:role/payments-*`], maxSessionDuration: 3600 },
    deliveryModes: ["env"],
  },
  { awsTrusts: idp.issuer, controller: false },
);
// The IdP trusts the controller's issuer for subject tokens, as an operator registers it.
idp.trust(w.issuer);
const secretFile = path.join(mkdtempSync(path.join(tmpdir(), "idp-client-")), "client-secret");
writeFileSync(secretFile, idp.clientSecret);
const externalIssuer = {
  issuer: idp.issuer,
  clientId: idp.clientId,
  clientSecretFile: secretFile,
};
await w.startController(
  [...w.controllerFlags, "--issuer-mode=external", `--external-issuer=${JSON.stringify(externalIssuer)}`],
  w.controllerEnv,
);
await w.createApplication("payments", deployerApp);

test("a PipelineRun's step gets AWS credentials through the organisation's IdP, and they are revoked at its end", async () => {
  await w.createPipelineRun("release", {
    pipelineSpec: {
      tasks: [
        {
          name: "deploy",
          taskSpec: {
            ...scopedStep,
            spec: {
              results: [{ name: "caller" }],
              image: "amazon/aws-cli",
              env: [{ name: "AWS_ENDPOINT_URL", value: w.peer.endpoint }],
              script: [
                "set -e",
                `${sigv4("sts")} -d "Action=GetCallerIdentity&Version=2011-06-15" "$AWS_ENDPOINT_URL" | sed -n 's:.*<Arn>\\(.*\\)</Arn>.*:\\1:p' > $(results.caller.path)`,
              ].join("\n"),
              application: "payments",
              component: "api",
            },
          },
        },
      ],
      results: [{ name: "caller", value: "$(tasks.deploy.results.caller)" }],
    },
  });
  const pr = await w.waitPipelineRunDone("release", 180_000);
  assert.equal(pipelineCondition(pr)?.status, "True", pipelineCondition(pr)?.message);
  const [run] = await w.customRuns("release");
  assert.ok(run);
  const results = resultsOf(run);
  assert.equal(condition(run)?.status, "True");
  assert.equal(results["identity-issuer"], idp.issuer, "the step's identity is the IdP's");
  assert.equal(results["identity-subject"], `system:scoped-step:${w.ns}:payments:api`);
  const assumed = `arn:aws:sts::${account}:assumed-role/payments-deployer/${results["aws-session-name"] ?? ""}`;
  assert.equal(
    pipelineResults(pr).caller,
    assumed,
    "the step called AWS as the session the IdP's token bought",
  );
  assert.deepEqual(
    idp.requests.map((r) => [r.grant, r.outcome]),
    [["urn:ietf:params:oauth:grant-type:token-exchange", "ok"]],
  );
  const metrics = await (await fetch(`${w.issuer}/metrics`)).text();
  const requests = /^scoped_step_idp_request_duration_seconds_count\{outcome="ok"\} (\d+)$/m.exec(metrics);
  assert.equal(requests?.[1], "1", "the IdP request is in the controller's metrics");
  // STS saw the IdP's token: the session's provider is the IdP.
  const session = w.peer.sessions().find((s) => s.sourceIdentity === results["aws-source-identity"]);
  assert.ok(session, "STS issued the session");

  // Revoked: the Secret is gone and the session is denied on the role by its source identity.
  await eventually("the run's credentials to be revoked", async () => {
    const deny = w.peer.rolePolicies("payments-deployer")["scoped-step-revocations"] ?? "";
    const secret = await w.secretData(`${run.metadata.name}-credentials-0`);
    return !secret && deny.includes(results["aws-source-identity"] ?? "missing") ? true : undefined;
  });

  // Nothing private anywhere the runs wrote: not the client secret, not the IdP's token, not the
  // session.
  await assertNoSecretWritten(w);
  const written = await writtenByRuns(w);
  assert.ok(idp.issued.length > 0);
  for (const value of [idp.clientSecret, ...idp.issued]) {
    assert.equal(written.includes(value), false, "the client secret or an IdP token was written");
  }
});

test("a tenant cannot choose the IdP, the client or the claim mapping through its trait, its run or the policy", async () => {
  const issuedBefore = idp.issued.length;
  const kc = await tenantConfig(w.cluster, w.ns);
  const objects = kc.makeApiClient(CustomObjectsApi);
  // The trait's schema has no such fields: the run fails before anything is minted.
  await objects.createNamespacedCustomObject({
    group: "core.oam.dev",
    version: "v1beta1",
    namespace: w.ns,
    plural: "applications",
    body: {
      apiVersion: "core.oam.dev/v1beta1",
      kind: "Application",
      metadata: { name: "chosen-idp" },
      spec: {
        components: [
          {
            name: "api",
            type: "webservice",
            traits: [
              {
                type: "scoped-identity",
                properties: {
                  aws: { roleArn: deployRole },
                  issuer: "https://attacker.example",
                  externalIssuer: { clientId: "mine", expect: { sub: "anything" } },
                },
              },
            ],
          },
        ],
      },
    },
  });
  const runBody = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: "tekton.dev/v1beta1",
    kind: "CustomRun",
    metadata: { name },
    spec: {
      customSpec: {
        ...scopedStep,
        spec: { image: "alpine", script: "true", application: "chosen-idp", component: "api", ...spec },
      },
    },
  });
  const runs = { group: "tekton.dev", version: "v1beta1", namespace: w.ns, plural: "customruns" };
  await objects.createNamespacedCustomObject({ ...runs, body: runBody("trait-idp", {}) });
  await objects.createNamespacedCustomObject({
    ...runs,
    body: runBody("step-idp", { application: "payments", issuer: "https://attacker.example" }),
  });
  const traitRun = await w.waitDone("trait-idp");
  assert.equal(condition(traitRun)?.status, "False");
  assert.equal(condition(traitRun)?.reason, "InvalidTrait", condition(traitRun)?.message);
  const stepRun = await w.waitDone("step-idp");
  assert.equal(condition(stepRun)?.status, "False");
  assert.match(condition(stepRun)?.message ?? "", /issuer/);

  // Neither the policy (cluster-scoped) nor the controller's settings are the tenant's to change.
  assert.equal(
    await statusOf(
      objects.patchClusterCustomObject({
        group: "scopedstep.dev",
        version: "v1alpha1",
        plural: "scopedsteppolicies",
        name: `${w.ns}-identity`,
        body: [{ op: "remove", path: "/spec/issuer" }],
      }),
    ),
    403,
  );
  const core = kc.makeApiClient(CoreV1Api);
  assert.equal(
    await statusOf(
      core.createNamespacedConfigMap({
        namespace: w.controllerNs,
        body: { metadata: { name: "scoped-step-config" }, data: { "issuer-mode": "self" } },
      }),
    ),
    403,
  );
  assert.equal(idp.issued.length, issuedBefore, "the IdP issued nothing for the tenant's runs");
});
