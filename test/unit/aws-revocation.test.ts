import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { IAMClient } from "@aws-sdk/client-iam";
import { pino } from "pino";
import { denyListRevoker, revocationPolicyName } from "../../tasks/scoped-step/credentials/aws-revocation.ts";
import { startAwsPeer } from "../../simulators/aws/server.ts";

const trustPolicy = {
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
};

/** A peer with one role (and optional inline policies already on it) and a revoker writing with the admin's keys. */
async function roleWithRevoker(t: TestContext, name: string, inlinePolicies: Record<string, string> = {}) {
  const peer = await startAwsPeer();
  t.after(() => peer.stop());
  const roleArn = `arn:aws:iam::111122223333:role/${name}`;
  peer.createRole({ arn: roleArn, trustPolicy, inlinePolicies });
  const client = new IAMClient({
    region: "us-east-1",
    endpoint: peer.endpoint,
    credentials: peer.adminCredentials,
  });
  return { peer, roleArn, revoker: denyListRevoker({ log: pino({ level: "silent" }), client }) };
}

test("revocations arriving together are written to the role in a few IAM calls, none lost", async (t) => {
  const { peer, roleArn, revoker } = await roleWithRevoker(t, "deployer");
  const expiresAt = new Date(Date.now() + 900_000);
  const ids = Array.from({ length: 40 }, (_, i) => `scoped-step-run-${i}`);
  await Promise.all(ids.map((sourceIdentity) => revoker.revoke({ roleArn, sourceIdentity, expiresAt })));

  const doc = JSON.parse(peer.rolePolicies("deployer")[revocationPolicyName] ?? "{}") as {
    Statement: { Condition: { StringEquals: { "aws:SourceIdentity": string[] } } }[];
  };
  const denied = doc.Statement.flatMap((s) => s.Condition.StringEquals["aws:SourceIdentity"]);
  assert.deepEqual([...denied].sort(), [...ids].sort());
  const writes = peer.calls().filter((c) => c.action === "PutRolePolicy").length;
  assert.ok(writes < ids.length / 4, `${writes} PutRolePolicy calls for ${ids.length} revocations`);
});

test("pruning removes the deny once every session in it has expired", async (t) => {
  const { peer, roleArn, revoker } = await roleWithRevoker(t, "pruned");
  await revoker.revoke({ roleArn, sourceIdentity: "short-lived", expiresAt: new Date(Date.now() + 1000) });
  assert.ok(peer.rolePolicies("pruned")[revocationPolicyName]);
  await revoker.prune(roleArn, new Date());
  assert.ok(peer.rolePolicies("pruned")[revocationPolicyName], "kept while its expiry bucket lasts");
  await revoker.prune(roleArn, new Date(Date.now() + 600_000));
  assert.equal(peer.rolePolicies("pruned")[revocationPolicyName], undefined);
});

test("revocations that do not all fit on the role: those that fit are denied, the rest left to expire", async (t) => {
  const filler = (pad: number) =>
    JSON.stringify({
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: `arn:aws:s3:::${"x".repeat(pad)}` }],
    });
  // Room for the statement and a few source identities, not for ten.
  const { peer, roleArn, revoker } = await roleWithRevoker(t, "nearly-full", {
    filler: filler(10_240 - 320 - filler(0).length),
  });
  const expiresAt = new Date(Date.now() + 900_000);
  const ids = Array.from({ length: 10 }, (_, i) => `scoped-step-${"f".repeat(24)}-${i}`);
  const results = await Promise.all(
    ids.map((sourceIdentity) => revoker.revoke({ roleArn, sourceIdentity, expiresAt })),
  );

  const denied = ids.filter((_, i) => results[i]?.denied);
  const left = results.filter((r) => !r.denied);
  assert.ok(denied.length > 0 && left.length > 0, `${denied.length} denied, ${left.length} left to expire`);
  for (const r of left) assert.ok(!r.denied && !r.expired && r.cause === "budget-exhausted");
  const doc = peer.rolePolicies("nearly-full")[revocationPolicyName] ?? "";
  for (const id of ids) assert.equal(doc.includes(id), denied.includes(id), id);
});

test("a revocation for a session that has already expired writes nothing", async (t) => {
  const { peer, roleArn, revoker } = await roleWithRevoker(t, "expired");
  const result = await revoker.revoke({
    roleArn,
    sourceIdentity: "gone",
    expiresAt: new Date(Date.now() - 1000),
  });
  assert.deepEqual(result, { denied: false, expired: true });
  assert.deepEqual(peer.calls(), []);
});
