// Attacks on the step's identity, played as the namespace tenant (the `edit` user, by
// impersonation) through the real API server, against the real controller and the AWS peer. Each
// path is one a review found open: session tags of the tenant's choosing, a raw token STS accepts,
// subjects built from what the tenant wrote, forged identity results and unbounded retries.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { sourceIdentity } from "../../tasks/scoped-step/credentials/aws.ts";
import { policyApi, type PolicyStatus } from "../../tasks/scoped-step/policy-schema.ts";
import { stepState } from "../../tasks/scoped-step/status.ts";
import type { CustomRun, CustomRunSpec } from "../../tasks/scoped-step/types.ts";
import { createApplication, identityComponent } from "../support/application.ts";
import {
  account,
  sigv4,
  startIdentityWorld,
  stepParams,
  type IdentityWorld,
} from "../support/identity-world.ts";
import { createTrustingRole, webIdentityTrustPolicy } from "../support/aws/trust.ts";
import { tenantConfig } from "../support/tenant.ts";
import { eventually } from "../support/wait.ts";
import { condition, resultsOf, scopedStepRef } from "../support/world.ts";

const role = (name: string) => `arn:aws:iam::${account}:role/${name}`;

/** What the operator wrote before these paths were closed: roles by pattern, token-only listed. */
const basePolicy = {
  aws: { allowedRoleArns: [role("payments-*")], maxSessionDuration: 3600 },
  deliveryModes: ["env", "file", "token-only"],
};

interface Tenant {
  createServiceAccount(name: string): Promise<void>;
  createApplication(name: string, traitProperties: Record<string, unknown>): Promise<void>;
  createRun(name: string, spec: Partial<CustomRunSpec>, labels?: Record<string, string>): Promise<void>;
}

async function asTenant(w: IdentityWorld): Promise<Tenant> {
  const kc = await tenantConfig(w.cluster, w.ns);
  const objects = kc.makeApiClient(CustomObjectsApi);
  return {
    async createServiceAccount(name) {
      await kc
        .makeApiClient(CoreV1Api)
        .createNamespacedServiceAccount({ namespace: w.ns, body: { metadata: { name } } });
    },
    async createApplication(name, traitProperties) {
      await createApplication(objects, w.ns, name, [identityComponent(traitProperties)]);
    },
    async createRun(name, spec, labels) {
      await objects.createNamespacedCustomObject({
        group: "tekton.dev",
        version: "v1beta1",
        namespace: w.ns,
        plural: "customruns",
        body: {
          apiVersion: "tekton.dev/v1beta1",
          kind: "CustomRun",
          metadata: { name, ...(labels ? { labels } : {}) },
          spec: { customRef: scopedStepRef, ...spec },
        },
      });
    },
  };
}

interface StoredPolicy {
  metadata: { generation: number };
  status?: PolicyStatus;
}

/** Replaces the world's policy and waits until the controller has judged the new generation. */
async function setPolicy(w: IdentityWorld, spec: Record<string, unknown>): Promise<PolicyStatus> {
  const name = `${w.ns}-identity`;
  const patched = (await w.cluster.objects.patchClusterCustomObject(
    { ...policyApi, name, body: [{ op: "replace", path: "/spec", value: { namespaces: [w.ns], ...spec } }] },
    setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
  )) as StoredPolicy;
  return eventually(`policy ${name} generation ${patched.metadata.generation} judged`, async () => {
    const p = (await w.cluster.objects.getClusterCustomObject({ ...policyApi, name })) as StoredPolicy;
    const ready = p.status?.conditions?.find((c) => c.type === "Ready");
    return ready?.observedGeneration === patched.metadata.generation ? p.status : undefined;
  });
}

/** Fails unless the run ended Succeeded=False with `reason`; returns the message. */
async function failedWith(w: IdentityWorld, name: string, reason: string): Promise<string> {
  const run = await w.waitDone(name);
  assert.equal(condition(run)?.status, "False", `${name}: ${condition(run)?.message ?? ""}`);
  assert.equal(condition(run)?.reason, reason, condition(run)?.message);
  return condition(run)?.message ?? "";
}

async function succeeded(w: IdentityWorld, name: string): Promise<CustomRun> {
  const run = await w.waitDone(name);
  assert.equal(condition(run)?.status, "True", `${name}: ${condition(run)?.message ?? ""}`);
  return run;
}

const namespaceUid = async (w: IdentityWorld) =>
  (await w.cluster.core.readNamespace({ name: w.ns })).metadata?.uid ?? "";

const world: Promise<IdentityWorld> = startIdentityWorld(basePolicy).then((w) => {
  // Reads the finance ledgers, but only for sessions tagged team=finance.
  createTrustingRole(w.peer, w.trusted, {
    arn: role("payments-reporting"),
    subjectLike: `system:scoped-step:${w.ns}:*`,
    permissionPolicies: [
      {
        Version: "2012-10-17",
        Statement: [
          {
            Effect: "Allow",
            Action: "s3:GetObject",
            Resource: "arn:aws:s3:::ledgers/*",
            Condition: { StringEquals: { "aws:PrincipalTag/team": "finance" } },
          },
        ],
      },
    ],
  });
  w.peer.putObject("ledgers", "q3.csv", "finance only");
  return w;
});

test("session tags are the policy's to allow, and a tenant cannot pose as another team", async () => {
  const w = await world;
  const tenant = await asTenant(w);
  const reporting = { aws: { roleArn: role("payments-reporting"), region: "eu-west-1" } };
  await tenant.createApplication("as-finance", {
    aws: { ...reporting.aws, sessionTags: { team: "finance" } },
  });
  await tenant.createApplication("as-controller", {
    aws: { ...reporting.aws, sessionTags: { "scoped-step:namespace": "finance" } },
  });
  const read = `${sigv4("s3")} -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /dev/null -w '%{http_code}' "$AWS_ENDPOINT_URL/ledgers/q3.csv" > $(results.code.path)`;
  await tenant.createRun("as-finance", { params: stepParams(w, "as-finance", read, ["code"]) });
  await tenant.createRun("as-controller", { params: stepParams(w, "as-controller", read, ["code"]) });

  assert.match(
    await failedWith(w, "as-finance", "SessionTagNotAllowed"),
    /session tag team=finance not allowed .*no session tag is allowed there/,
  );
  assert.match(
    await failedWith(w, "as-controller", "ReservedSessionTag"),
    /tags under scoped-step: are set by the controller/,
  );
  assert.deepEqual(
    w.peer
      .sessions()
      .filter((s) => s.tags.team === "finance" || s.tags["scoped-step:namespace"] === "finance"),
    [],
    "no session carries a tag the tenant chose",
  );

  // Allowed by key and value pattern, a tag goes through; another value of the same key does not.
  await setPolicy(w, {
    ...basePolicy,
    aws: { ...basePolicy.aws, allowedSessionTags: { team: ["payments"] } },
  });
  await tenant.createApplication("as-payments", {
    aws: { ...reporting.aws, sessionTags: { team: "payments" } },
  });
  await tenant.createRun("as-payments", { params: stepParams(w, "as-payments", read, ["code"]) });
  await tenant.createRun("as-finance-again", { params: stepParams(w, "as-finance", read, ["code"]) });
  const run = await succeeded(w, "as-payments");
  assert.equal(resultsOf(run).code, "403", "team=payments does not open the finance ledgers");
  assert.match(
    await failedWith(w, "as-finance-again", "SessionTagNotAllowed"),
    /allowed tags: team=payments/,
  );

  // The controller's own tags are on the session, from facts the tenant cannot write.
  const session = w.peer.sessions().find((s) => s.roleSessionName === resultsOf(run)["aws-session-name"]);
  assert.deepEqual(session?.tags, {
    team: "payments",
    "scoped-step:namespace": w.ns,
    "scoped-step:namespace-uid": await namespaceUid(w),
    "scoped-step:application": "as-payments",
    "scoped-step:component": "api",
    "scoped-step:run-uid": run.metadata.uid,
  });
  await setPolicy(w, basePolicy);
});

test("a trust policy pinned to the namespace UID does not trust a namespace re-created under the same name", async () => {
  const w = await world;
  const tenant = await asTenant(w);
  const trusted = w.trusted;
  // As the README tells operators: pin the asserted tags, and allow no tag keys but those expected.
  const pinned = (uid: string) => {
    const trust = webIdentityTrustPolicy(trusted, `system:scoped-step:${w.ns}:*`);
    const statement = trust.Statement[0] as { Condition: Record<string, Record<string, unknown>> };
    statement.Condition.StringEquals = {
      ...statement.Condition.StringEquals,
      "aws:RequestTag/scoped-step:namespace": w.ns,
      "aws:RequestTag/scoped-step:namespace-uid": uid,
    };
    statement.Condition["ForAllValues:StringLike"] = { "aws:TagKeys": ["scoped-step:*"] };
    return trust;
  };
  w.peer.createRole({ arn: role("payments-pinned"), trustPolicy: pinned(await namespaceUid(w)) });
  // The same namespace name with the UID it had before it was deleted and created again.
  w.peer.createRole({
    arn: role("payments-stale"),
    trustPolicy: pinned("3b0f1f0e-5c1a-4d8e-9f51-0c2d7a9e4b11"),
  });
  await tenant.createApplication("pinned", {
    aws: { roleArn: role("payments-pinned"), region: "eu-west-1" },
  });
  await tenant.createApplication("stale", { aws: { roleArn: role("payments-stale"), region: "eu-west-1" } });
  await tenant.createRun("pinned", { params: stepParams(w, "pinned", "true") });
  await tenant.createRun("stale", { params: stepParams(w, "stale", "true") });
  await succeeded(w, "pinned");
  await failedWith(w, "stale", "AWSRoleTrustRejected");
});

// The step decodes its own token's claims into a result, as any code in it could.
const decodeToken = [
  "set -e",
  "p=$(cut -d. -f2 \"$SCOPED_STEP_OIDC_TOKEN_FILE\" | tr '_-' '/+')",
  'while [ $(( ${#p} % 4 )) -ne 0 ]; do p="$p="; done',
  'echo "$p" | base64 -d > $(results.claims.path)',
].join("\n");

const selfMint = (roleArn: string) =>
  [
    decodeToken,
    `curl -s -m 10 -o /tmp/sts.xml -w '%{http_code}' "$AWS_ENDPOINT_URL" -d Action=AssumeRoleWithWebIdentity ` +
      `-d Version=2011-06-15 -d RoleArn=${roleArn} -d RoleSessionName=self-minted -d DurationSeconds=3600 ` +
      `--data-urlencode "WebIdentityToken@$SCOPED_STEP_OIDC_TOKEN_FILE" > $(results.sts.path)`,
  ].join("\n");

test("token-only needs a rule per audience and an opt-in naming the risk before a step holds a token STS accepts", async () => {
  const w = await world;
  const tenant = await asTenant(w);
  const selfMinted = () => w.peer.sessions().filter((s) => s.roleSessionName === "self-minted");
  await tenant.createApplication("raw-sts", { delivery: "token-only", audience: "sts.amazonaws.com" });
  const script = selfMint(role("payments-deployer"));

  // The policy lists token-only, as the one observed did: no tokenOnly rule, so no raw token.
  await tenant.createRun("raw-listed", { params: stepParams(w, "raw-sts", script, ["claims", "sts"]) });
  assert.match(
    await failedWith(w, "raw-listed", "TokenOnlyAudienceNotAllowed"),
    /token-only is allowed for no audience there/,
  );

  await setPolicy(w, { ...basePolicy, tokenOnly: { audiences: ["sts.amazonaws.com"] } });
  await tenant.createRun("raw-audience", { params: stepParams(w, "raw-sts", script, ["claims", "sts"]) });
  assert.match(
    await failedWith(w, "raw-audience", "UnscopedStsTokenNotAllowed"),
    /could assume roles itself with no session policy, its own duration and no revocation/,
  );
  assert.deepEqual(selfMinted(), [], "the step never got a token to mint a session with");
  assert.equal((await w.pods()).filter((p) => p.metadata?.name?.startsWith("raw-")).length, 0);

  // With the opt-in the operator accepts the risk: the token lives 300 s and carries the run's
  // source identity, so the session the step mints itself is at least traceable to the run.
  await setPolicy(w, {
    ...basePolicy,
    tokenOnly: { audiences: ["sts.amazonaws.com"], allowUnscopedUnrevocableStsSessions: true },
  });
  await tenant.createRun("raw-opt-in", { params: stepParams(w, "raw-sts", script, ["claims", "sts"]) });
  const run = await succeeded(w, "raw-opt-in");
  assert.equal(resultsOf(run).sts, "200");
  const claims = JSON.parse(resultsOf(run).claims ?? "{}") as Record<string, number | string>;
  assert.equal(Number(claims.exp) - Number(claims.iat), 300, "a raw token lives 300 s by default");
  const [session] = selfMinted();
  assert.equal(
    session?.sourceIdentity,
    sourceIdentity({
      namespace: w.ns,
      customRun: "raw-opt-in",
      uid: run.metadata.uid ?? "",
      attempt: 0,
      serviceAccount: "default",
      application: "raw-sts",
      component: "api",
    }),
  );
  await setPolicy(w, basePolicy);
});

test("the token separates asserted facts from what the run's author wrote, and subjects use only the former", async () => {
  const w = await world;
  const tenant = await asTenant(w);
  await setPolicy(w, { ...basePolicy, tokenOnly: { audiences: ["vault.example.com"] } });
  await tenant.createApplication("vault", { delivery: "token-only", audience: "vault.example.com" });
  const forged = { "tekton.dev/pipelineRun": "release-prod", "tekton.dev/pipelineTask": "deploy" };
  await tenant.createServiceAccount("deployer");
  await tenant.createRun(
    "claims",
    { serviceAccountName: "deployer", params: stepParams(w, "vault", decodeToken, ["claims"]) },
    forged,
  );
  const run = await succeeded(w, "claims");
  const claims = JSON.parse(resultsOf(run).claims ?? "{}") as Record<string, unknown>;
  assert.equal(claims.sub, `system:scoped-step:${w.ns}:vault:api`);
  assert.equal(claims.namespace, w.ns);
  assert.equal(claims.namespaceUid, await namespaceUid(w));
  assert.equal(claims.customRunUid, run.metadata.uid);
  assert.deepEqual(claims.unverified, {
    customRun: "claims",
    pipelineRun: "release-prod",
    pipelineTask: "deploy",
    serviceAccount: "deployer",
  });
  for (const name of ["customRun", "pipelineRun", "pipelineTask", "serviceAccount"]) {
    assert.equal(claims[name], undefined, `no top-level ${name} claim`);
  }
  assert.ok(Number(claims.exp) - Number(claims.iat) <= 300);

  // A subject built on a label the tenant writes: the policy is refused until the operator opts in.
  createTrustingRole(w.peer, w.trusted, {
    arn: role("payments-release"),
    subjectLike: `system:scoped-step:${w.ns}:release-prod`,
  });
  const status = await setPolicy(w, {
    ...basePolicy,
    subjectTemplate: "system:scoped-step:{namespace}:{pipelineRun}",
  });
  const ready = status.conditions?.find((c) => c.type === "Ready");
  assert.equal(ready?.status, "False");
  assert.match(ready?.message ?? "", /uses \{pipelineRun\}, which the run's author chooses freely/);
  await tenant.createApplication("release", {
    aws: { roleArn: role("payments-release"), region: "eu-west-1" },
  });
  await tenant.createRun("release", { params: stepParams(w, "release", "true") }, forged);
  assert.match(
    await failedWith(w, "release", "PolicyNotFound"),
    /names it but is invalid and ignored: spec\.subjectTemplate uses \{pipelineRun\}/,
  );
  assert.deepEqual(
    w.peer.sessions().filter((s) => s.roleArn === role("payments-release")),
    [],
    "a forged pipelineRun label gets no session on the release role",
  );
  await setPolicy(w, basePolicy);
});

test("a step cannot declare the results that record its identity", async () => {
  const w = await world;
  const tenant = await asTenant(w);
  await tenant.createApplication("payments", {
    aws: { roleArn: role("payments-deployer"), region: "eu-west-1" },
  });
  const stsCalls = () => w.peer.calls().filter((c) => c.action === "AssumeRoleWithWebIdentity").length;
  const before = stsCalls();
  const forge = 'echo "system:scoped-step:kube-system:evil:x" > $(results.identity-subject.path)';
  await tenant.createRun("forged-subject", {
    params: stepParams(w, "payments", forge, ["identity-subject"]),
  });
  assert.match(
    await failedWith(w, "forged-subject", "ReservedResultName"),
    /declares result identity-subject, but results named identity-\*.* are the controller's record/,
  );
  const run = await w.getRun("forged-subject");
  assert.equal(stepState(run.status ?? {}).credential, undefined, "nothing was minted");
  assert.equal(stsCalls(), before);
});

test("the policy caps the retries a run may ask for: each attempt is a credential of its own", async () => {
  const w = await world;
  const tenant = await asTenant(w);
  await tenant.createApplication("retrying", {
    aws: { roleArn: role("payments-deployer"), region: "eu-west-1" },
  });
  await tenant.createRun("many-retries", { retries: 50, params: stepParams(w, "retrying", "exit 1") });
  assert.match(
    await failedWith(w, "many-retries", "RetriesNotAllowed"),
    /retries 50 is more than the 3 allowed .*Lower the task's retries/,
  );
  const run = await w.getRun("many-retries");
  assert.equal(run.status?.retriesStatus, undefined, "no attempt ran");
  await tenant.createRun("few-retries", { retries: 1, params: stepParams(w, "retrying", "exit 1") });
  const few = await failedWith(w, "few-retries", "Failed");
  assert.match(few, /exited with code 1/);
  assert.equal((await w.getRun("few-retries")).status?.retriesStatus?.length, 1);
});
