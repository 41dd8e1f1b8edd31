import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ExpiredTokenException,
  IDPCommunicationErrorException,
  IDPRejectedClaimException,
  InvalidIdentityTokenException,
  MalformedPolicyDocumentException,
  PackedPolicyTooLargeException,
  RegionDisabledException,
  STSServiceException,
} from "@aws-sdk/client-sts";
import { packSessionPolicy, sessionName, sourceIdentity } from "../../tasks/scoped-step/credentials/aws.ts";
import {
  describeStsError,
  isKeyFetchFailure,
  isTransientStsError,
} from "../../tasks/scoped-step/credentials/aws-errors.ts";
import { updateDenyList } from "../../tasks/scoped-step/credentials/aws-revocation.ts";
import { stsSdk } from "../../tasks/scoped-step/credentials/aws-sdk.ts";

// The provider loads the SDK when it first calls STS; errors exist only after that.
await stsSdk();

const facts = {
  namespace: "team-a",
  customRun: "build-and-deploy-to-production-with-a-very-long-pipeline-task-name",
  uid: "6184b664-a0a2-4ede-9350-0aba16ada189",
  attempt: 2,
  serviceAccount: "default",
  application: "payments",
  component: "api",
};

test("session names are readable, unique per run attempt, and within STS's rules", () => {
  const name = sessionName(facts);
  assert.ok(name.length >= 2 && name.length <= 64, name);
  assert.match(name, /^[\w+=,.@-]+$/);
  assert.ok(name.startsWith("team-a.build-and-deploy"));
  assert.ok(name.endsWith("-6184b664-2"));
  assert.notEqual(name, sessionName({ ...facts, attempt: 3 }));
  assert.equal(sessionName({ ...facts, namespace: "a/b c" }).includes("/"), false);
});

test("the source identity is a per-run id STS accepts", () => {
  const id = sourceIdentity(facts);
  assert.match(id, /^[\w+=,.@-]{2,64}$/);
  assert.ok(!id.startsWith("aws:"));
  assert.notEqual(id, sourceIdentity({ ...facts, uid: "other" }));
});

test("session policies are minified and held to STS's 2048-character limit before any call", () => {
  assert.equal(
    packSessionPolicy({ Version: "2012-10-17", Statement: [] }),
    '{"Version":"2012-10-17","Statement":[]}',
  );
  assert.equal(packSessionPolicy('{ "Version" : "2012-10-17" }'), '{"Version":"2012-10-17"}');
  assert.equal(packSessionPolicy(undefined), undefined);
  assert.throws(() => packSessionPolicy({ Statement: [{ Resource: "x".repeat(2100) }] }), {
    reason: "AWSPolicyTooLarge",
  });
  assert.throws(() => packSessionPolicy("{not json"), { reason: "AWSPolicyMalformed" });
});

const stsError = (name: string, message: string) =>
  new STSServiceException({ name, message, $fault: "client", $metadata: {} });
const ctx = {
  roleArn: "arn:aws:iam::111122223333:role/r",
  subject: "system:scoped-step:a:b:c",
  audience: "sts.amazonaws.com",
  issuer: "https://issuer.example",
};

test("each STS error maps to a reason that names its cause", () => {
  const cases: [string, string, string][] = [
    ["AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", "AWSRoleTrustRejected"],
    [
      "InvalidIdentityToken",
      "No OpenIDConnect provider found in your account for https://issuer.example",
      "AWSInvalidToken",
    ],
    ["IDPRejectedClaim", "rejected", "AWSTokenRejected"],
    ["ExpiredTokenException", "Token expired", "AWSTokenExpired"],
    ["MalformedPolicyDocument", "bad policy", "AWSPolicyMalformed"],
    ["PackedPolicyTooLarge", "too large", "AWSPolicyTooLarge"],
    ["RegionDisabledException", "disabled", "AWSRegionDisabled"],
    ["ValidationError", "DurationSeconds exceeds the MaxSessionDuration", "AWSRequestInvalid"],
  ];
  for (const [code, message, reason] of cases) {
    const failure = describeStsError(stsError(code, message), ctx);
    assert.equal(failure?.reason, reason, code);
    assert.ok(failure?.message.includes(message), `${code}: AWS's own words are kept`);
    assert.equal(failure?.nothingIssued, true, `${code}: an error response proves no session was issued`);
  }
  const trust = describeStsError(stsError("AccessDenied", "no"), ctx);
  assert.match(trust?.message ?? "", /issuer\.example:sub matching "system:scoped-step:a:b:c"/);
});

test("throttling and IdP communication errors are left to retry; a JWKS fetch failure is recognised", () => {
  assert.equal(describeStsError(stsError("Throttling", "slow down"), ctx), undefined);
  assert.equal(describeStsError(stsError("IDPCommunicationError", "timeout"), ctx), undefined);
  const keyFetch = stsError(
    "InvalidIdentityToken",
    "Couldn't retrieve verification key from your identity provider",
  );
  assert.equal(isKeyFetchFailure(keyFetch), true);
  assert.equal(describeStsError(keyFetch, ctx)?.reason, "AWSIdentityProviderUnreachable");
});

test("the deny list groups sessions by expiry and drops groups once their sessions are over", () => {
  const t0 = new Date("2026-01-01T00:00:00Z");
  const plus = (s: number) => new Date(t0.getTime() + s * 1000);
  let doc = updateDenyList(undefined, { sourceIdentity: "a", expiresAt: plus(100) }, t0);
  doc = updateDenyList(doc, { sourceIdentity: "b", expiresAt: plus(200) }, t0);
  doc = updateDenyList(doc, { sourceIdentity: "c", expiresAt: plus(1000) }, t0);
  assert.equal(doc.Statement.length, 2);
  assert.deepEqual(doc.Statement[0]?.Condition.StringEquals["aws:SourceIdentity"], ["a", "b"]);
  assert.equal(doc.Statement[0]?.Effect, "Deny");
  const later = updateDenyList(doc, undefined, plus(400));
  assert.deepEqual(
    later.Statement.map((s) => s.Condition.StringEquals["aws:SourceIdentity"]),
    [["c"]],
  );
  assert.equal(updateDenyList(later, undefined, plus(2000)).Statement.length, 0);
});

test("two hundred revoked sessions within one expiry window stay under IAM's inline policy limit", () => {
  const t0 = new Date("2026-01-01T00:00:00Z");
  let doc = updateDenyList(undefined, undefined, t0);
  for (let i = 0; i < 200; i++) {
    doc = updateDenyList(
      doc,
      { sourceIdentity: `scoped-step-${"f".repeat(24)}-${i}`, expiresAt: new Date(t0.getTime() + 900_000) },
      t0,
    );
  }
  assert.equal(doc.Statement.length, 1);
  assert.ok(JSON.stringify(doc).length < 10_240, `${JSON.stringify(doc).length} characters`);
});

test("only failures a retry can fix are retried", () => {
  assert.equal(isTransientStsError(stsError("Throttling", "Rate exceeded")), true);
  assert.equal(isTransientStsError(stsError("IDPCommunicationError", "timeout")), true);
  assert.equal(
    isTransientStsError(
      stsError("InvalidIdentityToken", "Couldn't retrieve verification key from your identity provider"),
    ),
    true,
  );
  assert.equal(isTransientStsError(stsError("InvalidIdentityToken", "Incorrect token audience")), false);
  assert.equal(isTransientStsError(stsError("AccessDenied", "Not authorized")), false);
  assert.equal(isTransientStsError(new Error("connect ECONNREFUSED 127.0.0.1:1")), true);
  // The SDK decorates network errors with $metadata too; only STS's own error responses are final.
  const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), {
    code: "ECONNREFUSED",
    $metadata: { attempts: 1 },
  });
  assert.equal(isTransientStsError(refused), true);
});

test("the SDK's own exception classes map like the wire codes", () => {
  const meta = { $metadata: {} };
  const real: [Error, string][] = [
    [new InvalidIdentityTokenException({ message: "Incorrect token audience", ...meta }), "AWSInvalidToken"],
    [new IDPRejectedClaimException({ message: "rejected", ...meta }), "AWSTokenRejected"],
    [new ExpiredTokenException({ message: "Token expired", ...meta }), "AWSTokenExpired"],
    [new MalformedPolicyDocumentException({ message: "bad", ...meta }), "AWSPolicyMalformed"],
    [new PackedPolicyTooLargeException({ message: "big", ...meta }), "AWSPolicyTooLarge"],
    [new RegionDisabledException({ message: "off", ...meta }), "AWSRegionDisabled"],
  ];
  for (const [err, reason] of real) assert.equal(describeStsError(err, ctx)?.reason, reason, err.name);
  const keyFetch = new InvalidIdentityTokenException({
    message: "Couldn't retrieve verification key from your identity provider",
    ...meta,
  });
  assert.equal(isTransientStsError(keyFetch), true);
  assert.equal(
    isTransientStsError(new IDPCommunicationErrorException({ message: "timeout", ...meta })),
    true,
  );
});
