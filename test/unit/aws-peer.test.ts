// The AWS test peer, driven by the real AWS SDK clients over HTTP, with a real OIDC issuer on
// loopback: each behaviour here is one the controller's tests rely on AWS to have.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import type { TestContext } from "node:test";
import {
  DeleteRolePolicyCommand,
  GetRolePolicyCommand,
  IAMClient,
  ListRolePoliciesCommand,
  PutRolePolicyCommand,
} from "@aws-sdk/client-iam";
import { CloudFrontClient, CreateInvalidationCommand } from "@aws-sdk/client-cloudfront";
import { ECRClient, GetAuthorizationTokenCommand } from "@aws-sdk/client-ecr";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import {
  AssumeRoleCommand,
  AssumeRoleWithWebIdentityCommand,
  GetCallerIdentityCommand,
  STSClient,
} from "@aws-sdk/client-sts";
import type { AssumeRoleWithWebIdentityCommandInput, Credentials } from "@aws-sdk/client-sts";
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import type { CryptoKey, JWTPayload } from "jose";
import { startAwsPeer } from "../../simulators/aws/server.ts";
import type { AwsPeer } from "../../simulators/aws/server.ts";

const REGION = "eu-west-1";
const ACCOUNT = "111122223333";
const ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/deployer`;
const SUBJECT = "system:scoped-step:team-a:payments:api";
const AUDIENCE = "sts.amazonaws.com";
const BUCKET = "artifacts";

// ---- a real OIDC issuer on loopback ----------------------------------------------------------------

interface Issuer {
  url: string;
  sign(
    claims?: JWTPayload,
    options?: { key?: CryptoKey; kid?: string; lifetime?: number; at?: Date },
  ): Promise<string>;
  /** While unavailable, the discovery document and JWKS answer 503. */
  setAvailable(available: boolean): void;
  /** The Cache-Control header of both documents; none by default. */
  setCacheControl(value: string | undefined): void;
  /** How many times the JWKS has been fetched. */
  jwksFetches(): number;
  stop(): Promise<void>;
}

async function startIssuer(alg: "ES256" | "RS256" = "ES256"): Promise<Issuer> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const jwk = { ...(await exportJWK(publicKey)), kid: "key-1", alg, use: "sig" };
  let available = true;
  let cacheControl: string | undefined;
  let jwksFetches = 0;
  let base = "";
  const server = createServer((req, res) => {
    const json = (body: unknown): void => {
      const headers = { "Content-Type": "application/json" };
      res
        .writeHead(200, cacheControl ? { ...headers, "Cache-Control": cacheControl } : headers)
        .end(JSON.stringify(body));
    };
    if (req.url === "/issuer/jwks") jwksFetches++;
    if (!available) res.writeHead(503).end();
    else if (req.url === "/issuer/.well-known/openid-configuration") {
      json({
        issuer: base,
        jwks_uri: `${base}/jwks`,
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: [alg],
      });
    } else if (req.url === "/issuer/jwks") json({ keys: [jwk] });
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/issuer`;
  return {
    url: base,
    async sign(claims = {}, { key = privateKey, kid = "key-1", lifetime = 600, at = new Date() } = {}) {
      const iat = Math.floor(at.getTime() / 1000);
      return new SignJWT({ sub: SUBJECT, aud: AUDIENCE, ...claims })
        .setProtectedHeader({ alg, kid, typ: "JWT" })
        .setIssuer(base)
        .setIssuedAt(iat)
        .setNotBefore(iat - 5)
        .setExpirationTime(iat + lifetime)
        .sign(key);
    },
    setAvailable(value) {
      available = value;
    },
    setCacheControl(value) {
      cacheControl = value;
    },
    jwksFetches: () => jwksFetches,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// ---- fixture -------------------------------------------------------------------------------------

type Conditions = Record<string, Record<string, string | string[]>>;

interface Fixture {
  peer: AwsPeer;
  issuer: Issuer;
  providerArn: string;
  /** The issuer URL without scheme: the prefix of the trust policy's condition keys. */
  hp: string;
  sts: STSClient;
  assume(
    input?: Partial<AssumeRoleWithWebIdentityCommandInput>,
    claims?: JWTPayload,
  ): Promise<{ credentials: Credentials; arn: string; roleId: string }>;
}

function trustPolicy(
  providerArn: string,
  conditions: Conditions,
  actions = ["sts:AssumeRoleWithWebIdentity"],
) {
  return {
    Version: "2012-10-17",
    Statement: [
      { Effect: "Allow", Principal: { Federated: providerArn }, Action: actions, Condition: conditions },
    ],
  };
}

const ROLE_PERMISSIONS = {
  Version: "2012-10-17",
  Statement: [
    {
      Effect: "Allow",
      Action: ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
      Resource: [`arn:aws:s3:::${BUCKET}`, `arn:aws:s3:::${BUCKET}/*`],
    },
    {
      Effect: "Allow",
      Action: "cloudfront:CreateInvalidation",
      Resource: `arn:aws:cloudfront::${ACCOUNT}:distribution/*`,
    },
    { Effect: "Allow", Action: "ecr:*", Resource: "*" },
  ],
};

async function fixture(
  t: TestContext,
  options: {
    alg?: "ES256" | "RS256";
    conditions?: (hp: string) => Conditions;
    actions?: string[];
    maxSessionDuration?: number;
    cacheKeys?: boolean;
  } = {},
): Promise<Fixture> {
  const peer = await startAwsPeer({ cacheKeys: options.cacheKeys ?? false });
  t.after(() => peer.stop());
  const issuer = await startIssuer(options.alg);
  t.after(() => issuer.stop());
  const { arn: providerArn } = peer.registerOidcProvider({ url: issuer.url, audiences: [AUDIENCE] });
  const hp = issuer.url.replace(/^http:\/\//, "");
  const conditions = options.conditions?.(hp) ?? {
    StringEquals: { [`${hp}:sub`]: SUBJECT, [`${hp}:aud`]: AUDIENCE },
  };
  peer.createRole({
    arn: ROLE_ARN,
    trustPolicy: trustPolicy(providerArn, conditions, options.actions),
    maxSessionDuration: options.maxSessionDuration,
    permissionPolicies: [ROLE_PERMISSIONS],
  });
  peer.putObject(BUCKET, "allowed/report.txt", "the report");
  peer.putObject(BUCKET, "secret/keys.txt", "the keys");
  const sts = new STSClient({ endpoint: peer.endpoint, region: REGION });
  t.after(() => sts.destroy());
  return {
    peer,
    issuer,
    providerArn,
    hp,
    sts,
    async assume(input = {}, claims = {}) {
      const out = await sts.send(
        new AssumeRoleWithWebIdentityCommand({
          RoleArn: ROLE_ARN,
          RoleSessionName: "run-1",
          WebIdentityToken: await issuer.sign(claims, { at: peer.now() }),
          DurationSeconds: 900,
          ...input,
        }),
      );
      assert.ok(out.Credentials && out.AssumedRoleUser?.Arn && out.AssumedRoleUser.AssumedRoleId);
      return {
        credentials: out.Credentials,
        arn: out.AssumedRoleUser.Arn,
        roleId: out.AssumedRoleUser.AssumedRoleId,
      };
    },
  };
}

function sdkCredentials(c: Credentials) {
  return {
    accessKeyId: c.AccessKeyId ?? "",
    secretAccessKey: c.SecretAccessKey ?? "",
    sessionToken: c.SessionToken,
  };
}

function s3For(t: TestContext, peer: AwsPeer, c: Credentials): S3Client {
  const s3 = new S3Client({
    endpoint: peer.endpoint,
    region: REGION,
    forcePathStyle: true,
    credentials: sdkCredentials(c),
  });
  t.after(() => s3.destroy());
  return s3;
}

function stsFor(t: TestContext, peer: AwsPeer, c: Credentials): STSClient {
  const sts = new STSClient({ endpoint: peer.endpoint, region: REGION, credentials: sdkCredentials(c) });
  t.after(() => sts.destroy());
  return sts;
}

function adminIam(t: TestContext, peer: AwsPeer, region = "us-east-1"): IAMClient {
  const iam = new IAMClient({ endpoint: peer.endpoint, region, credentials: peer.adminCredentials });
  t.after(() => iam.destroy());
  return iam;
}

interface Failure {
  name: string;
  message: string;
  status: number | undefined;
}

/** The AWS error a call ends with (after the SDK's own retries). */
async function failure(call: Promise<unknown>): Promise<Failure> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof Error);
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    return { name: err.name, message: err.message, status };
  }
  assert.fail("expected the call to fail");
}

async function read(s3: S3Client, key: string): Promise<string> {
  const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return (await out.Body?.transformToString()) ?? "";
}

// ---- STS -----------------------------------------------------------------------------------------

describe("AssumeRoleWithWebIdentity", () => {
  test("issues session credentials with the assumed-role ARN, role id and the token's facts", async (t) => {
    const f = await fixture(t);
    const token = await f.issuer.sign({}, { at: f.peer.now() });
    const out = await f.sts.send(
      new AssumeRoleWithWebIdentityCommand({
        RoleArn: ROLE_ARN,
        RoleSessionName: "payments-api-run-1",
        WebIdentityToken: token,
        DurationSeconds: 900,
        Policy: JSON.stringify({
          Version: "2012-10-17",
          Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: `arn:aws:s3:::${BUCKET}/*` }],
        }),
      }),
    );
    assert.match(out.Credentials?.AccessKeyId ?? "", /^ASIA[A-Z2-7]{16}$/);
    assert.ok((out.Credentials?.SecretAccessKey ?? "").length >= 40);
    assert.ok(out.Credentials?.SessionToken);
    assert.equal(
      out.AssumedRoleUser?.Arn,
      `arn:aws:sts::${ACCOUNT}:assumed-role/deployer/payments-api-run-1`,
    );
    assert.match(out.AssumedRoleUser?.AssumedRoleId ?? "", /^AROA[A-Z2-7]{17}:payments-api-run-1$/);
    assert.equal(out.SubjectFromWebIdentityToken, SUBJECT);
    assert.equal(out.Audience, AUDIENCE);
    assert.equal(out.Provider, f.providerArn);
    assert.equal(f.providerArn, `arn:aws:iam::${ACCOUNT}:oidc-provider/${f.hp}`);
    const utilization = out.SessionTokenUtilization ?? 0;
    assert.ok(utilization > 0 && utilization < 100, `utilization ${utilization}%`);
    assert.equal(out.SessionTokenSize, out.Credentials?.SessionToken?.length);

    const [session] = f.peer.sessions();
    assert.equal(session?.accessKeyId, out.Credentials?.AccessKeyId);
    assert.equal((session?.expiration.getTime() ?? 0) - (session?.issuedAt.getTime() ?? 0), 900_000);
    assert.equal(
      out.Credentials?.Expiration?.getTime(),
      Math.floor((session?.expiration.getTime() ?? 0) / 1000) * 1000,
    );
    assert.equal(session?.roleArn, ROLE_ARN);
    assert.equal(session?.subject, SUBJECT);
    assert.ok(session && !("secretAccessKey" in session) && !("sessionToken" in session));
    const [call] = f.peer.calls();
    assert.deepEqual(
      [call?.service, call?.action, call?.outcome, call?.roleSessionName],
      ["sts", "AssumeRoleWithWebIdentity", "ok", "payments-api-run-1"],
    );
  });

  test("verifies RS256 tokens against the issuer's JWKS as well as ES256 ones", async (t) => {
    const f = await fixture(t, { alg: "RS256" });
    const { arn } = await f.assume();
    assert.equal(arn, `arn:aws:sts::${ACCOUNT}:assumed-role/deployer/run-1`);
  });

  test("carries the token's session tags and source identity into the session", async (t) => {
    const f = await fixture(t, {
      actions: ["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"],
    });
    const out = await f.sts.send(
      new AssumeRoleWithWebIdentityCommand({
        RoleArn: ROLE_ARN,
        RoleSessionName: "run-1",
        WebIdentityToken: await f.issuer.sign(
          {
            "https://aws.amazon.com/tags": {
              principal_tags: { team: ["payments"] },
              transitive_tag_keys: ["team"],
            },
            "https://aws.amazon.com/source_identity": "cr-team-a-run-1",
          },
          { at: f.peer.now() },
        ),
      }),
    );
    assert.equal(out.SourceIdentity, "cr-team-a-run-1");
    const [session] = f.peer.sessions();
    assert.deepEqual(session?.tags, { team: "payments" });
    assert.deepEqual(session?.transitiveTagKeys, ["team"]);
    assert.equal(session?.sourceIdentity, "cr-team-a-run-1");
  });

  test("rejects a token whose audience is not a client id of the provider", async (t) => {
    const f = await fixture(t);
    const err = await failure(f.assume({}, { aud: "someone-else" }));
    assert.deepEqual(err, {
      name: "InvalidIdentityTokenException",
      message: "Incorrect token audience",
      status: 400,
    });
  });

  test("rejects a token from an issuer that has no OIDC provider in the account", async (t) => {
    const f = await fixture(t);
    const stranger = await startIssuer();
    t.after(() => stranger.stop());
    const token = await stranger.sign({}, { at: f.peer.now() });
    const err = await failure(f.assume({ WebIdentityToken: token }));
    assert.equal(err.name, "InvalidIdentityTokenException");
    assert.equal(err.message, `No OpenIDConnect provider found in your account for ${stranger.url}`);
  });

  test("rejects a token signed by a key the issuer does not publish", async (t) => {
    const f = await fixture(t);
    const { privateKey: other } = await generateKeyPair("ES256");
    const token = await f.issuer.sign({}, { key: other, at: f.peer.now() });
    const err = await failure(f.assume({ WebIdentityToken: token }));
    assert.equal(err.name, "InvalidIdentityTokenException");
    assert.match(err.message, /signature/);
  });

  test("rejects something that is not a JWT", async (t) => {
    const f = await fixture(t);
    const err = await failure(f.assume({ WebIdentityToken: "not-a-jwt-at-all" }));
    assert.equal(err.name, "InvalidIdentityTokenException");
    assert.match(err.message, /not a valid JWT/);
  });

  test("rejects an expired token with ExpiredTokenException, past IAM's five minutes of skew", async (t) => {
    const f = await fixture(t);
    const tenMinutesAgo = new Date(f.peer.now().getTime() - 10 * 60_000);
    const expired = await f.issuer.sign({}, { at: tenMinutesAgo, lifetime: 120 });
    const err = await failure(f.assume({ WebIdentityToken: expired }));
    assert.equal(err.name, "ExpiredTokenException");
    assert.match(
      err.message,
      /^Token expired: current date\/time \d+ must be before the expiration date\/time \d+$/,
    );
    // Expired by less than the skew allowance: still accepted, as IAM does.
    const justExpired = await f.issuer.sign(
      {},
      { at: new Date(f.peer.now().getTime() - 180_000), lifetime: 60 },
    );
    await f.assume({ WebIdentityToken: justExpired });
  });

  test("denies with AccessDenied when the trust policy's sub condition does not match", async (t) => {
    const f = await fixture(t);
    const err = await failure(f.assume({}, { sub: "system:scoped-step:team-b:payments:api" }));
    assert.deepEqual(err, {
      name: "AccessDenied",
      message: "Not authorized to perform sts:AssumeRoleWithWebIdentity",
      status: 403,
    });
  });

  test("denies a role that does not exist exactly like one that does not trust the caller", async (t) => {
    const f = await fixture(t);
    const err = await failure(f.assume({ RoleArn: `arn:aws:iam::${ACCOUNT}:role/nobody` }));
    assert.equal(err.name, "AccessDenied");
  });

  test("matches StringLike on sub and ForAnyValue:StringLike on aud", async (t) => {
    const f = await fixture(t, {
      conditions: (hp) => ({
        StringLike: { [`${hp}:sub`]: "system:scoped-step:team-a:*" },
        "ForAnyValue:StringLike": { [`${hp}:aud`]: ["sts.*.com", "other"] },
      }),
    });
    await f.assume({}, { sub: "system:scoped-step:team-a:billing:worker" });
    const err = await failure(f.assume({}, { sub: "system:scoped-step:team-ab:billing:worker" }));
    assert.equal(err.name, "AccessDenied");
  });

  test("validates DurationSeconds against 900..43200 and against the role's maximum", async (t) => {
    const f = await fixture(t, { maxSessionDuration: 7200 });
    const short = await failure(f.assume({ DurationSeconds: 899 }));
    assert.equal(short.name, "ValidationError");
    assert.equal(
      short.message,
      "1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900",
    );
    const long = await failure(f.assume({ DurationSeconds: 43201 }));
    assert.match(long.message, /Member must have value less than or equal to 43200/);
    const overRole = await failure(f.assume({ DurationSeconds: 7201 }));
    assert.deepEqual(overRole, {
      name: "ValidationError",
      message: "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
      status: 400,
    });
    await f.assume({ DurationSeconds: 7200 });
  });

  test("validates the RoleSessionName's length and characters", async (t) => {
    const f = await fixture(t);
    const bad = await failure(f.assume({ RoleSessionName: "run 1/x" }));
    assert.equal(bad.name, "ValidationError");
    assert.match(
      bad.message,
      /at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: \[\\w\+=,\.@-\]\*/,
    );
    const both = await failure(f.assume({ RoleSessionName: "x".repeat(65), DurationSeconds: 100 }));
    assert.match(both.message, /^2 validation errors detected: /);
    const short = await failure(f.assume({ RoleSessionName: "x" }));
    assert.match(short.message, /Member must have length greater than or equal to 2/);
  });

  test("rejects a session policy over 2048 characters, and a malformed one", async (t) => {
    const f = await fixture(t);
    const statement = {
      Effect: "Allow",
      Action: "s3:GetObject",
      Resource: `arn:aws:s3:::${BUCKET}/allowed/*`,
    };
    const big = JSON.stringify({
      Version: "2012-10-17",
      Statement: Array.from({ length: 40 }, () => statement),
    });
    assert.ok(big.length > 2048);
    const tooLong = await failure(f.assume({ Policy: big }));
    assert.equal(tooLong.name, "ValidationError");
    assert.match(
      tooLong.message,
      /at 'policy' failed to satisfy constraint: Member must have length less than or equal to 2048/,
    );
    const notJson = await failure(f.assume({ Policy: "{not json" }));
    assert.equal(notJson.name, "MalformedPolicyDocumentException");
    const noResource = await failure(
      f.assume({
        Policy: JSON.stringify({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "s3:*" }] }),
      }),
    );
    assert.deepEqual(noResource, {
      name: "MalformedPolicyDocumentException",
      message: "Missing required field Resource",
      status: 400,
    });
  });

  test("pads the session token to MinimumSessionTokenSize", async (t) => {
    const f = await fixture(t);
    const out = await f.sts.send(
      new AssumeRoleWithWebIdentityCommand({
        RoleArn: ROLE_ARN,
        RoleSessionName: "run-1",
        WebIdentityToken: await f.issuer.sign({}, { at: f.peer.now() }),
        MinimumSessionTokenSize: 4000,
      }),
    );
    assert.ok((out.Credentials?.SessionToken?.length ?? 0) >= 4000);
    assert.ok((out.SessionTokenUtilization ?? 0) >= 98);
  });

  test("rejects more than 10 policy ARNs", async (t) => {
    const f = await fixture(t);
    const arns = Array.from({ length: 11 }, () => ({
      arn: "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    }));
    const err = await failure(f.assume({ PolicyArns: arns }));
    assert.equal(err.name, "ValidationError");
    assert.match(
      err.message,
      /at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to 10/,
    );
  });

  test("rejects session tags and policy whose packed size exceeds the limit", async (t) => {
    const f = await fixture(t, { actions: ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"] });
    const tags: Record<string, string[]> = {};
    for (let i = 0; i < 40; i++) tags[randomBytes(32).toString("hex")] = [randomBytes(100).toString("hex")];
    const err = await failure(f.assume({}, { "https://aws.amazon.com/tags": { principal_tags: tags } }));
    assert.equal(err.name, "PackedPolicyTooLargeException");
    assert.match(
      err.message,
      /^The session token would be \d+ bytes, over the maximum allowed size of 4096 bytes/,
    );
  });

  test("requires sts:TagSession and sts:SetSourceIdentity in the trust policy for those claims", async (t) => {
    const f = await fixture(t);
    const tagged = await failure(
      f.assume({}, { "https://aws.amazon.com/tags": { principal_tags: { team: ["a"] } } }),
    );
    assert.deepEqual(
      [tagged.name, tagged.message],
      ["AccessDenied", "Not authorized to perform sts:TagSession"],
    );
    const sourced = await failure(f.assume({}, { "https://aws.amazon.com/source_identity": "run-1" }));
    assert.deepEqual(
      [sourced.name, sourced.message],
      ["AccessDenied", "Not authorized to perform sts:SetSourceIdentity"],
    );
  });

  test("answers InvalidIdentityToken 'Couldn't retrieve verification key' when the JWKS is unreachable", async (t) => {
    const f = await fixture(t);
    f.issuer.setAvailable(false);
    const err = await failure(f.assume());
    assert.deepEqual(err, {
      name: "InvalidIdentityTokenException",
      message:
        "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements",
      status: 400,
    });
    f.issuer.setAvailable(true);
    await f.assume();
  });

  test("with cacheKeys, keeps the JWKS for its max-age and fetches it again for a key it does not hold", async (t) => {
    const f = await fixture(t, { cacheKeys: true });
    f.issuer.setCacheControl("public, max-age=300");
    await f.assume();
    assert.equal(f.issuer.jwksFetches(), 1);
    f.issuer.setAvailable(false);
    await f.assume();
    assert.equal(f.issuer.jwksFetches(), 1, "the second call is verified with the cached keys");
    const other = (await generateKeyPair("ES256")).privateKey;
    const unknownKid = await f.issuer.sign({}, { key: other, kid: "key-2", at: f.peer.now() });
    const missing = await failure(
      f.sts.send(
        new AssumeRoleWithWebIdentityCommand({
          RoleArn: ROLE_ARN,
          RoleSessionName: "run-2",
          WebIdentityToken: unknownKid,
        }),
      ),
    );
    assert.equal(missing.name, "InvalidIdentityTokenException", "a kid not held is fetched for");
    f.peer.advanceClock(301);
    const stale = await failure(f.assume());
    assert.equal(stale.name, "InvalidIdentityTokenException", "keys past their max-age are fetched again");
    f.issuer.setAvailable(true);
    await f.assume();
    assert.equal(f.issuer.jwksFetches(), 2);
  });

  test("with cacheKeys, keeps nothing an issuer marks no-cache or gives no max-age", async (t) => {
    for (const cacheControl of ["no-cache, max-age=300", undefined]) {
      const f = await fixture(t, { cacheKeys: true });
      f.issuer.setCacheControl(cacheControl);
      await f.assume();
      f.issuer.setAvailable(false);
      const err = await failure(f.assume());
      assert.equal(err.name, "InvalidIdentityTokenException", String(cacheControl));
    }
  });

  test("fails with injected IDPCommunicationError, which the SDK retries", async (t) => {
    const f = await fixture(t);
    f.peer.failNext("AssumeRoleWithWebIdentity", "IDPCommunicationError", "The IdP is not reachable", 2);
    await f.assume();
    const outcomes = f.peer.calls().map((c) => [c.outcome, c.injected]);
    assert.deepEqual(outcomes, [
      ["IDPCommunicationError", true],
      ["IDPCommunicationError", true],
      ["ok", false],
    ]);
  });

  test("injects a final error the SDK does not retry", async (t) => {
    const f = await fixture(t);
    f.peer.failNext(
      "AssumeRoleWithWebIdentity",
      "RegionDisabledException",
      "STS is not activated in this region",
    );
    const err = await failure(f.assume());
    assert.deepEqual(err, {
      name: "RegionDisabledException",
      message: "STS is not activated in this region",
      status: 403,
    });
  });
});

describe("GetCallerIdentity", () => {
  test("identifies the session whose credentials signed the request", async (t) => {
    const f = await fixture(t);
    const { credentials, arn, roleId } = await f.assume();
    const me = await stsFor(t, f.peer, credentials).send(new GetCallerIdentityCommand({}));
    assert.deepEqual([me.Account, me.Arn, me.UserId], [ACCOUNT, arn, roleId]);
    assert.equal(f.peer.calls().at(-1)?.principal, arn);
  });

  test("rejects a wrong secret, an unknown key and a missing session token", async (t) => {
    const f = await fixture(t);
    const { credentials } = await f.assume();
    const wrongSecret = await failure(
      stsFor(t, f.peer, { ...credentials, SecretAccessKey: "x".repeat(40) }).send(
        new GetCallerIdentityCommand({}),
      ),
    );
    assert.deepEqual([wrongSecret.name, wrongSecret.status], ["SignatureDoesNotMatch", 403]);
    const unknown = await failure(
      stsFor(t, f.peer, { ...credentials, AccessKeyId: "ASIAAAAAAAAAAAAAAAAA" }).send(
        new GetCallerIdentityCommand({}),
      ),
    );
    assert.deepEqual([unknown.name, unknown.status], ["InvalidClientTokenId", 403]);
    const noToken = await failure(
      stsFor(t, f.peer, { ...credentials, SessionToken: undefined }).send(new GetCallerIdentityCommand({})),
    );
    assert.equal(noToken.name, "InvalidClientTokenId");
  });

  test("rejects an expired session with ExpiredToken once the SDK has corrected its clock", async (t) => {
    const f = await fixture(t);
    const { credentials } = await f.assume({ DurationSeconds: 900 });
    const sts = stsFor(t, f.peer, credentials);
    await sts.send(new GetCallerIdentityCommand({}));
    f.peer.advanceClock(3600);
    const err = await failure(sts.send(new GetCallerIdentityCommand({})));
    assert.deepEqual(err, {
      name: "ExpiredToken",
      message: "The security token included in the request is expired",
      status: 403,
    });
    // The first attempt was signed by the SDK's clock, an hour behind the peer's: AWS answers that
    // with SignatureDoesNotMatch and its Date, from which the SDK corrects its clock and retries.
    const afterAdvance = f.peer
      .calls()
      .slice(2)
      .map((c) => c.outcome);
    assert.equal(afterAdvance[0], "SignatureDoesNotMatch");
    assert.equal(afterAdvance.at(-1), "ExpiredToken");
  });
});

// ---- S3 and IAM ----------------------------------------------------------------------------------

describe("S3 authorisation", () => {
  const readAllowedPrefix = JSON.stringify({
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: `arn:aws:s3:::${BUCKET}/allowed/*` }],
  });

  test("allows only what both the role's policies and the session policy allow", async (t) => {
    const f = await fixture(t);
    const { credentials, arn } = await f.assume({ Policy: readAllowedPrefix });
    const s3 = s3For(t, f.peer, credentials);
    assert.equal(await read(s3, "allowed/report.txt"), "the report");

    const outside = await failure(read(s3, "secret/keys.txt"));
    assert.equal(outside.name, "AccessDenied");
    assert.equal(outside.status, 403);
    assert.equal(
      outside.message,
      `User: ${arn} is not authorized to perform: s3:GetObject on resource: "arn:aws:s3:::${BUCKET}/secret/keys.txt" because no session policy allows the s3:GetObject action`,
    );
    // The role may write, the session may not.
    const write = await failure(
      s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "allowed/new.txt", Body: "x" })),
    );
    assert.equal(write.name, "AccessDenied");
    // The session may read elsewhere, the role may not.
    f.peer.putObject("other-bucket", "allowed/x", "x");
    const elsewhere = await failure(
      s3.send(new GetObjectCommand({ Bucket: "other-bucket", Key: "allowed/x" })),
    );
    assert.equal(elsewhere.name, "AccessDenied");
  });

  test("uses the role's policies alone when the session has no session policy", async (t) => {
    const f = await fixture(t);
    const { credentials } = await f.assume();
    const s3 = s3For(t, f.peer, credentials);
    await s3.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: "out/a b+c.txt", Body: "written by the step" }),
    );
    assert.equal(f.peer.getObject(BUCKET, "out/a b+c.txt")?.toString(), "written by the step");
    assert.equal(await read(s3, "out/a b+c.txt"), "written by the step");
    const missing = await failure(read(s3, "out/none"));
    assert.deepEqual([missing.name, missing.status], ["NoSuchKey", 404]);
  });

  test("lists objects with prefix, delimiter and pagination", async (t) => {
    const f = await fixture(t);
    for (const key of ["logs/1", "logs/2", "logs/3", "logs/deep/4"]) f.peer.putObject(BUCKET, key, key);
    const s3 = s3For(t, f.peer, (await f.assume()).credentials);
    const first = await s3.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "logs/", Delimiter: "/", MaxKeys: 2 }),
    );
    assert.deepEqual(
      first.Contents?.map((o) => o.Key),
      ["logs/1", "logs/2"],
    );
    assert.equal(first.IsTruncated, true);
    const second = await s3.send(
      new ListObjectsV2Command({
        Bucket: BUCKET,
        Prefix: "logs/",
        Delimiter: "/",
        ContinuationToken: first.NextContinuationToken,
      }),
    );
    assert.deepEqual(
      second.Contents?.map((o) => o.Key),
      ["logs/3"],
    );
    assert.deepEqual(
      second.CommonPrefixes?.map((p) => p.Prefix),
      ["logs/deep/"],
    );
    assert.equal(second.IsTruncated, false);
  });

  test("grants through a managed session policy and nothing beyond it", async (t) => {
    const f = await fixture(t);
    const { credentials } = await f.assume({
      PolicyArns: [{ arn: "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess" }],
    });
    const s3 = s3For(t, f.peer, credentials);
    assert.equal(await read(s3, "secret/keys.txt"), "the keys");
    const write = await failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "x", Body: "x" })));
    assert.equal(write.name, "AccessDenied");
  });

  test("a deny on aws:userid put with PutRolePolicy revokes one session and spares the other", async (t) => {
    const f = await fixture(t);
    const a = await f.assume({ RoleSessionName: "run-a" });
    const b = await f.assume({ RoleSessionName: "run-b" });
    const s3a = s3For(t, f.peer, a.credentials);
    const s3b = s3For(t, f.peer, b.credentials);
    assert.equal(await read(s3a, "allowed/report.txt"), "the report");

    const iam = adminIam(t, f.peer);
    const deny = JSON.stringify({
      Version: "2012-10-17",
      Statement: [
        {
          Effect: "Deny",
          Action: "*",
          Resource: "*",
          Condition: { StringEquals: { "aws:userid": a.roleId } },
        },
      ],
    });
    await iam.send(
      new PutRolePolicyCommand({ RoleName: "deployer", PolicyName: "revoke-run-a", PolicyDocument: deny }),
    );

    const revoked = await failure(read(s3a, "allowed/report.txt"));
    assert.equal(revoked.name, "AccessDenied");
    assert.match(revoked.message, /with an explicit deny in an identity-based policy$/);
    assert.equal(await read(s3b, "allowed/report.txt"), "the report");

    const listed = await iam.send(new ListRolePoliciesCommand({ RoleName: "deployer" }));
    assert.deepEqual(listed.PolicyNames, ["revoke-run-a"]);
    const got = await iam.send(
      new GetRolePolicyCommand({ RoleName: "deployer", PolicyName: "revoke-run-a" }),
    );
    assert.notEqual(got.PolicyDocument, deny, "IAM returns the document URL-encoded");
    assert.equal(decodeURIComponent(got.PolicyDocument ?? ""), deny);
    assert.deepEqual(f.peer.rolePolicies("deployer"), { "revoke-run-a": deny });

    await iam.send(new DeleteRolePolicyCommand({ RoleName: "deployer", PolicyName: "revoke-run-a" }));
    assert.equal(await read(s3a, "allowed/report.txt"), "the report");
  });

  test("a deny conditioned on aws:SourceIdentity or a principal tag applies to matching sessions", async (t) => {
    const f = await fixture(t, {
      actions: ["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"],
    });
    const claims = (run: string) => ({
      "https://aws.amazon.com/source_identity": run,
      "https://aws.amazon.com/tags": { principal_tags: { run: [run] } },
    });
    const a = await f.assume({ RoleSessionName: "run-a" }, claims("run-a"));
    const b = await f.assume({ RoleSessionName: "run-b" }, claims("run-b"));
    const c = await f.assume({ RoleSessionName: "run-c" }, claims("run-c"));
    await adminIam(t, f.peer).send(
      new PutRolePolicyCommand({
        RoleName: "deployer",
        PolicyName: "revoke",
        PolicyDocument: JSON.stringify({
          Version: "2012-10-17",
          Statement: [
            {
              Effect: "Deny",
              Action: "*",
              Resource: "*",
              Condition: { StringLike: { "aws:SourceIdentity": "run-a*" } },
            },
            {
              Effect: "Deny",
              Action: "s3:*",
              Resource: "*",
              Condition: { StringEquals: { "aws:PrincipalTag/run": "run-b" } },
            },
          ],
        }),
      }),
    );
    assert.equal(
      (await failure(read(s3For(t, f.peer, a.credentials), "allowed/report.txt"))).name,
      "AccessDenied",
    );
    assert.equal(
      (await failure(read(s3For(t, f.peer, b.credentials), "allowed/report.txt"))).name,
      "AccessDenied",
    );
    assert.equal(await read(s3For(t, f.peer, c.credentials), "allowed/report.txt"), "the report");
  });

  test("rejects an expired session's S3 requests with ExpiredToken", async (t) => {
    const f = await fixture(t);
    const s3 = s3For(t, f.peer, (await f.assume({ DurationSeconds: 900 })).credentials);
    assert.equal(await read(s3, "allowed/report.txt"), "the report");
    f.peer.advanceClock(3600);
    const err = await failure(read(s3, "allowed/report.txt"));
    assert.deepEqual([err.name, err.status], ["ExpiredToken", 400]);
  });
});

describe("CloudFront invalidations", () => {
  const cloudFrontFor = (t: TestContext, peer: AwsPeer, c: Credentials) => {
    const client = new CloudFrontClient({
      endpoint: peer.endpoint,
      region: "us-east-1",
      credentials: sdkCredentials(c),
    });
    t.after(() => client.destroy());
    return client;
  };
  const invalidate = (client: CloudFrontClient, id: string, paths = ["/*"]) =>
    client.send(
      new CreateInvalidationCommand({
        DistributionId: id,
        InvalidationBatch: {
          CallerReference: `ref-${randomBytes(4).toString("hex")}`,
          Paths: { Quantity: paths.length, Items: paths },
        },
      }),
    );

  test("records the invalidation a session is allowed to make, and only that one", async (t) => {
    const f = await fixture(t);
    f.peer.createDistribution("E2SITE");
    f.peer.createDistribution("E2OTHER");
    const onlySite = JSON.stringify({
      Version: "2012-10-17",
      Statement: [
        {
          Effect: "Allow",
          Action: "cloudfront:CreateInvalidation",
          Resource: `arn:aws:cloudfront::${ACCOUNT}:distribution/E2SITE`,
        },
      ],
    });
    const { credentials, arn } = await f.assume({ Policy: onlySite });
    const client = cloudFrontFor(t, f.peer, credentials);
    const out = await invalidate(client, "E2SITE", ["/index.html", "/css/*"]);
    assert.equal(out.Invalidation?.Status, "InProgress");
    assert.deepEqual(out.Invalidation?.InvalidationBatch?.Paths?.Items, ["/index.html", "/css/*"]);
    assert.match(
      out.Location ?? "",
      new RegExp(`/distribution/E2SITE/invalidation/${out.Invalidation?.Id ?? "-"}$`),
    );
    const [made, ...more] = f.peer.invalidations("E2SITE");
    assert.deepEqual(more, []);
    assert.equal(made?.id, out.Invalidation?.Id);
    assert.deepEqual(made?.paths, ["/index.html", "/css/*"]);
    assert.equal(made?.principal, arn);

    const denied = await failure(invalidate(client, "E2OTHER"));
    assert.deepEqual([denied.name, denied.status], ["AccessDenied", 403]);
    assert.match(
      denied.message,
      /cloudfront:CreateInvalidation on resource: arn:aws:cloudfront::111122223333:distribution\/E2OTHER/,
    );
    assert.deepEqual(f.peer.invalidations("E2OTHER"), []);
  });

  test("answers NoSuchDistribution for a distribution that does not exist, and refuses bad paths", async (t) => {
    const f = await fixture(t);
    const { credentials } = await f.assume();
    const client = cloudFrontFor(t, f.peer, credentials);
    const missing = await failure(invalidate(client, "E2NONE"));
    assert.deepEqual([missing.name, missing.status], ["NoSuchDistribution", 404]);
    f.peer.createDistribution("E2SITE");
    const relative = await failure(invalidate(client, "E2SITE", ["index.html"]));
    assert.deepEqual([relative.name, relative.status], ["InvalidArgument", 400]);
    const unsigned = await failure(
      new CloudFrontClient({
        endpoint: f.peer.endpoint,
        region: "us-east-1",
        credentials: { accessKeyId: "AKIAUNKNOWN", secretAccessKey: "x" },
      }).send(
        new CreateInvalidationCommand({
          DistributionId: "E2SITE",
          InvalidationBatch: { CallerReference: "r", Paths: { Quantity: 1, Items: ["/*"] } },
        }),
      ),
    );
    assert.equal(unsigned.name, "InvalidClientTokenId");
    assert.deepEqual(f.peer.invalidations("E2SITE"), []);
  });
});

describe("IAM inline role policies", () => {
  test("enforce the 10240-character aggregate limit and answer NoSuchEntity for what is missing", async (t) => {
    const f = await fixture(t);
    const iam = adminIam(t, f.peer);
    const denyFor = (n: number) =>
      JSON.stringify({
        Version: "2012-10-17",
        Statement: Array.from({ length: n }, (_, i) => ({
          Effect: "Deny",
          Action: "*",
          Resource: "*",
          Condition: { StringEquals: { "aws:userid": `AROAEXAMPLEEXAMPLE123:run-${i}` } },
        })),
      });
    const half = denyFor(50);
    assert.ok(half.length > 5120 && half.length < 10240);
    await iam.send(
      new PutRolePolicyCommand({ RoleName: "deployer", PolicyName: "p1", PolicyDocument: half }),
    );
    const over = await failure(
      iam.send(new PutRolePolicyCommand({ RoleName: "deployer", PolicyName: "p2", PolicyDocument: half })),
    );
    assert.deepEqual([over.name, over.status], ["LimitExceededException", 409]);
    assert.equal(over.message, "Maximum policy size of 10240 bytes exceeded for role deployer");

    const missingPolicy = await failure(
      iam.send(new GetRolePolicyCommand({ RoleName: "deployer", PolicyName: "p2" })),
    );
    assert.deepEqual([missingPolicy.name, missingPolicy.status], ["NoSuchEntityException", 404]);
    const missingRole = await failure(iam.send(new ListRolePoliciesCommand({ RoleName: "nobody" })));
    assert.equal(missingRole.message, "The role with name nobody cannot be found.");
    const malformed = await failure(
      iam.send(new PutRolePolicyCommand({ RoleName: "deployer", PolicyName: "p3", PolicyDocument: "{}" })),
    );
    assert.equal(malformed.name, "MalformedPolicyDocumentException");
  });

  test("require the caller to be allowed, and the request to be signed in us-east-1", async (t) => {
    const f = await fixture(t);
    const { credentials, arn } = await f.assume();
    const asSession = new IAMClient({
      endpoint: f.peer.endpoint,
      region: "us-east-1",
      credentials: sdkCredentials(credentials),
    });
    t.after(() => asSession.destroy());
    const denied = await failure(asSession.send(new ListRolePoliciesCommand({ RoleName: "deployer" })));
    assert.deepEqual([denied.name, denied.status], ["AccessDenied", 403]);
    assert.equal(
      denied.message,
      `User: ${arn} is not authorized to perform: iam:ListRolePolicies on resource: role deployer because no identity-based policy allows the iam:ListRolePolicies action`,
    );
    const wrongRegion = await failure(
      adminIam(t, f.peer, REGION).send(new ListRolePoliciesCommand({ RoleName: "deployer" })),
    );
    assert.equal(wrongRegion.name, "SignatureDoesNotMatch");
    assert.match(wrongRegion.message, /Credential should be scoped to a valid region/);
  });
});

describe("Accounts", () => {
  const OTHER = "444455556666";
  const revokerTrust = (principal: string) => ({
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Principal: { AWS: principal }, Action: "sts:AssumeRole" }],
  });
  const inlineWriter = {
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Action: ["iam:PutRolePolicy", "iam:GetRolePolicy"], Resource: "*" }],
  };
  const denyAll = JSON.stringify({
    Version: "2012-10-17",
    Statement: [{ Effect: "Deny", Action: "*", Resource: "*" }],
  });

  test("IAM acts in the caller's account: a deny written at home leaves the same role name elsewhere untouched", async (t) => {
    const f = await fixture(t);
    const { arn: providerB } = f.peer.registerOidcProvider({
      url: f.issuer.url,
      audiences: [AUDIENCE],
      accountId: OTHER,
    });
    const elsewhere = `arn:aws:iam::${OTHER}:role/deployer`;
    f.peer.createRole({
      arn: elsewhere,
      trustPolicy: trustPolicy(providerB, { StringEquals: { [`${f.hp}:sub`]: SUBJECT } }),
      permissionPolicies: [ROLE_PERMISSIONS],
    });
    const out = await f.sts.send(
      new AssumeRoleWithWebIdentityCommand({
        RoleArn: elsewhere,
        RoleSessionName: "run-b",
        WebIdentityToken: await f.issuer.sign({}, { at: f.peer.now() }),
      }),
    );
    assert.equal(out.AssumedRoleUser?.Arn, `arn:aws:sts::${OTHER}:assumed-role/deployer/run-b`);
    assert.ok(out.Credentials);
    const caller = await stsFor(t, f.peer, out.Credentials).send(new GetCallerIdentityCommand({}));
    assert.equal(caller.Account, OTHER);

    await adminIam(t, f.peer).send(
      new PutRolePolicyCommand({ RoleName: "deployer", PolicyName: "deny", PolicyDocument: denyAll }),
    );
    assert.ok(f.peer.rolePolicies(ROLE_ARN).deny, "written on the role of the admin's account");
    assert.deepEqual(f.peer.rolePolicies(elsewhere), {});
    assert.equal(await read(s3For(t, f.peer, out.Credentials), "allowed/report.txt"), "the report");
  });

  test("AssumeRole across accounts needs the role's trust to name the caller and the caller's rights to write there", async (t) => {
    const f = await fixture(t);
    f.peer.createRole({ arn: `arn:aws:iam::${OTHER}:role/target`, trustPolicy: revokerTrust("*") });
    f.peer.createRole({
      arn: `arn:aws:iam::${OTHER}:role/revoker`,
      trustPolicy: revokerTrust(`arn:aws:iam::${ACCOUNT}:root`),
      permissionPolicies: [inlineWriter],
    });
    f.peer.createRole({
      arn: `arn:aws:iam::${OTHER}:role/reader`,
      trustPolicy: revokerTrust(ACCOUNT),
    });
    f.peer.createRole({
      arn: `arn:aws:iam::${OTHER}:role/stranger`,
      trustPolicy: revokerTrust("arn:aws:iam::999999999999:root"),
    });
    const admin = new STSClient({
      endpoint: f.peer.endpoint,
      region: REGION,
      credentials: f.peer.adminCredentials,
    });
    t.after(() => admin.destroy());
    const assume = (name: string) =>
      admin.send(
        new AssumeRoleCommand({ RoleArn: `arn:aws:iam::${OTHER}:role/${name}`, RoleSessionName: "revoke" }),
      );

    const refused = await failure(assume("stranger"));
    assert.deepEqual([refused.name, refused.status], ["AccessDenied", 403]);
    assert.match(
      refused.message,
      /is not authorized to perform: sts:AssumeRole on resource: .*role\/stranger/,
    );

    const iamAs = async (name: string) => {
      const out = await assume(name);
      assert.equal(out.AssumedRoleUser?.Arn, `arn:aws:sts::${OTHER}:assumed-role/${name}/revoke`);
      assert.ok(out.Credentials);
      const iam = new IAMClient({
        endpoint: f.peer.endpoint,
        region: "us-east-1",
        credentials: sdkCredentials(out.Credentials),
      });
      t.after(() => iam.destroy());
      return iam;
    };
    const put = (iam: IAMClient) =>
      iam.send(new PutRolePolicyCommand({ RoleName: "target", PolicyName: "deny", PolicyDocument: denyAll }));
    const noRights = await failure(put(await iamAs("reader")));
    assert.deepEqual([noRights.name, noRights.status], ["AccessDenied", 403]);
    assert.deepEqual(f.peer.rolePolicies(`arn:aws:iam::${OTHER}:role/target`), {});
    await put(await iamAs("revoker"));
    assert.ok(
      f.peer.rolePolicies(`arn:aws:iam::${OTHER}:role/target`).deny,
      "written in the revoker's account",
    );
  });
});

describe("ECR: registry passwords and pushes authorised per repository", () => {
  const REPOSITORY = "payments/api";
  const repositoryArn = (name: string) => `arn:aws:ecr:${REGION}:${ACCOUNT}:repository/${name}`;
  const pushPolicy = (repository: string) =>
    JSON.stringify({
      Version: "2012-10-17",
      Statement: [
        { Effect: "Allow", Action: "ecr:GetAuthorizationToken", Resource: "*" },
        {
          Effect: "Allow",
          Action: [
            "ecr:BatchCheckLayerAvailability",
            "ecr:InitiateLayerUpload",
            "ecr:UploadLayerPart",
            "ecr:CompleteLayerUpload",
            "ecr:PutImage",
          ],
          Resource: repositoryArn(repository),
        },
      ],
    });

  /** A docker-archive (as `docker save` writes) of one layer holding one file. */
  async function imageArchive(t: TestContext, content: string): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "aws-peer-image-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await mkdir(path.join(dir, "rootfs"));
    await writeFile(path.join(dir, "rootfs", "hello.txt"), content);
    await promisify(execFile)("tar", [
      "-C",
      path.join(dir, "rootfs"),
      "-cf",
      path.join(dir, "layer.tar"),
      ".",
    ]);
    const layer = await readFile(path.join(dir, "layer.tar"));
    const config = JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: {},
      rootfs: { type: "layers", diff_ids: [`sha256:${createHash("sha256").update(layer).digest("hex")}`] },
    });
    await writeFile(path.join(dir, "config.json"), config);
    await writeFile(
      path.join(dir, "manifest.json"),
      JSON.stringify([{ Config: "config.json", RepoTags: [], Layers: ["layer.tar"] }]),
    );
    const archive = path.join(dir, "image.tar");
    await promisify(execFile)("tar", [
      "-C",
      dir,
      "-cf",
      archive,
      "config.json",
      "manifest.json",
      "layer.tar",
    ]);
    return archive;
  }

  /** `skopeo copy` to the peer's registry, as the catalog's ecr-push step runs it. */
  async function push(peer: AwsPeer, archive: string, reference: string, creds: string | undefined) {
    const host = peer.endpoint.replace(/^http:\/\//, "");
    const args = ["copy", "--retry-times", "0", "--dest-tls-verify=false"];
    if (creds !== undefined) args.push("--dest-creds", creds);
    try {
      await promisify(execFile)("skopeo", [
        ...args,
        `docker-archive:${archive}`,
        `docker://${host}/${reference}`,
      ]);
      return { ok: true, stderr: "" };
    } catch (err) {
      return { ok: false, stderr: String((err as { stderr?: string }).stderr ?? err) };
    }
  }

  async function registryLogin(t: TestContext, peer: AwsPeer, credentials: Credentials) {
    const ecr = new ECRClient({
      endpoint: peer.endpoint,
      region: REGION,
      credentials: sdkCredentials(credentials),
    });
    t.after(() => ecr.destroy());
    const out = await ecr.send(new GetAuthorizationTokenCommand({}));
    const [data] = out.authorizationData ?? [];
    assert.ok(data?.authorizationToken && data.expiresAt);
    assert.equal(data.proxyEndpoint, `https://${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com`);
    return {
      creds: Buffer.from(data.authorizationToken, "base64").toString("utf8"),
      expiresAt: data.expiresAt,
    };
  }

  test("a session pushes to the repository its policy names, and to no other", async (t) => {
    const f = await fixture(t);
    await f.peer.startRegistry(REGION);
    f.peer.createRepository(REPOSITORY);
    f.peer.createRepository("payments/worker");
    const { credentials, arn } = await f.assume({ Policy: pushPolicy(REPOSITORY) });
    const { creds, expiresAt } = await registryLogin(t, f.peer, credentials);
    assert.match(creds, /^AWS:[\w-]{40,}$/);
    // STS answers the expiration to the second; the password ends with the session, not later.
    const sessionEnds = (credentials.Expiration ?? new Date(0)).getTime() + 1000;
    assert.ok(expiresAt.getTime() <= sessionEnds, "the password ends with the session");
    const archive = await imageArchive(t, "hello from the image\n");

    const pushed = await push(f.peer, archive, `${REPOSITORY}:1.0.0`, creds);
    assert.ok(pushed.ok, pushed.stderr);
    const manifest = await f.peer.registryManifest(REPOSITORY, "1.0.0");
    assert.ok(manifest, "the registry holds the tag");
    assert.equal(manifest.digest, `sha256:${createHash("sha256").update(manifest.body).digest("hex")}`);
    const puts = f.peer.calls().filter((c) => c.service === "ecr" && c.action === "PutImage");
    assert.deepEqual(
      puts.map((c) => [c.outcome, c.resource, c.principal]),
      [["ok", repositoryArn(REPOSITORY), arn]],
    );

    const elsewhere = await push(f.peer, archive, "payments/worker:1.0.0", creds);
    assert.equal(elsewhere.ok, false);
    assert.match(elsewhere.stderr, /denied|not authorized|forbidden/i);
    assert.equal(await f.peer.registryManifest("payments/worker", "1.0.0"), undefined);
    const refused = f.peer
      .calls()
      .find((c) => c.service === "ecr" && c.resource === repositoryArn("payments/worker"));
    assert.equal(refused?.outcome, "DENIED");
  });

  test("refuses no password, a made-up one, an expired session's, a revoked session's and a missing repository", async (t) => {
    const f = await fixture(t);
    await f.peer.startRegistry(REGION);
    f.peer.createRepository(REPOSITORY);
    const archive = await imageArchive(t, "hello\n");
    const noCreds = await push(f.peer, archive, `${REPOSITORY}:a`, undefined);
    assert.equal(noCreds.ok, false);
    assert.match(noCreds.stderr, /unauthorized|authentication required/i);
    const madeUp = await push(f.peer, archive, `${REPOSITORY}:a`, "AWS:not-a-password");
    assert.equal(madeUp.ok, false);
    assert.match(madeUp.stderr, /unauthorized|authentication required/i);

    const { credentials, roleId } = await f.assume({ Policy: pushPolicy("*") });
    const { creds } = await registryLogin(t, f.peer, credentials);
    const missing = await push(f.peer, archive, "payments/none:a", creds);
    assert.equal(missing.ok, false);
    assert.match(missing.stderr, /name unknown|does not exist/i);

    // A deny on the session's aws:userid, as deny-policy revocation writes it, stops its pushes.
    const deny = JSON.stringify({
      Version: "2012-10-17",
      Statement: [
        { Effect: "Deny", Action: "*", Resource: "*", Condition: { StringEquals: { "aws:userid": roleId } } },
      ],
    });
    await adminIam(t, f.peer).send(
      new PutRolePolicyCommand({ RoleName: "deployer", PolicyName: "revoke", PolicyDocument: deny }),
    );
    const revoked = await push(f.peer, archive, `${REPOSITORY}:b`, creds);
    assert.equal(revoked.ok, false);
    assert.match(revoked.stderr, /denied|not authorized|forbidden/i);
    assert.equal(await f.peer.registryManifest(REPOSITORY, "b"), undefined);

    const second = await f.assume({ Policy: pushPolicy("*"), RoleSessionName: "run-2" });
    const login = await registryLogin(t, f.peer, second.credentials);
    f.peer.advanceClock(3600);
    const expired = await push(f.peer, archive, `${REPOSITORY}:c`, login.creds);
    assert.equal(expired.ok, false);
    assert.match(expired.stderr, /unauthorized|authentication required/i);
    assert.ok(
      f.peer.issuedSecrets().includes(login.creds.slice("AWS:".length)),
      "passwords count as secrets",
    );
  });

  test("GetAuthorizationToken needs ecr:GetAuthorizationToken", async (t) => {
    const f = await fixture(t);
    const onlyS3 = JSON.stringify({
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: "*" }],
    });
    const { credentials, arn } = await f.assume({ Policy: onlyS3 });
    const ecr = new ECRClient({
      endpoint: f.peer.endpoint,
      region: REGION,
      credentials: sdkCredentials(credentials),
    });
    t.after(() => ecr.destroy());
    const denied = await failure(ecr.send(new GetAuthorizationTokenCommand({})));
    assert.equal(denied.name, "AccessDeniedException");
    assert.match(
      denied.message,
      new RegExp(`^User: ${arn} is not authorized to perform: ecr:GetAuthorizationToken`),
    );
  });
});
