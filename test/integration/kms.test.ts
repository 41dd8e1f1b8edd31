// The issuer's KMS key store against real parts: local-kms signs, the API server keeps the public
// key set in a ConfigMap, and the loopback AWS peer verifies the tokens the way STS does (the
// discovery document and the JWKS fetched from the issuer on every call). Rotation runs over
// explicitly driven time; tokens are signed at the real time the peer checks them against.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { CreateKeyCommand, DisableKeyCommand } from "@aws-sdk/client-kms";
import { AssumeRoleWithWebIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { CoreV1Api } from "@kubernetes/client-node";
import { calculateJwkThumbprint, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from "jose";
import { createIssuer, type Issuer, type TokenRequest } from "../../controller/issuer/index.ts";
import { KmsKeyError } from "../../controller/issuer/kms.ts";
import { kubeFromKubeConfig } from "../../controller/kube-client.ts";
import { freePorts } from "../../hack/cluster/processes.ts";
import { startAwsPeer, type AwsPeer } from "../../simulators/aws/server.ts";
import { createTrustingRole, registerIssuer, type TrustedIssuer } from "../support/aws/trust.ts";
import { testCluster, testNamespace } from "../support/cluster.ts";
import { kmsCredentials, startLocalKms, type LocalKms } from "../support/kms.ts";
import { eventually } from "../support/wait.ts";

const role = "arn:aws:iam::111122223333:role/kms-signed";
const request: TokenRequest = {
  facts: { namespace: "team-a", application: "payments", component: "api", customRun: "deploy-1" },
  audience: "sts.amazonaws.com",
};

/** A peer that trusts an issuer served on a loopback port, and the server that serves it. */
async function trustedIssuer(): Promise<{
  peer: AwsPeer;
  trusted: TrustedIssuer;
  sts: STSClient;
  serve: (i: Issuer) => Promise<() => Promise<void>>;
}> {
  const peer = await startAwsPeer({ accountId: "111122223333" });
  const trusted = await registerIssuer(peer);
  createTrustingRole(peer, trusted, {
    arn: role,
    subjectLike: "system:scoped-step:team-a:*",
    maxSessionDuration: 3600,
  });
  const sts = new STSClient({ endpoint: peer.endpoint, region: "eu-west-1", maxAttempts: 1 });
  return {
    peer,
    trusted,
    sts,
    async serve(issuer) {
      const server = http.createServer((req, res) => {
        if (!issuer.handler(req, res)) res.writeHead(404).end();
      });
      await new Promise<void>((resolve) => server.listen(trusted.port, "127.0.0.1", resolve));
      return async () => {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
        await peer.stop();
      };
    },
  };
}

/** What the peer says of a token: "ok", or its error code and message. */
async function peerVerdict(sts: STSClient, token: string): Promise<string> {
  try {
    await sts.send(
      new AssumeRoleWithWebIdentityCommand({
        RoleArn: role,
        RoleSessionName: "kms-test",
        WebIdentityToken: token,
      }),
    );
    return "ok";
  } catch (err) {
    return `${(err as Error).name}: ${(err as Error).message}`;
  }
}

async function setup(kms: LocalKms, keyId: string, extra: { keyPublishLeadSeconds?: number } = {}) {
  const cluster = await testCluster();
  const namespace = await testNamespace(cluster, "kms-issuer");
  const kube = await kubeFromKubeConfig(cluster.kc);
  const core = cluster.kc.makeApiClient(CoreV1Api);
  const { peer, trusted, sts, serve } = await trustedIssuer();
  const options = {
    kube,
    namespace,
    issuerUrl: trusted.issuer,
    allowInsecureIssuer: true,
    kms: { keyId, region: kms.region, endpoint: kms.endpoint, keys: undefined },
    ...extra,
  };
  process.env.AWS_ACCESS_KEY_ID = kmsCredentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = kmsCredentials.secretAccessKey;
  const stored = async () => {
    const cm = await core.readNamespacedConfigMap({ namespace, name: "scoped-step-signing-keys" });
    return cm.data?.["keys.json"] ?? "";
  };
  return { namespace, options, peer, sts, serve, stored, core, issuerUrl: trusted.issuer };
}

test("tokens signed by KMS through an alias verify at the AWS peer; the JWKS and the stored set hold no private key", async () => {
  const kms = await startLocalKms();
  const arn = await kms.createSigningKey();
  await kms.pointAlias("alias/scoped-step-signing", arn);
  const s = await setup(kms, "alias/scoped-step-signing");
  const issuer = await createIssuer(s.options);
  const stop = await s.serve(issuer);
  try {
    assert.equal(issuer.ready, true);
    const issued = await issuer.issueToken(request);
    const header = decodeProtectedHeader(issued.token);
    assert.equal(header.alg, "ES256");
    const [jwk] = issuer.jwks().keys;
    assert.equal(
      header.kid,
      await calculateJwkThumbprint(jwk ?? {}, "sha256"),
      "kid is the RFC 7638 thumbprint",
    );
    assert.equal(await peerVerdict(s.sts, issued.token), "ok");
    assert.match(kms.output(), new RegExp(`DIGEST message signed with ECC_NIST_P256, using key ${arn}`));

    // A token over KMS's 4096-byte limit on raw messages: the digest is what KMS signs.
    const tags = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`tag${i}`, "v".repeat(250)]));
    const big = await issuer.issueToken({ ...request, sessionTags: tags });
    assert.ok(big.token.length > 4096, `token is ${big.token.length} bytes`);
    assert.equal(await peerVerdict(s.sts, big.token), "ok");

    const text = await s.stored();
    const set = JSON.parse(text) as { keys: { kmsKeyArn: string; state: string; privateJwk?: unknown }[] };
    assert.deepEqual(
      set.keys.map((k) => [k.kmsKeyArn, k.state]),
      [[arn, "active"]],
      "the set names the key's ARN, not the alias",
    );
    for (const where of [text, JSON.stringify(issuer.jwks()), JSON.stringify(issuer.discovery())]) {
      assert.doesNotMatch(where, /"d"|privateJwk|"p"|"q"/);
    }
  } finally {
    await stop();
  }
});

test("an RSA key in KMS signs RS256 tokens that verify at the AWS peer", async () => {
  const kms = await startLocalKms();
  const arn = await kms.createSigningKey("RSA_2048");
  const s = await setup(kms, arn);
  const issuer = await createIssuer(s.options);
  const stop = await s.serve(issuer);
  try {
    const issued = await issuer.issueToken(request);
    assert.equal(decodeProtectedHeader(issued.token).alg, "RS256");
    assert.equal(issuer.jwks().keys[0]?.kty, "RSA");
    assert.equal(await peerVerdict(s.sts, issued.token), "ok");
  } finally {
    await stop();
  }
});

test("a new key behind the alias: every token signed before, during and after the overlap verifies at the peer until its key's tokens have expired", async () => {
  const kms = await startLocalKms();
  const first = await kms.createSigningKey();
  await kms.pointAlias("alias/rotating", first);
  const s = await setup(kms, "alias/rotating", { keyPublishLeadSeconds: 3600 });
  const issuer = await createIssuer(s.options);
  const stop = await s.serve(issuer);
  const t0 = Date.now();
  const at = (seconds: number) => new Date(t0 + seconds * 1000);
  const kidOf = (token: string) => decodeProtectedHeader(token).kid;
  try {
    const before = (await issuer.issueToken(request)).token;
    const oldKid = kidOf(before);

    // The operator's rotation: a new key, then UpdateAlias.
    const second = await kms.createSigningKey();
    await kms.pointAlias("alias/rotating", second);
    const published = await issuer.rotateIfDue(at(60));
    assert.equal(published.published.length, 1, "the new key is published");
    assert.equal(published.activated, undefined, "and does not sign yet");
    const newKid = published.published[0];
    assert.deepEqual(
      issuer.jwks().keys.map((k) => k.kid),
      [oldKid, newKid],
    );
    const during = (await issuer.issueToken(request)).token;
    assert.equal(kidOf(during), oldKid, "the old key signs while the new one is only published");
    assert.doesNotMatch(
      kms.output(),
      new RegExp(`using key ${second}`),
      "KMS never signed with the new key yet",
    );

    // Another replica reading the ConfigMap agrees.
    const replica = await createIssuer(s.options);
    assert.equal(kidOf((await replica.issueToken(request)).token), oldKid);

    assert.equal(
      (await issuer.rotateIfDue(at(60 + 3599))).activated,
      undefined,
      "not before the lead has passed",
    );
    const activated = await issuer.rotateIfDue(at(60 + 3600));
    assert.equal(activated.activated, newKid);
    const after = (await issuer.issueToken(request)).token;
    assert.equal(kidOf(after), newKid);
    await replica.reload();
    assert.equal(kidOf((await replica.issueToken(request)).token), newKid, "the replica follows");

    for (const [name, token] of Object.entries({ before, during, after })) {
      assert.equal(await peerVerdict(s.sts, token), "ok", `${name} verifies after the rotation`);
    }
    // The old key stays published for the longest token lifetime plus the clock skew...
    await issuer.rotateIfDue(at(3660 + 3600 + 299));
    assert.equal(await peerVerdict(s.sts, before), "ok", "the old key is still published");
    // ...and is pruned after that, when none of its tokens can still be valid.
    const pruned = await issuer.rotateIfDue(at(3660 + 3600 + 300));
    assert.deepEqual(pruned.pruned, [oldKid]);
    assert.match(
      await peerVerdict(s.sts, before),
      /InvalidIdentityToken/,
      "a pruned key's tokens no longer verify",
    );
    assert.equal(await peerVerdict(s.sts, after), "ok");
    assert.doesNotMatch(await s.stored(), /"d"|privateJwk/);
  } finally {
    await stop();
  }
});

test("a key KMS refuses stops the start with a message naming kms-key-id and what is wrong", async () => {
  const kms = await startLocalKms();
  const symmetric = (await kms.client.send(new CreateKeyCommand({}))).KeyMetadata?.Arn ?? "";
  const disabled = await kms.createSigningKey();
  await kms.client.send(new DisableKeyCommand({ KeyId: disabled }));
  const secp = await kms.createSigningKey("ECC_SECG_P256K1");
  for (const [keyId, message] of [
    [
      "alias/does-not-exist",
      /KMS refused DescribeKey on alias\/does-not-exist: NotFoundException: .*kms-key-id/,
    ],
    [symmetric, /kms-key-id .* cannot sign tokens: its key usage is ENCRYPT_DECRYPT, not SIGN_VERIFY/],
    [disabled, /kms-key-id .* cannot sign tokens: its state is Disabled, not Enabled/],
    [secp, /kms-key-id .* cannot sign tokens: its key spec is ECC_SECG_P256K1/],
  ] as const) {
    const s = await setup(kms, keyId);
    await assert.rejects(createIssuer(s.options), (err: unknown) => {
      assert.ok(err instanceof KmsKeyError, String(err));
      assert.equal(err.transient, false);
      assert.match(err.message, message);
      return true;
    });
    await s.peer.stop();
  }
});

test("KMS unreachable at start: not ready and no documents until it answers, then ready; a key disabled later fails signing with SigningKeyUnavailable", async () => {
  const [port] = (await freePorts(1)) as [number];
  const endpoint = `http://127.0.0.1:${port}`;
  const cluster = await testCluster();
  const namespace = await testNamespace(cluster, "kms-late");
  const kube = await kubeFromKubeConfig(cluster.kc);
  const { sts, serve, trusted } = await trustedIssuer();
  process.env.AWS_ACCESS_KEY_ID = kmsCredentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = kmsCredentials.secretAccessKey;
  const issuer = await createIssuer({
    kube,
    namespace,
    issuerUrl: trusted.issuer,
    allowInsecureIssuer: true,
    kms: { keyId: "alias/late", region: "eu-west-1", endpoint, maxAttempts: 1 },
  });
  const stop = await serve(issuer);
  try {
    assert.equal(issuer.ready, false);
    assert.match(issuer.notReadyReason ?? "", /KMS did not answer/);
    await assert.rejects(issuer.issueToken(request), (err: Error) => {
      assert.equal("reason" in err, false, "a transient error is not a run failure");
      assert.match(err.message, /not loaded yet/);
      return true;
    });
    const discovery = await fetch(`${trusted.issuer}/.well-known/openid-configuration`);
    assert.equal(discovery.status, 503, "no documents without a key set");

    const kms = await startLocalKms({ port, region: "eu-west-1" });
    const arn = await kms.createSigningKey();
    await kms.pointAlias("alias/late", arn);
    await eventually("the issuer to become ready", () => Promise.resolve(issuer.ready || undefined), {
      timeoutMs: 60_000,
    });
    const issued = await issuer.issueToken(request);
    assert.equal(await peerVerdict(sts, issued.token), "ok");

    await kms.client.send(new DisableKeyCommand({ KeyId: arn }));
    await assert.rejects(issuer.issueToken(request), (err: unknown) => {
      assert.ok(err instanceof KmsKeyError);
      assert.equal(err.reason, "SigningKeyUnavailable");
      assert.equal(err.code, "DisabledException");
      assert.match(err.message, /KMS refused Sign with .*: DisabledException: .* is disabled/);
      return true;
    });
    await kms.stop();
    await assert.rejects(issuer.issueToken(request), (err: Error) => {
      assert.equal("reason" in err, false, "KMS gone is retried, not a run failure");
      assert.match(err.message, /KMS did not answer Sign with/);
      return true;
    });
  } finally {
    await stop();
  }
});

test("a key planted in the key-set ConfigMap is never published: the JWKS holds only public keys KMS itself returns", async () => {
  const kms = await startLocalKms();
  const arn = await kms.createSigningKey();
  const s = await setup(kms, arn);
  const issuer = await createIssuer(s.options);
  const stop = await s.serve(issuer);
  try {
    const legit = issuer.jwks().keys.map((k) => k.kid);
    // Someone who can write the ConfigMap adds a key of their own, under the real key's ARN and
    // under an ARN KMS does not know.
    const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
    const { kty, crv, x, y } = await exportJWK(publicKey);
    const planted = { kty, crv, x, y };
    const kid = await calculateJwkThumbprint(planted, "sha256");
    const cm = await s.core.readNamespacedConfigMap({
      namespace: s.namespace,
      name: "scoped-step-signing-keys",
    });
    const set = JSON.parse(cm.data?.["keys.json"] ?? "") as { keys: Record<string, unknown>[] };
    const now = new Date().toISOString();
    const entry = { kid, alg: "ES256", state: "retired", createdAt: now, retiredAt: now, publicJwk: planted };
    set.keys.push({ ...entry, kmsKeyArn: arn });
    set.keys.push({
      ...entry,
      kmsKeyArn: arn.replace(/key\/.*/, "key/00000000-0000-4000-8000-000000000000"),
    });
    await s.core.replaceNamespacedConfigMap({
      namespace: s.namespace,
      name: "scoped-step-signing-keys",
      body: { metadata: cm.metadata, data: { "keys.json": JSON.stringify(set) } },
    });
    await issuer.reload();
    assert.deepEqual(
      issuer.jwks().keys.map((k) => k.kid),
      legit,
      "the planted key is not published",
    );
    const replica = await createIssuer(s.options);
    assert.deepEqual(
      replica.jwks().keys.map((k) => k.kid),
      legit,
      "nor by a replica starting now",
    );

    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid, typ: "JWT" })
      .setIssuer(s.issuerUrl)
      .setSubject("system:scoped-step:team-a:payments:api")
      .setAudience("sts.amazonaws.com")
      .setIssuedAt()
      .setExpirationTime("10m")
      .sign(privateKey);
    assert.match(await peerVerdict(s.sts, forged), /InvalidIdentityToken/);
    assert.equal(await peerVerdict(s.sts, (await issuer.issueToken(request)).token), "ok");
  } finally {
    await stop();
  }
});

test("the alias moved to a key that cannot sign tokens: nothing is published, the active key keeps signing", async () => {
  const kms = await startLocalKms();
  const good = await kms.createSigningKey();
  await kms.pointAlias("alias/moved", good);
  const s = await setup(kms, "alias/moved", { keyPublishLeadSeconds: 0 });
  const issuer = await createIssuer(s.options);
  const stop = await s.serve(issuer);
  try {
    const before = issuer.jwks().keys.map((k) => k.kid);
    // KMS lets an alias move only between keys of the same usage: here, a signing key not enabled.
    const disabled = await kms.createSigningKey();
    await kms.client.send(new DisableKeyCommand({ KeyId: disabled }));
    await kms.pointAlias("alias/moved", disabled);
    await assert.rejects(
      issuer.rotateIfDue(),
      /kms-key-id alias\/moved names KMS key .* cannot sign tokens: its state is Disabled/,
    );
    assert.deepEqual(
      issuer.jwks().keys.map((k) => k.kid),
      before,
    );
    assert.equal(await peerVerdict(s.sts, (await issuer.issueToken(request)).token), "ok");
  } finally {
    await stop();
  }
});
