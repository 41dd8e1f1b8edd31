import { test } from "node:test";
import assert from "node:assert/strict";
import { IAMClient } from "@aws-sdk/client-iam";
import { pino } from "pino";
import { denyListRevoker, revocationPolicyName } from "../../tasks/scoped-step/credentials/aws-revocation.ts";
import { startAwsPeer } from "../support/aws/server.ts";

const trustPolicy = {
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
};

test("revocations arriving together are written to the role in a few IAM calls, none lost", async (t) => {
  const peer = await startAwsPeer();
  t.after(() => peer.stop());
  const roleArn = "arn:aws:iam::111122223333:role/deployer";
  peer.createRole({ arn: roleArn, trustPolicy });
  const client = new IAMClient({
    region: "us-east-1",
    endpoint: peer.endpoint,
    credentials: peer.adminCredentials,
  });
  const revoker = denyListRevoker({ log: pino({ level: "silent" }), client });
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
  const peer = await startAwsPeer();
  t.after(() => peer.stop());
  const roleArn = "arn:aws:iam::111122223333:role/pruned";
  peer.createRole({ arn: roleArn, trustPolicy });
  const client = new IAMClient({
    region: "us-east-1",
    endpoint: peer.endpoint,
    credentials: peer.adminCredentials,
  });
  const revoker = denyListRevoker({ log: pino({ level: "silent" }), client });
  await revoker.revoke({ roleArn, sourceIdentity: "short-lived", expiresAt: new Date(Date.now() + 1000) });
  assert.ok(peer.rolePolicies("pruned")[revocationPolicyName]);
  await revoker.prune(roleArn, new Date());
  assert.ok(peer.rolePolicies("pruned")[revocationPolicyName], "kept while its expiry bucket lasts");
  await revoker.prune(roleArn, new Date(Date.now() + 600_000));
  assert.equal(peer.rolePolicies("pruned")[revocationPolicyName], undefined);
});
