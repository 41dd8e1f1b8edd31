// The AWS credential provider through the real SDK against the AWS peer: what a failed mint
// proves, how long a deny lasts, what happens when a deny cannot be written, and in which account
// it is written.
import { test } from "node:test";
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { IAMClient, PutRolePolicyCommand } from "@aws-sdk/client-iam";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { pino } from "pino";
import { freePorts } from "../../hack/cluster/processes.ts";
import { revokerAccounts } from "../../tasks/scoped-step/credentials/aws-accounts.ts";
import { revocationPolicyName } from "../../tasks/scoped-step/credentials/aws-revocation.ts";
import { awsProvider, unrecordedMintMarginSeconds } from "../../tasks/scoped-step/credentials/aws.ts";
import type { CredentialRecord, MintedCredential } from "../../tasks/scoped-step/credentials/types.ts";
import { isRunFailure } from "../../tasks/scoped-step/failure.ts";
import { startProviderWorld, type ProviderWorld } from "../support/aws/provider-world.ts";

const log = pino({ level: "silent" });
const home = "111122223333";
const other = "444455556666";
const readArtifacts = {
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: "arn:aws:s3:::artifacts/*" }],
};

async function world(t: TestContext): Promise<ProviderWorld> {
  const w = await startProviderWorld({ accountId: home });
  t.after(() => w.stop());
  w.peer.putObject("artifacts", "hello.txt", "hello");
  return w;
}

/** Revocation as the controller sets it up: its own keys are the peer's admin, in account `home`. */
const accountsOf = (w: ProviderWorld, revokerRoles: [string, string][] = []) =>
  revokerAccounts({
    revokerRoles: new Map(revokerRoles),
    region: "eu-west-1",
    stsEndpoint: w.peer.endpoint,
    iamEndpoint: w.peer.endpoint,
    credentials: w.peer.adminCredentials,
    log,
  });

function provider(w: ProviderWorld, extra: Partial<Parameters<typeof awsProvider>[0]> = {}) {
  return awsProvider({
    signer: w.signer,
    defaultRegion: "eu-west-1",
    stsEndpoint: w.peer.endpoint,
    iamEndpoint: w.peer.endpoint,
    accounts: accountsOf(w),
    log,
    retryDelayMs: 20,
    ...extra,
  });
}

const recordOf = (
  p: ReturnType<typeof provider>,
  intent: Record<string, string>,
  minted?: MintedCredential,
): CredentialRecord => ({
  provider: p.name,
  attempt: 0,
  state: minted ? "active" : "minting",
  intent,
  results: minted?.results ?? {},
  ...(minted?.expiresAt ? { expiresAt: minted.expiresAt } : {}),
});

const readWith = (w: ProviderWorld, minted: MintedCredential) =>
  new S3Client({
    region: "eu-west-1",
    endpoint: w.peer.endpoint,
    forcePathStyle: true,
    credentials: {
      accessKeyId: minted.secretData.accessKeyId ?? "",
      secretAccessKey: minted.secretData.secretAccessKey ?? "",
      sessionToken: minted.secretData.sessionToken ?? "",
    },
  }).send(new GetObjectCommand({ Bucket: "artifacts", Key: "hello.txt" }));

const denyUntilSeconds = (policy: string | undefined): number[] =>
  (JSON.parse(policy ?? '{"Statement":[]}') as { Statement: { Sid: string }[] }).Statement.map((s) =>
    Number(s.Sid.replace(/^\D+/, "")),
  );

test("a refused STS connection is retried within the call, and the mint succeeds once STS is up", async (t) => {
  const w = await world(t);
  const roleArn = `arn:aws:iam::${home}:role/deployer`;
  w.trustingRole(roleArn, [readArtifacts]);
  // STS's address refuses connections until the first refusal has been seen; then it forwards to the peer.
  const [port] = (await freePorts(1)) as [number];
  const target = Number(new URL(w.peer.endpoint).port);
  const gate = net.createServer((socket) => {
    const upstream = net.connect(target, "127.0.0.1");
    socket.pipe(upstream).pipe(socket);
    socket.on("error", () => upstream.destroy());
    upstream.on("error", () => socket.destroy());
  });
  t.after(() => new Promise<void>((resolve) => gate.close(() => resolve())));
  const outcomes: string[] = [];
  const p = provider(w, {
    stsEndpoint: `http://127.0.0.1:${port}`,
    stsRetries: 10,
    onStsCall: (_, outcome) => {
      outcomes.push(outcome);
      if (outcome === "NetworkError" && !gate.listening) gate.listen(port, "127.0.0.1");
    },
  });
  const facts = w.facts("refused");
  const minted = await p.mint(facts, w.grant({ roleArn }));
  assert.equal(outcomes[0], "NetworkError", "the first call met a closed port");
  assert.equal(outcomes.at(-1), "ok");
  assert.ok(minted.secretData.sessionToken, "the same call returned credentials");
  assert.equal(w.peer.sessions().length, 1);
});

test("a modelled STS error says no session was issued; a connection that never reached STS does not", async (t) => {
  const w = await world(t);
  const p = provider(w);
  const untrusted = w.grant({ roleArn: `arn:aws:iam::${home}:role/nobody-trusts-this` });
  const failure: unknown = await p.mint(w.facts("untrusted"), untrusted).catch((err: unknown) => err);
  assert.ok(isRunFailure(failure));
  assert.equal(failure.reason, "AWSRoleTrustRejected");
  assert.equal(failure.nothingIssued, true);

  const [closed] = (await freePorts(1)) as [number];
  const unreachable = provider(w, { stsEndpoint: `http://127.0.0.1:${closed}`, stsRetries: 1 });
  const refused: unknown = await unreachable.mint(w.facts("refused"), untrusted).catch((err: unknown) => err);
  assert.ok(refused instanceof Error);
  assert.equal(isRunFailure(refused), false, "left to the queue to retry, and revoked as if issued");
  assert.match(String((refused as NodeJS.ErrnoException).code), /ECONNREFUSED/);
});

test("a session whose mint was never recorded is denied for its requested duration plus a margin, not 12 hours", async (t) => {
  const w = await world(t);
  const roleArn = `arn:aws:iam::${home}:role/deployer`;
  w.trustingRole(roleArn);
  const p = provider(w);
  const grant = w.grant({ roleArn, sessionDuration: 900 });
  const intent = p.intent(w.facts("crashed"), grant);
  assert.equal(intent.sessionDuration, "900");
  const before = Date.now() / 1000;
  assert.deepEqual(await p.revoke(recordOf(p, intent)), { method: "deny-policy" });
  const after = Date.now() / 1000;
  const [until] = denyUntilSeconds(w.peer.rolePolicies(roleArn)[revocationPolicyName]);
  assert.ok(until !== undefined && until >= before + 900 + unrecordedMintMarginSeconds, `${until}`);
  // Statements are grouped in 5-minute buckets: at most one bucket more.
  assert.ok(until <= after + 900 + unrecordedMintMarginSeconds + 300, `${until - after} s from now`);

  const legacy = { ...p.intent(w.facts("old-record"), grant), sessionDuration: "" };
  await p.revoke(recordOf(p, legacy));
  const buckets = denyUntilSeconds(w.peer.rolePolicies(roleArn)[revocationPolicyName]);
  assert.ok((buckets.at(-1) ?? 0) >= before + 43_200, "a record without a duration gets STS's maximum");
});

test("when the role's inline policy budget is spent, revocation returns expiry with the reason and counts it", async (t) => {
  const w = await world(t);
  const roleArn = `arn:aws:iam::${home}:role/full`;
  w.trustingRole(roleArn, [readArtifacts]);
  await fillInlineBudget(w, roleArn, 150);
  const fallbacks: string[] = [];
  const p = provider(w, { onRevocationFallback: (cause) => fallbacks.push(cause) });
  const facts = w.facts("too-many");
  const grant = w.grant({ roleArn });
  const minted = await p.mint(facts, grant);
  const outcome = await p.revoke(recordOf(p, p.intent(facts, grant), minted));
  assert.equal(outcome.method, "expiry");
  assert.match(outcome.detail ?? "", /role arn:aws:iam::111122223333:role\/full .*10,240-character limit/);
  assert.deepEqual(fallbacks, ["budget-exhausted"]);
  assert.equal(w.peer.rolePolicies(roleArn)[revocationPolicyName], undefined);
  assert.ok(await readWith(w, minted), "honestly reported: the session still works until it expires");
});

test("a cross-account role is revoked in its own account, through the revoker role assumed there", async (t) => {
  const w = await world(t);
  const mine = `arn:aws:iam::${home}:role/deployer`;
  const theirs = `arn:aws:iam::${other}:role/deployer`;
  const revoker = `arn:aws:iam::${other}:role/scoped-step-revoker`;
  w.trustingRole(mine, [readArtifacts]);
  w.trustingRole(theirs, [readArtifacts]);
  w.peer.createRole({
    arn: revoker,
    trustPolicy: {
      Version: "2012-10-17",
      Statement: [
        { Effect: "Allow", Principal: { AWS: `arn:aws:iam::${home}:root` }, Action: "sts:AssumeRole" },
      ],
    },
    permissionPolicies: [revokerPermissions(other)],
  });
  const p = provider(w, {
    accounts: accountsOf(w, [[other, revoker]]),
  });
  const facts = w.facts("cross");
  const grant = w.grant({ roleArn: theirs });
  const minted = await p.mint(facts, grant);
  assert.ok(await readWith(w, minted));
  assert.deepEqual(await p.revoke(recordOf(p, p.intent(facts, grant), minted)), { method: "deny-policy" });

  await assert.rejects(readWith(w, minted), /explicit deny/);
  assert.ok(
    w.peer.rolePolicies(theirs)[revocationPolicyName]?.includes(p.intent(facts, grant).sourceIdentity ?? "-"),
  );
  assert.equal(
    w.peer.rolePolicies(mine)[revocationPolicyName],
    undefined,
    "nothing written on the same name at home",
  );
  const writes = w.peer.calls().filter((c) => c.action === "PutRolePolicy");
  assert.deepEqual(
    writes.map((c) => c.principal),
    [`arn:aws:sts::${other}:assumed-role/scoped-step-revoker/scoped-step-revoker`],
  );
});

test("an account without a revoker, or a revoker without IAM rights there, leaves the session to expire with the reason", async (t) => {
  const w = await world(t);
  const third = "777788889999";
  const unreachable = `arn:aws:iam::${third}:role/deployer`;
  const powerless = `arn:aws:iam::${other}:role/deployer`;
  const revoker = `arn:aws:iam::${other}:role/scoped-step-revoker`;
  w.trustingRole(powerless);
  w.peer.createRole({
    arn: revoker,
    trustPolicy: {
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Principal: { AWS: home }, Action: "sts:AssumeRole" }],
    },
  });
  const accounts = accountsOf(w, [[other, revoker]]);
  assert.equal(await accounts.missing(home), undefined, "the controller's own account");
  assert.equal(await accounts.missing(other), undefined);
  assert.match(
    (await accounts.missing(third)) ?? "",
    /no revoker role is configured for AWS account 777788889999 \(the controller's own credentials act in account 111122223333 only; revoker roles exist for 444455556666\)/,
  );
  const fallbacks: string[] = [];
  const p = provider(w, { accounts, onRevocationFallback: (cause) => fallbacks.push(cause) });
  const grant = (roleArn: string) => w.grant({ roleArn });
  const none = await p.revoke(recordOf(p, p.intent(w.facts("a"), grant(unreachable))));
  assert.equal(none.method, "expiry");
  assert.match(none.detail ?? "", /no revoker role is configured for AWS account 777788889999/);
  const denied = await p.revoke(recordOf(p, p.intent(w.facts("b"), grant(powerless))));
  assert.equal(denied.method, "expiry");
  assert.match(
    denied.detail ?? "",
    /may not write inline policies on role .*AWS said: .*not authorized to perform: iam:/,
  );
  assert.deepEqual(fallbacks, ["no-revoker", "access-denied"]);
});

/** Permissions a revoker role needs: the three inline-policy actions on the account's roles. */
function revokerPermissions(account: string) {
  return {
    Version: "2012-10-17",
    Statement: [
      {
        Effect: "Allow",
        Action: ["iam:GetRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy"],
        Resource: `arn:aws:iam::${account}:role/*`,
      },
    ],
  };
}

/** Puts an inline policy on the role that leaves only `room` characters of IAM's 10,240. */
async function fillInlineBudget(w: ProviderWorld, roleArn: string, room: number): Promise<void> {
  const iam = new IAMClient({
    region: "us-east-1",
    endpoint: w.peer.endpoint,
    credentials: w.peer.adminCredentials,
  });
  const doc = (pad: number) =>
    JSON.stringify({
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: `arn:aws:s3:::${"x".repeat(pad)}` }],
    });
  const pad = 10_240 - room - doc(0).length;
  await iam.send(
    new PutRolePolicyCommand({
      RoleName: roleArn.split("/").pop(),
      PolicyName: "filler",
      PolicyDocument: doc(pad),
    }),
  );
}

test("steps get AWS_ENDPOINT_URL with their credentials only when the operator set a step endpoint", async (t) => {
  const w = await world(t);
  const roleArn = `arn:aws:iam::${home}:role/deployer`;
  w.trustingRole(roleArn, [readArtifacts]);
  const plain = await provider(w).mint(w.facts("plain"), w.grant({ roleArn }));
  assert.deepEqual(plain.mount.env, { AWS_REGION: "eu-west-1", AWS_DEFAULT_REGION: "eu-west-1" });
  const proxied = provider(w, { stepEndpoint: "https://aws-proxy.internal:8443" });
  for (const delivery of ["env", "file"] as const) {
    const grant = w.grant({ roleArn });
    grant.trait.properties.delivery = delivery;
    const minted = await proxied.mint(w.facts(`proxied-${delivery}`), grant);
    assert.equal(minted.mount.env.AWS_ENDPOINT_URL, "https://aws-proxy.internal:8443", delivery);
    assert.equal(minted.mount.env.AWS_REGION, "eu-west-1", delivery);
  }
});

test("nothing reaches STS before the ledger holds the intent: a ledger write that fails issues no session", async (t) => {
  const w = await world(t);
  const roleArn = `arn:aws:iam::${home}:role/deployer`;
  w.trustingRole(roleArn, [readArtifacts]);
  const p = provider(w);
  const stsCalls = () => w.peer.calls().filter((c) => c.action === "AssumeRoleWithWebIdentity");

  // The world's signer signs at once, whatever `recorded` says: the provider itself holds STS back.
  const failed = p.mint(
    w.facts("unrecorded"),
    w.grant({ roleArn }),
    Promise.reject(new Error("etcd timed out")),
  );
  await assert.rejects(failed, /etcd timed out/);
  assert.deepEqual(stsCalls(), [], "no call went to STS");
  assert.equal(w.peer.sessions().length, 0);

  let record = () => {};
  const recorded = new Promise<void>((resolve) => (record = resolve));
  const minting = p.mint(w.facts("recorded"), w.grant({ roleArn }), recorded);
  record();
  const minted = await minting;
  assert.ok(minted.secretData.sessionToken);
  assert.equal(stsCalls().length, 1);
});
