import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { stepState } from "../../tasks/scoped-step/status.ts";
import { isReservedResultName } from "../../tasks/scoped-step/step.ts";
import {
  deployRole,
  everythingWritten,
  sigv4,
  startIdentityWorld,
  stepParams,
  type IdentityWorld,
} from "../support/identity-world.ts";
import { eventually } from "../support/wait.ts";
import { condition, resultsOf } from "../support/world.ts";

const sessionPolicy = {
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: "arn:aws:s3:::artifacts/*" }],
};
const trait = (extra: Record<string, unknown> = {}, aws: Record<string, unknown> = {}) => [
  {
    name: "api",
    type: "webservice",
    traits: [
      {
        type: "scoped-identity",
        properties: {
          audience: "sts.amazonaws.com",
          aws: {
            roleArn: deployRole,
            region: "eu-west-1",
            sessionPolicy,
            sessionTags: { team: "payments" },
            ...aws,
          },
          ...extra,
        },
      },
    ],
  },
];

const policy = {
  aws: {
    allowedRoleArns: ["arn:aws:iam::111122223333:role/payments-*"],
    maxSessionDuration: 3600,
    allowedSessionTags: { team: ["payments"] },
  },
  deliveryModes: ["env", "file", "token-only"],
  tokenOnly: { audiences: ["vault.example.com"] },
  revocation: "deny-policy",
};

const world: Promise<IdentityWorld> = startIdentityWorld(policy).then(async (w) => {
  await w.createApplication("payments", trait());
  await w.createApplication("payments-file", trait({ delivery: "file" }));
  await w.createApplication(
    "payments-token",
    trait({ delivery: "token-only", audience: "vault.example.com" }),
  );
  return w;
});

test("the step really gets working credentials, scoped by the session policy, dead after the run", async () => {
  const w = await world;
  const script = [
    "set -e",
    `${sigv4("sts")} -d "Action=GetCallerIdentity&Version=2011-06-15" "$AWS_ENDPOINT_URL" | sed -n 's:.*<Arn>\\(.*\\)</Arn>.*:\\1:p' > $(results.caller.path)`,
    `${sigv4("s3")} -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /tmp/hello -w '%{http_code}' "$AWS_ENDPOINT_URL/artifacts/hello.txt" > $(results.allowed.path)`,
    `${sigv4("s3")} -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /dev/null -w '%{http_code}' "$AWS_ENDPOINT_URL/private/keys.txt" > $(results.outside.path)`,
    "cat /tmp/hello > $(results.content.path)",
    "while [ ! -f /workspace/release ]; do sleep 0.1; done",
  ].join("\n");
  await w.createRun("deploy", {
    params: stepParams(w, "payments", script, ["caller", "allowed", "outside", "content"]),
  });

  // While the step runs, take the credentials it holds, to try them once the run is over.
  await w.waitForRun("deploy", "to run", (r) => condition(r)?.reason === "Running");
  const secret = await w.secretData("deploy-credentials-0");
  assert.ok(
    secret?.secretAccessKey && secret.sessionToken && secret.accessKeyId,
    "the credential Secret holds the session",
  );
  const workspace = w.kubelet?.volumePath(w.ns, "deploy-pod", "workspace");
  assert.ok(workspace);
  await writeFile(path.join(workspace, "release"), "");

  const run = await w.waitDone("deploy");
  assert.equal(condition(run)?.status, "True", condition(run)?.message);
  const results = resultsOf(run);
  const assumed = `arn:aws:sts::111122223333:assumed-role/payments-deployer/${results["aws-session-name"] ?? ""}`;
  assert.equal(results.caller, assumed, "GetCallerIdentity from inside the step names the per-run session");
  assert.equal(results["aws-assumed-role-arn"], assumed);
  assert.equal(results.allowed, "200");
  assert.equal(results.content, "hello from s3");
  assert.equal(results.outside, "403", "an action outside the session policy is denied");
  assert.equal(results["identity-subject"], `system:scoped-step:${w.ns}:payments:api`);
  assert.equal(results["identity-issuer"], w.issuer);
  assert.equal(results["aws-role-arn"], deployRole);
  assert.match(results["aws-session-name"] ?? "", new RegExp(`^${w.ns}\\.deploy-[0-9a-f]{8}-0$`));
  assert.match(results["aws-source-identity"] ?? "", /^scoped-step-[0-9a-f]{24}-0$/);
  assert.ok(results["token-id"] && results["credentials-expiration"] && results["revoked-at"]);
  assert.equal(results.revocation, "deny-policy");
  for (const name of Object.keys(stepState(run.status ?? {}).credential?.results ?? {})) {
    assert.ok(isReservedResultName(name), `${name} is reserved: no step can declare it`);
  }
  assert.deepEqual(
    stepState(run.status ?? {}).credential?.results,
    Object.fromEntries(
      Object.entries(results).filter(
        ([k]) => !["caller", "allowed", "outside", "content", "revoked-at", "revocation"].includes(k),
      ),
    ),
    "the identity is also in extraFields",
  );

  // Revoked: the Secret is gone and the session is denied on the role by its source identity.
  await eventually("the credential Secret to be deleted", async () =>
    (await w.secretData("deploy-credentials-0")) ? undefined : true,
  );
  const s3 = new S3Client({
    region: "eu-west-1",
    endpoint: w.peer.endpoint,
    forcePathStyle: true,
    credentials: {
      accessKeyId: secret.accessKeyId,
      secretAccessKey: secret.secretAccessKey,
      sessionToken: secret.sessionToken,
    },
  });
  await assert.rejects(
    s3.send(new GetObjectCommand({ Bucket: "artifacts", Key: "hello.txt" })),
    /explicit deny/i,
  );
  const deny = w.peer.rolePolicies("payments-deployer")["scoped-step-revocations"] ?? "";
  assert.ok(deny.includes(results["aws-source-identity"] ?? "missing"));

  await w.waitForEvents("deploy", ["CredentialMinted", "CredentialRevoked"]);
  const audit = w.controller?.logLines().filter((l) => l.audit && l.name === "deploy") ?? [];
  assert.deepEqual(
    audit.map((l) => l.audit),
    ["mint", "revoke"],
  );
  assert.equal(audit[0]?.["aws-assumed-role-arn"], assumed);

  const written = await everythingWritten(w);
  for (const value of [secret.secretAccessKey, secret.sessionToken]) {
    assert.equal(written.includes(value), false, "no secret in logs, status, events, pods or step output");
  }
});

test("file delivery gives the step a shared credentials file and no credential env vars", async () => {
  const w = await world;
  const script = [
    "set -e",
    'test -z "${AWS_ACCESS_KEY_ID:-}"',
    'grep -c "^aws_session_token = " "$AWS_SHARED_CREDENTIALS_FILE" > $(results.lines.path)',
  ].join("\n");
  await w.createRun("file", { params: stepParams(w, "payments-file", script, ["lines"]) });
  const run = await w.waitDone("file");
  assert.equal(condition(run)?.status, "True", condition(run)?.message);
  assert.equal(resultsOf(run).lines, "1");
});

test("token-only delivery gives the step just the OIDC token, as a file", async () => {
  const w = await world;
  const script = "awk -F. '{ print NF }' \"$SCOPED_STEP_OIDC_TOKEN_FILE\" > $(results.parts.path)";
  await w.createRun("token", { params: stepParams(w, "payments-token", script, ["parts"]) });
  const run = await w.waitDone("token");
  assert.equal(condition(run)?.status, "True", condition(run)?.message);
  assert.equal(resultsOf(run).parts, "3", "a compact JWS has three parts");
  assert.equal(resultsOf(run)["identity-subject"], `system:scoped-step:${w.ns}:payments-token:api`);
  assert.equal(resultsOf(run)["aws-role-arn"], undefined);
});

test("the policy decides before anything is minted: role, audience, duration and delivery denials", async () => {
  const w = await world;
  await w.createApplication("rogue", trait({}, { roleArn: "arn:aws:iam::111122223333:role/admin" }));
  await w.createApplication("aud", trait({ audience: "vault" }));
  await w.createApplication("long", trait({}, { sessionDuration: 7200 }));
  const cases: [string, string, RegExp][] = [
    ["rogue", "RoleNotAllowed", /role arn:aws:iam::111122223333:role\/admin is not allowed/],
    ["aud", "AudienceNotAllowed", /vault/],
    ["long", "SessionDurationNotAllowed", /7200/],
  ];
  for (const [app] of cases) await w.createRun(`denied-${app}`, { params: stepParams(w, app, "true", []) });
  for (const [app, reason, message] of cases) {
    const run = await w.waitDone(`denied-${app}`);
    assert.equal(condition(run)?.reason, reason, condition(run)?.message);
    assert.match(condition(run)?.message ?? "", message);
  }
  const assumed = w.peer
    .calls()
    .filter((c) => c.action === "AssumeRoleWithWebIdentity" && c.roleArn?.endsWith("/admin"));
  assert.deepEqual(assumed, [], "no STS call for a denied role");
});

test("STS errors end the run with a reason naming the cause; JWKS fetch failures are retried a bounded number of times", async () => {
  const w = await world;
  w.peer.failNext(
    "AssumeRoleWithWebIdentity",
    "InvalidIdentityToken",
    "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
    2,
  );
  await w.createRun("flaky-jwks", { params: stepParams(w, "payments", "true", []) });
  assert.equal(
    condition(await w.waitDone("flaky-jwks"))?.status,
    "True",
    "two transient failures are retried",
  );
  // One try and three retries, then the run fails with a reason that says what to check.
  w.peer.failNext(
    "AssumeRoleWithWebIdentity",
    "InvalidIdentityToken",
    "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
    4,
  );
  const stsCalls = () => w.peer.calls().filter((c) => c.action === "AssumeRoleWithWebIdentity").length;
  const before = stsCalls();
  await w.createRun("dead-jwks", { params: stepParams(w, "payments", "true", []) });
  const dead = await w.waitDone("dead-jwks");
  assert.equal(condition(dead)?.reason, "AWSIdentityProviderUnreachable", condition(dead)?.message);
  assert.match(condition(dead)?.message ?? "", /\.well-known\/openid-configuration/);
  assert.equal(stsCalls() - before, 4, "bounded: one call and three retries, no more");

  await w.createApplication(
    "malformed",
    trait({}, { sessionPolicy: { Version: "2012-10-17", Statement: [{ Effect: "Allow" }] } }),
  );
  await w.createRun("malformed", { params: stepParams(w, "malformed", "true", []) });
  const malformed = await w.waitDone("malformed");
  assert.equal(condition(malformed)?.reason, "AWSPolicyMalformed", condition(malformed)?.message);

  await w.createApplication(
    "huge",
    trait(
      {},
      {
        sessionPolicy: {
          Version: "2012-10-17",
          Statement: [
            { Effect: "Allow", Action: "s3:GetObject", Resource: `arn:aws:s3:::${"x".repeat(2100)}` },
          ],
        },
      },
    ),
  );
  await w.createRun("huge", { params: stepParams(w, "huge", "true", []) });
  assert.equal(condition(await w.waitDone("huge"))?.reason, "AWSPolicyTooLarge");

  w.peer.failNext(
    "AssumeRoleWithWebIdentity",
    "AccessDenied",
    "Not authorized to perform sts:AssumeRoleWithWebIdentity",
    1,
  );
  await w.createRun("untrusted", { params: stepParams(w, "payments", "true", []) });
  const untrusted = await w.waitDone("untrusted");
  assert.equal(condition(untrusted)?.reason, "AWSRoleTrustRejected");
  assert.match(
    condition(untrusted)?.message ?? "",
    new RegExp(`${w.providerHost.replace(".", "\\.")}:sub matching "system:scoped-step:`),
  );
  // A credential never minted leaves nothing to revoke, and the run still records nothing secret.
  assert.equal(stepState(untrusted.status ?? {}).credential?.state, "revoked");
});

test("a controller killed between minting and creating the pod leaves no credential behind", async () => {
  const w = await world;
  await w.restartController({ SCOPED_STEP_FAILPOINT: "after-mint" });
  await w.createRun("crash-mint", { params: stepParams(w, "payments", "true", []) });
  await w.controller?.exited;
  await w.restartController();
  const run = await w.waitDone("crash-mint");
  assert.equal(condition(run)?.status, "True", condition(run)?.message);
  const source = resultsOf(run)["aws-source-identity"] ?? "missing";
  const sessions = w.peer.sessions().filter((s) => s.sourceIdentity === source);
  assert.equal(sessions.length, 2, "the session minted before the crash, and the one after");
  const deny = w.peer.rolePolicies("payments-deployer")["scoped-step-revocations"] ?? "";
  assert.ok(deny.includes(source), "one deny by source identity revokes both");
});

test("a controller down while the step finishes revokes the credential when it comes back", async () => {
  const w = await world;
  await w.createRun("crash-end", {
    params: stepParams(w, "payments", "while [ ! -f /workspace/release ]; do sleep 0.1; done", []),
  });
  await w.waitForRun("crash-end", "to run", (r) => condition(r)?.reason === "Running");
  await w.controller?.kill("SIGKILL");
  const workspace = w.kubelet?.volumePath(w.ns, "crash-end-pod", "workspace");
  assert.ok(workspace);
  await writeFile(path.join(workspace, "release"), "");
  await eventually("the step pod to finish", async () =>
    (await w.pods()).find((p) => p.metadata?.name === "crash-end-pod")?.status?.phase === "Succeeded"
      ? true
      : undefined,
  );
  assert.ok(await w.secretData("crash-end-credentials-0"), "nothing revoked while the controller is down");
  await w.startController(w.controllerFlags, w.controllerEnv);
  const run = await w.waitDone("crash-end");
  assert.equal(condition(run)?.status, "True");
  await eventually("the credential Secret to be deleted", async () =>
    (await w.secretData("crash-end-credentials-0")) ? undefined : true,
  );
  assert.ok(
    (w.peer.rolePolicies("payments-deployer")["scoped-step-revocations"] ?? "").includes(
      resultsOf(run)["aws-source-identity"] ?? "missing",
    ),
  );
});

test("the controller serves health, readiness, its OIDC documents and Prometheus metrics", async () => {
  const w = await world;
  await w.createRun("metered", { params: stepParams(w, "payments", "true", []) });
  await w.waitDone("metered");
  assert.equal((await fetch(`${w.issuer}/healthz`)).status, 200);
  await eventually("ready", async () =>
    (await fetch(`${w.issuer}/readyz`)).status === 200 ? true : undefined,
  );
  const discovery = (await (await fetch(`${w.issuer}/.well-known/openid-configuration`)).json()) as {
    issuer: string;
    jwks_uri: string;
  };
  assert.equal(discovery.issuer, w.issuer);
  const jwks = (await (await fetch(discovery.jwks_uri)).json()) as { keys: Record<string, unknown>[] };
  assert.ok(jwks.keys.length >= 1 && jwks.keys.every((k) => k.d === undefined), "public keys only");

  const text = await (await fetch(`${w.issuer}/metrics`)).text();
  const value = (series: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.split(" ").pop());
  };
  assert.ok((value('scoped_step_credential_mints_total{provider="aws"}') ?? 0) >= 1);
  assert.ok((value('scoped_step_credential_revocations_total{provider="aws"}') ?? 0) >= 1);
  assert.ok((value('scoped_step_runs_finished_total{outcome="succeeded",reason="Succeeded"}') ?? 0) >= 1);
  assert.equal(value("scoped_step_leader"), 1);
  assert.equal(value("scoped_step_credentials_pending_revocation"), 0);
  assert.ok((value('scoped_step_sts_request_duration_seconds_count{outcome="ok"}') ?? 0) >= 1);
  const activated = value("scoped_step_signing_key_activated_timestamp_seconds") ?? 0;
  assert.ok(activated > 0 && activated <= Date.now() / 1000, `key activated at ${activated}`);
  for (const name of [
    "scoped_step_reconcile_duration_seconds_bucket",
    "scoped_step_workqueue_depth",
    "scoped_step_workqueue_in_flight",
    "scoped_step_workqueue_wait_seconds_bucket",
    "scoped_step_credential_mint_duration_seconds_bucket",
    "scoped_step_credential_revocation_duration_seconds_bucket",
    "scoped_step_active_credentials",
    "scoped_step_oldest_unrevoked_credential_timestamp_seconds",
    "scoped_step_pod_duration_seconds_bucket",
    "process_resident_memory_bytes",
  ]) {
    assert.ok(text.includes(name), `${name} is exported`);
  }
  assert.doesNotMatch(text, /namespace=|name="metered"/, "no run names or namespaces as labels");
});
