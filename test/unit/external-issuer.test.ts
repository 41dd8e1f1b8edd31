// External issuer mode through the real parts without Kubernetes: the controller's own issuer
// signs the run token, oidc-provider (the organisation's IdP on loopback) exchanges it, the AWS
// peer trusts only that IdP. Each failure reason comes from a real misconfiguration of the IdP or
// the controller's client there.
import { test } from "node:test";
import type { TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { decodeJwt, exportJWK, generateKeyPair } from "jose";
import { pino } from "pino";
import { externalSigner } from "../../controller/idp/external.ts";
import { parseExternalIssuer } from "../../controller/idp/settings.ts";
import { awsProvider } from "../../tasks/scoped-step/credentials/aws.ts";
import { isRunFailure, type RunFailure } from "../../tasks/scoped-step/failure.ts";
import { startProviderWorld, type ProviderWorld } from "../support/aws/provider-world.ts";
import { registerIssuerUrl, webIdentityTrustPolicy } from "../support/aws/trust.ts";
import { startTestIdp, type TestIdp } from "../support/idp.ts";

const role = "arn:aws:iam::111122223333:role/deployer";
const readArtifacts = {
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: "arn:aws:s3:::artifacts/*" }],
};

interface Setup {
  w: ProviderWorld;
  idp: TestIdp;
  secretFile: string;
  logs: () => string;
  provider: (settings?: Record<string, unknown>) => ReturnType<typeof awsProvider>;
}

async function setup(t: TestContext, roleSubject = "system:scoped-step:team-a:*"): Promise<Setup> {
  const w = await startProviderWorld({ accountId: "111122223333" });
  t.after(() => w.stop());
  const idp = await startTestIdp();
  t.after(() => idp.stop());
  idp.trust(w.trusted.issuer);
  // AWS trusts the IdP, not the controller.
  const trusted = registerIssuerUrl(w.peer, idp.issuer);
  w.peer.createRole({
    arn: role,
    trustPolicy: webIdentityTrustPolicy(trusted, roleSubject),
    permissionPolicies: [readArtifacts],
  });
  w.peer.putObject("artifacts", "hello.txt", "hello");
  const dir = mkdtempSync(path.join(tmpdir(), "idp-"));
  const secretFile = path.join(dir, "client-secret");
  writeFileSync(secretFile, `${idp.clientSecret}\n`);
  let written = "";
  const log = pino(
    { level: "debug" },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        written += chunk.toString();
        done();
      },
    }),
  );
  const provider = (settings: Record<string, unknown> = {}) =>
    awsProvider({
      signer: externalSigner({
        settings: parseExternalIssuer(
          JSON.stringify({
            issuer: idp.issuer,
            clientId: idp.clientId,
            clientSecretFile: secretFile,
            retryDelayMs: 10,
            ...settings,
          }),
          true,
        ),
        own: w.signer,
        allowInsecure: true,
        log,
      }),
      defaultRegion: "eu-west-1",
      stsEndpoint: w.peer.endpoint,
      log,
    });
  return { w, idp, secretFile, logs: () => written, provider };
}

async function mintFailure(s: Setup, settings?: Record<string, unknown>): Promise<RunFailure> {
  const failure = await s
    .provider(settings)
    .mint(s.w.facts("build"), s.w.grant({ roleArn: role }, "secret"))
    .then(
      () => assert.fail("the mint should have failed"),
      (err: unknown) => err,
    );
  assert.ok(isRunFailure(failure), `a RunFailure, got ${String(failure)}`);
  return failure;
}

/** Nothing private in what the controller wrote: not the client secret, not any token. */
function assertNothingPrivate(s: Setup, ...also: string[]) {
  const text = s.logs();
  assert.ok(!text.includes(s.idp.clientSecret), "the client secret leaked into the logs");
  for (const token of [...s.idp.issued, ...also])
    assert.ok(!text.includes(token), "a token leaked into the logs");
}

test("token exchange: the IdP's token for the run's subject gets STS credentials from a role that trusts only the IdP", async (t) => {
  const s = await setup(t);
  const facts = s.w.facts("build");
  const minted = await s.provider().mint(facts, s.w.grant({ roleArn: role }, "secret"));
  assert.equal(minted.results["identity-issuer"], s.idp.issuer);
  assert.equal(minted.results["identity-subject"], "system:scoped-step:team-a:payments:api");
  assert.match(minted.results["aws-assumed-role-arn"] ?? "", /assumed-role\/deployer\//);
  assert.equal(s.w.peer.sessions().length, 1);
  const session = s.w.peer.sessions()[0];
  assert.equal(session?.sourceIdentity, minted.results["aws-source-identity"]);
  assert.deepEqual(
    s.idp.requests.map((r) => [r.grant, r.outcome]),
    [["urn:ietf:params:oauth:grant-type:token-exchange", "ok"]],
  );
  // The token STS saw was the IdP's, for the trait's audience, carrying the run's AWS claims.
  const [token] = s.idp.issued;
  const claims = decodeJwt(token ?? "");
  assert.equal(claims.iss, s.idp.issuer);
  assert.equal(claims.aud, "sts.amazonaws.com");
  assert.equal(claims["https://aws.amazon.com/source_identity"], minted.results["aws-source-identity"]);
  assertNothingPrivate(s, minted.secretData.sessionToken ?? "", minted.secretData.secretAccessKey ?? "");

  // The controller's own token is worth nothing to this role: it trusts the IdP alone.
  const own = awsProvider({
    signer: s.w.signer,
    defaultRegion: "eu-west-1",
    stsEndpoint: s.w.peer.endpoint,
    log: pino({ level: "silent" }),
  });
  await assert.rejects(
    own.mint(s.w.facts("self"), s.w.grant({ roleArn: role }, "secret")),
    (err: RunFailure) => err.reason === "AWSRoleTrustRejected",
  );
});

test("client credentials: where the IdP cannot exchange, the token's subject is the controller's client", async (t) => {
  const s = await setup(t, "scoped-step-controller");
  const minted = await s
    .provider({ grant: "client-credentials", parameters: {} })
    .mint(s.w.facts("build"), s.w.grant({ roleArn: role }, "secret"));
  assert.equal(minted.results["identity-subject"], s.idp.clientId);
  assert.deepEqual(
    s.idp.requests.map((r) => [r.grant, r.outcome]),
    [["client_credentials", "ok"]],
  );
  assertNothingPrivate(s, minted.secretData.sessionToken ?? "");
});

test("a wrong client secret ends the run with IdentityProviderInvalidClient, the secret nowhere in the message", async (t) => {
  const s = await setup(t);
  writeFileSync(s.secretFile, "not-the-secret");
  const failure = await mintFailure(s);
  assert.equal(failure.reason, "IdentityProviderInvalidClient");
  assert.match(failure.message, /refused the controller's client scoped-step-controller/);
  assert.ok(!failure.message.includes(s.idp.clientSecret));
  assert.equal(s.w.peer.sessions().length, 0);
  assertNothingPrivate(s);
});

test("a subject token the IdP refuses ends the run with IdentityProviderInvalidGrant", async (t) => {
  const s = await setup(t);
  // The IdP expects subject tokens for itself; the controller addresses them elsewhere.
  const failure = await mintFailure(s, { subjectTokenAudience: "https://somewhere-else.example" });
  assert.equal(failure.reason, "IdentityProviderInvalidGrant");
  assert.match(failure.message, /answered invalid_grant/);
  // An IdP that does not trust the controller's issuer at all refuses the same way.
  s.idp.trust(`${s.w.trusted.issuer}/elsewhere`);
  assert.equal((await mintFailure(s)).reason, "IdentityProviderInvalidGrant");
  assertNothingPrivate(s);
});

test("a token type the IdP does not issue ends the run with IdentityProviderUnsupportedTokenType", async (t) => {
  const s = await setup(t);
  const failure = await mintFailure(s, { requestedTokenType: "urn:ietf:params:oauth:token-type:id_token" });
  assert.equal(failure.reason, "IdentityProviderUnsupportedTokenType");
  assert.match(failure.message, /requestedTokenType/);
});

test("an IdP issuing the wrong audience, subject or claims is caught before STS sees the token", async (t) => {
  const s = await setup(t);
  s.idp.misconfigure({ audience: "api://default" });
  let failure = await mintFailure(s);
  assert.equal(failure.reason, "IdentityProviderWrongAudience");
  assert.match(failure.message, /"api:\/\/default", not the trait's audience "sts.amazonaws.com"/);

  s.idp.misconfigure({ subject: "system:scoped-step:team-b:payments:api" });
  failure = await mintFailure(s);
  assert.equal(failure.reason, "IdentityProviderWrongSubject");
  assert.match(failure.message, /team-b.*not the run's "system:scoped-step:team-a:payments:api"/);

  // Without the source identity, a deny on it could not revoke the session.
  s.idp.misconfigure({ dropClaims: true });
  failure = await mintFailure(s);
  assert.equal(failure.reason, "IdentityProviderClaimMismatch");
  assert.match(failure.message, /source_identity/);
  assert.equal(s.w.peer.sessions().length, 0, "STS was never asked");
  assertNothingPrivate(s);
});

test("an unavailable IdP is retried a bounded number of times, then the run fails IdentityProviderUnreachable", async (t) => {
  const s = await setup(t);
  s.idp.misconfigure({ unavailable: true });
  let failure = await mintFailure(s, { retries: 2 });
  assert.equal(failure.reason, "IdentityProviderUnreachable");
  assert.match(failure.message, /answered HTTP 503.*gave up after 3 attempts/);
  assert.equal(s.idp.requests.filter((r) => r.outcome === "temporarily_unavailable").length, 3);

  // Back in service between two attempts: the run goes on.
  s.idp.misconfigure({});
  s.idp.misconfigure({ unavailable: true });
  const before = s.idp.requests.length;
  const minting = s
    .provider({ retries: 5, retryDelayMs: 200 })
    .mint(s.w.facts("b"), s.w.grant({ roleArn: role }, "secret"));
  const poll = setInterval(() => {
    if (s.idp.requests.length > before) s.idp.misconfigure({});
  }, 5);
  const minted = await minting.finally(() => clearInterval(poll));
  assert.ok(minted.results["aws-assumed-role-arn"]);

  // Down altogether: the same, with the connection refused.
  await s.idp.stop();
  failure = await mintFailure(s, { retries: 1 });
  assert.equal(failure.reason, "IdentityProviderUnreachable");
  assert.match(failure.message, /gave up after 2 attempts/);
  assertNothingPrivate(s);
});

test("the controller's client may authenticate with client_secret_post or private_key_jwt; a key the IdP does not know is invalid_client", async (t) => {
  const s = await setup(t);
  const grant = s.w.grant({ roleArn: role }, "secret");
  const subject = "system:scoped-step:team-a:payments:api";
  const post = await s
    .provider({ clientId: s.idp.postClientId, clientAuth: "client_secret_post" })
    .mint(s.w.facts("post"), grant);
  assert.deepEqual(
    [post.results["identity-issuer"], post.results["identity-subject"]],
    [s.idp.issuer, subject],
  );

  const keyFile = path.join(path.dirname(s.secretFile), "client-key.json");
  writeFileSync(keyFile, s.idp.clientKey);
  const byKey = {
    clientId: s.idp.keyClientId,
    clientAuth: "private_key_jwt",
    clientSecretFile: undefined,
    privateKeyFile: keyFile,
    privateKeyAlg: "ES256",
    privateKeyId: "client-key-1",
  };
  const minted = await s.provider(byKey).mint(s.w.facts("key"), grant);
  assert.deepEqual(
    [minted.results["identity-issuer"], minted.results["identity-subject"]],
    [s.idp.issuer, subject],
  );
  assert.deepEqual(
    s.idp.requests.map((r) => r.outcome),
    ["ok", "ok"],
  );

  // Another key under the same kid: the IdP cannot verify the client's assertion.
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  writeFileSync(keyFile, JSON.stringify({ ...(await exportJWK(privateKey)), kid: "client-key-1" }));
  const failure = await mintFailure(s, byKey);
  assert.equal(failure.reason, "IdentityProviderInvalidClient");
  const privateParts = [s.idp.clientKey, (JSON.parse(s.idp.clientKey) as { d: string }).d];
  assertNothingPrivate(
    s,
    ...privateParts,
    post.secretData.sessionToken ?? "",
    minted.secretData.sessionToken ?? "",
  );
});
