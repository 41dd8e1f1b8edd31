// Deny-policy revocation through real runs: a role whose inline policy budget is spent still lets
// runs end (their revocation falls back to expiry, counted and logged), and a role in another
// account is revoked in that account through the revoker role configured for it, or refused
// before anything is minted when its account has none.
import { test } from "node:test";
import assert from "node:assert/strict";
import { IAMClient, PutRolePolicyCommand } from "@aws-sdk/client-iam";
import { stepState } from "../../tasks/scoped-step/status.ts";
import type { Param } from "../../tasks/scoped-step/types.ts";
import { createTrustingRole } from "../support/aws/trust.ts";
import { startIdentityWorld, type IdentityWorld } from "../support/identity-world.ts";
import { ledgerEntries } from "../support/ledger.ts";
import { eventually } from "../support/wait.ts";
import { condition, resultsOf } from "../support/world.ts";

const home = "111122223333";
const other = "444455556666";
const unconfigured = "777788889999";
const fullRole = `arn:aws:iam::${home}:role/payments-full`;
const otherRole = `arn:aws:iam::${other}:role/payments-deployer`;
const strandedRole = `arn:aws:iam::${unconfigured}:role/payments-deployer`;
const revokerRole = `arn:aws:iam::${other}:role/scoped-step-revoker`;

const policy = {
  aws: { allowedRoleArns: ["arn:aws:iam::*:role/payments-*"], maxSessionDuration: 3600 },
  deliveryModes: ["env"],
  revocation: "deny-policy",
};

const component = (roleArn: string) => [
  {
    name: "api",
    type: "webservice",
    traits: [
      {
        type: "scoped-identity",
        properties: { audience: "sts.amazonaws.com", aws: { roleArn, region: "eu-west-1" } },
      },
    ],
  },
];

const params = (application: string): Param[] => [
  { name: "image", value: "busybox" },
  { name: "script", value: "true" },
  { name: "application", value: application },
  { name: "component", value: "api" },
];

/** A role trusting the controller's issuer, with the issuer registered as a provider in its account. */
function trustingRoleIn(w: IdentityWorld, arn: string): void {
  const account = arn.split(":")[4] ?? "";
  const { arn: provider } =
    account === home
      ? { arn: `arn:aws:iam::${home}:oidc-provider/${w.providerHost}` }
      : w.peer.registerOidcProvider({ url: w.issuer, audiences: ["sts.amazonaws.com"], accountId: account });
  createTrustingRole(
    w.peer,
    { port: 0, issuer: w.issuer, host: w.providerHost, provider },
    { arn, subjectLike: `system:scoped-step:${w.ns}:*` },
  );
}

const world: Promise<IdentityWorld> = startIdentityWorld(policy).then(async (w) => {
  trustingRoleIn(w, fullRole);
  trustingRoleIn(w, otherRole);
  trustingRoleIn(w, strandedRole);
  // The full role: another inline policy leaves less room than one deny statement needs.
  const filler = (pad: number) =>
    JSON.stringify({
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: `arn:aws:s3:::${"x".repeat(pad)}` }],
    });
  const iam = new IAMClient({
    region: "us-east-1",
    endpoint: w.peer.endpoint,
    credentials: w.peer.adminCredentials,
  });
  await iam.send(
    new PutRolePolicyCommand({
      RoleName: "payments-full",
      PolicyName: "filler",
      PolicyDocument: filler(10_240 - 100 - filler(0).length),
    }),
  );
  // The revoker role in the other account: trusts the controller's account, may write inline policies there.
  w.peer.createRole({
    arn: revokerRole,
    trustPolicy: {
      Version: "2012-10-17",
      Statement: [
        { Effect: "Allow", Principal: { AWS: `arn:aws:iam::${home}:root` }, Action: "sts:AssumeRole" },
      ],
    },
    permissionPolicies: [
      {
        Version: "2012-10-17",
        Statement: [
          {
            Effect: "Allow",
            Action: ["iam:GetRolePolicy", "iam:PutRolePolicy", "iam:DeleteRolePolicy"],
            Resource: `arn:aws:iam::${other}:role/*`,
          },
        ],
      },
    ],
  });
  await w.restartController({ SCOPED_STEP_AWS_REVOKER_ROLES: revokerRole });
  await w.createApplication("full", component(fullRole));
  await w.createApplication("other", component(otherRole));
  await w.createApplication("stranded", component(strandedRole));
  return w;
});

async function metric(w: IdentityWorld, series: string): Promise<number> {
  const text = await (await fetch(`${w.issuer}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

test("a role whose deny budget is full still lets its runs end, with their revocation fallen back to expiry", async () => {
  const w = await world;
  await w.createRun("full-1", { params: params("full") });
  await w.createRun("full-2", { params: params("full") });
  for (const name of ["full-1", "full-2"]) {
    const run = await w.waitDone(name);
    assert.equal(condition(run)?.status, "True", condition(run)?.message);
    await eventually(`${name}: its credential to be done with`, async () => {
      const current = await w.getRun(name);
      return stepState(current?.status ?? {}).credential?.state === "revoked" ? true : undefined;
    });
    const source = resultsOf(run)["aws-source-identity"] ?? "missing";
    const done = await w.getRun(name);
    assert.equal(resultsOf(done).revocation, "expiry");
    await w.waitForEvents(name, ["RevocationFellBackToExpiry"]);
    assert.equal(
      (w.peer.rolePolicies(fullRole)["scoped-step-revocations"] ?? "").includes(source),
      false,
      "no deny could be written",
    );
  }
  await eventually("both fallbacks to be counted", async () =>
    (await metric(w, 'scoped_step_revocation_fallbacks_total{cause="budget-exhausted"}')) >= 2
      ? true
      : undefined,
  );
  const warnings = w.controller
    ?.logLines()
    .filter((l) => l.msg === "session could not be denied; it stays usable until it expires");
  assert.equal(warnings?.length, 2);
  assert.match(String(warnings?.[0]?.detail), /10,240-character limit/);
});

test("a role in another account is revoked in that account, by the revoker role assumed there", async () => {
  const w = await world;
  await w.createRun("cross", { params: params("other") });
  const run = await w.waitDone("cross");
  assert.equal(condition(run)?.status, "True", condition(run)?.message);
  assert.equal(resultsOf(run)["aws-role-arn"], otherRole);
  const source = resultsOf(run)["aws-source-identity"] ?? "missing";
  await eventually("the deny on the role in its own account", () =>
    Promise.resolve(
      (w.peer.rolePolicies(otherRole)["scoped-step-revocations"] ?? "").includes(source) ? true : undefined,
    ),
  );
  assert.equal(
    (w.peer.rolePolicies("payments-deployer")["scoped-step-revocations"] ?? "").includes(source),
    false,
    "nothing on the role of the same name in the controller's account",
  );
  const writes = w.peer.calls().filter((c) => c.action === "PutRolePolicy" && c.outcome === "ok");
  assert.ok(
    writes.some(
      (c) => c.principal === `arn:aws:sts::${other}:assumed-role/scoped-step-revoker/scoped-step-revoker`,
    ),
  );
});

test("a role in an account with no revoker is refused before anything is minted, with a reason that says so", async () => {
  const w = await world;
  await w.createRun("stranded", { params: params("stranded") });
  const run = await w.waitDone("stranded");
  assert.equal(condition(run)?.reason, "RevokerNotConfigured", condition(run)?.message);
  assert.match(
    condition(run)?.message ?? "",
    /no revoker role is configured for AWS account 777788889999 .*add a revoker role in account 777788889999 to the controller's aws-revoker-roles setting/,
  );
  const minted = w.peer
    .calls()
    .filter((c) => c.action === "AssumeRoleWithWebIdentity" && c.roleArn === strandedRole);
  assert.deepEqual(minted, []);
});

test("a mint STS refused writes no deny", async () => {
  const w = await world;
  w.peer.failNext(
    "AssumeRoleWithWebIdentity",
    "AccessDenied",
    "Not authorized to perform sts:AssumeRoleWithWebIdentity",
    1,
  );
  await w.createRun("refused", { params: params("other") });
  const run = await w.waitDone("refused");
  assert.equal(condition(run)?.reason, "AWSRoleTrustRejected");
  const intent = stepState(run.status ?? {}).credential?.intent ?? {};
  assert.ok(intent.sourceIdentity);
  assert.equal(
    (w.peer.rolePolicies(otherRole)["scoped-step-revocations"] ?? "").includes(intent.sourceIdentity),
    false,
  );
  // The ledger entry is closed too, so no sweep denies it later.
  const entry = (await ledgerEntries(w.cluster.kc, w.controllerNs)).find((e) => e.run.name === "refused");
  assert.equal(entry?.state, "revoked");
  assert.equal(entry?.revocation, "none: nothing was issued");
});
