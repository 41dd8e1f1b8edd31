// The issuer against the real API server: the key Secret, races between replicas, rotation over
// (explicitly driven) time, the HTTP documents and the publishing CLI.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from "jose";
import {
  createIssuer,
  type Issuer,
  type IssuerOptions,
  type TokenRequest,
} from "../../controller/issuer/index.ts";
import { kubeFromKubeConfig } from "../../controller/kube-client.ts";
import { testCluster, testNamespace, type TestCluster } from "../support/cluster.ts";

const day = 24 * 3600;
const issuerUrl = "http://127.0.0.1:9443";
const secretName = "scoped-step-signing-keys";
const request: TokenRequest = {
  facts: { namespace: "team-a", application: "payments", component: "api", customRun: "deploy-1" },
  audience: "sts.amazonaws.com",
};

interface StoredKeys {
  keys: {
    kid: string;
    alg: string;
    state: string;
    createdAt: string;
    retiredAt?: string;
    privateJwk?: JWK;
    publicJwk?: JWK;
  }[];
}

async function setup(prefix: string) {
  const cluster = await testCluster();
  const namespace = await testNamespace(cluster, prefix);
  const kube = await kubeFromKubeConfig(cluster.kc);
  const options = (extra: Partial<IssuerOptions> = {}): IssuerOptions => ({
    kube,
    namespace,
    issuerUrl,
    allowInsecureIssuer: true,
    ...extra,
  });
  return { cluster, namespace, options };
}

async function storedKeys(cluster: TestCluster, namespace: string, name = secretName): Promise<StoredKeys> {
  const secret = await cluster.core.readNamespacedSecret({ name, namespace });
  const data = secret.data?.["keys.json"];
  assert.ok(data, "the Secret holds keys.json");
  return JSON.parse(Buffer.from(data, "base64").toString("utf8")) as StoredKeys;
}

const verify = (issuer: Issuer, token: string, at: Date) =>
  jwtVerify(token, createLocalJWKSet(issuer.jwks()), { issuer: issuerUrl, currentDate: at });

test("the first start creates the key Secret; a second instance signs with the same key", async () => {
  const { cluster, namespace, options } = await setup("issuer-first");
  const first = await createIssuer(options());

  const secret = await cluster.core.readNamespacedSecret({ name: secretName, namespace });
  assert.equal(secret.type, "Opaque");
  assert.equal(secret.metadata?.labels?.["app.kubernetes.io/part-of"], "scoped-step");
  const stored = await storedKeys(cluster, namespace);
  assert.equal(stored.keys.length, 1);
  const [key] = stored.keys;
  assert.ok(key);
  assert.equal(key.state, "active");
  assert.equal(key.alg, "ES256");
  assert.ok(key.privateJwk?.d, "the Secret holds the private key");
  const { kty, crv, x, y } = key.privateJwk;
  assert.equal(key.kid, await calculateJwkThumbprint({ kty, crv, x, y }), "kid is the RFC 7638 thumbprint");

  const second = await createIssuer(options());
  assert.deepEqual(second.jwks(), first.jwks());
  const issued = await second.issueToken(request);
  assert.equal(issued.kid, key.kid);
  await verify(first, issued.token, new Date());
  assert.equal((await storedKeys(cluster, namespace)).keys.length, 1, "no key was added");
});

test("instances started at the same moment end with one shared key set", async () => {
  const { cluster, namespace, options } = await setup("issuer-race");
  const issuers = await Promise.all(
    Array.from({ length: 4 }, () => createIssuer(options({ algorithm: "RS256" }))),
  );
  const stored = await storedKeys(cluster, namespace);
  assert.equal(stored.keys.length, 1);
  for (const issuer of issuers) {
    assert.deepEqual(
      issuer.jwks().keys.map((k) => k.kid),
      [stored.keys[0]?.kid],
    );
  }
});

test("a token signed before rotation verifies after it, until its key is pruned after the tokens' expiry; the retired key is stored public-only", async () => {
  const { cluster, namespace, options } = await setup("issuer-rotate");
  const issuer = await createIssuer(
    options({ keyPublishLeadSeconds: 0, maxTokenLifetimeSeconds: 3600, clockSkewSeconds: 300 }),
  );
  const t0 = new Date();
  const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
  const before = await issuer.issueToken({ ...request, lifetimeSeconds: 3600, now: t0 });
  const privateD = (await storedKeys(cluster, namespace)).keys[0]?.privateJwk?.d;
  assert.ok(privateD, "the active key's private part is stored");

  assert.equal((await issuer.rotateIfDue(at(7 * day - 60))).changed, false, "not due before the interval");
  const rotatedAt = at(7 * day);
  const rotation = await issuer.rotateIfDue(rotatedAt);
  assert.ok(rotation.activated && rotation.activated !== before.kid);
  const stored = await storedKeys(cluster, namespace);
  assert.deepEqual(
    stored.keys.map((k) => [k.kid, k.state]).sort(),
    [
      [before.kid, "retired"],
      [rotation.activated, "active"],
    ].sort(),
  );
  const retired = stored.keys.find((k) => k.kid === before.kid);
  assert.ok(retired?.publicJwk, "the retired key keeps its public JWK");
  assert.equal(retired.privateJwk, undefined, "the retired key has no private JWK");
  assert.equal(retired.publicJwk.d, undefined);
  assert.equal(await calculateJwkThumbprint(retired.publicJwk), before.kid);
  const secret = await cluster.core.readNamespacedSecret({ name: secretName, namespace });
  assert.ok(
    !Buffer.from(secret.data?.["keys.json"] ?? "", "base64")
      .toString("utf8")
      .includes(privateD),
    "the retired private key is nowhere in the Secret",
  );

  const after = await issuer.issueToken({ ...request, now: rotatedAt });
  assert.equal(decodeProtectedHeader(after.token).kid, rotation.activated);
  await verify(issuer, after.token, rotatedAt);
  await verify(issuer, before.token, at(60));

  const kept = await issuer.rotateIfDue(at(7 * day + 3600 + 300 - 1));
  assert.deepEqual(kept.pruned, []);
  assert.ok(
    issuer.jwks().keys.some((k) => k.kid === before.kid),
    "kept while its tokens may be live",
  );

  const pruned = await issuer.rotateIfDue(at(7 * day + 3600 + 300));
  assert.deepEqual(pruned.pruned, [before.kid]);
  assert.deepEqual(
    issuer.jwks().keys.map((k) => k.kid),
    [rotation.activated],
  );
  assert.deepEqual(
    (await storedKeys(cluster, namespace)).keys.map((k) => k.kid),
    [rotation.activated],
  );
  await assert.rejects(verify(issuer, before.token, at(60)), { code: "ERR_JWKS_NO_MATCHING_KEY" });
});

test("two instances rotating at once make exactly one new key, and the other learns it on reload", async () => {
  const { cluster, namespace, options } = await setup("issuer-rotate-race");
  const a = await createIssuer(options({ keyPublishLeadSeconds: 0 }));
  const b = await createIssuer(options({ keyPublishLeadSeconds: 0 }));
  const c = await createIssuer(options({ keyPublishLeadSeconds: 0 }));
  const old = a.jwks().keys[0]?.kid;
  const due = new Date(Date.now() + 7 * day * 1000 + 1000);

  const [ra, rb] = await Promise.all([a.rotateIfDue(due), b.rotateIfDue(due)]);
  const stored = await storedKeys(cluster, namespace);
  assert.equal(stored.keys.length, 2, "one retired, one new");
  const active = stored.keys.find((k) => k.state === "active")?.kid;
  assert.ok(active && active !== old);
  assert.equal(ra.activeKid, active);
  assert.equal(rb.activeKid, active);
  assert.equal([ra, rb].filter((r) => r.changed).length, 1, "exactly one instance wrote");
  assert.equal([ra, rb].filter((r) => r.activated === active).length, 1, "exactly one instance rotated");

  assert.equal((await c.issueToken(request)).kid, old, "c has not looked yet");
  await c.reload();
  assert.equal((await c.issueToken(request)).kid, active);
  assert.equal(c.activeKeyActivatedAt(), due.getTime() / 1000);
});

test("a new key is in the JWKS a publish lead before it signs", async () => {
  const { namespace, cluster, options } = await setup("issuer-lead");
  const issuer = await createIssuer(
    options({ rotationIntervalSeconds: 2 * day, keyPublishLeadSeconds: 3600 }),
  );
  const t0 = new Date();
  const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
  const first = issuer.jwks().keys[0]?.kid;

  const published = await issuer.rotateIfDue(at(2 * day - 3600 + 1));
  assert.equal(published.published.length, 1);
  assert.equal(published.activeKid, first);
  const states = (await storedKeys(cluster, namespace)).keys.map((k) => k.state).sort();
  assert.deepEqual(states, ["active", "next"]);
  assert.equal(issuer.jwks().keys.length, 2);
  assert.equal((await issuer.issueToken({ ...request, now: at(2 * day) })).kid, first, "not signing yet");

  const activated = await issuer.rotateIfDue(at(2 * day + 1));
  assert.equal(activated.activated, published.published[0]);
});

test("a deleted key Secret is restored with the keys live tokens were signed with", async () => {
  const { cluster, namespace, options } = await setup("issuer-restore");
  const issuer = await createIssuer(options());
  const kid = issuer.jwks().keys[0]?.kid;
  await cluster.core.deleteNamespacedSecret({ name: secretName, namespace });
  await issuer.reload();
  assert.deepEqual(
    (await storedKeys(cluster, namespace)).keys.map((k) => k.kid),
    [kid],
  );
});

test("a key Secret an operator created empty is filled, keeping its metadata", async () => {
  const { cluster, namespace, options } = await setup("issuer-precreated");
  await cluster.core.createNamespacedSecret({
    namespace,
    body: { metadata: { name: secretName, annotations: { "example.com/owner": "platform" } } },
  });
  const issuer = await createIssuer(options());
  const secret = await cluster.core.readNamespacedSecret({ name: secretName, namespace });
  assert.equal(secret.metadata?.annotations?.["example.com/owner"], "platform");
  assert.deepEqual(
    (await storedKeys(cluster, namespace)).keys.map((k) => k.kid),
    issuer.jwks().keys.map((k) => k.kid),
  );
});

test("a corrupt key Secret stops the start with a message naming it", async () => {
  const { cluster, namespace, options } = await setup("issuer-corrupt");
  await cluster.core.createNamespacedSecret({
    namespace,
    body: {
      metadata: { name: "custom-keys" },
      data: { "keys.json": Buffer.from('{"version":1,"keys":[]}').toString("base64") },
    },
  });
  await assert.rejects(
    createIssuer(options({ secretName: "custom-keys" })),
    new RegExp(`Secret ${namespace}/custom-keys key keys.json is not a key set`),
  );
});

test("the HTTP handler serves discovery and JWKS with cache headers, HEAD, and 405 for other methods", async () => {
  const { options } = await setup("issuer-http");
  const issuer = await createIssuer(options({ algorithm: "RS256" }));
  const server = http.createServer((req, res) => {
    if (!issuer.handler(req, res)) {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const discovery = await fetch(`${base}/.well-known/openid-configuration`);
    assert.equal(discovery.status, 200);
    assert.equal(discovery.headers.get("content-type"), "application/json");
    assert.equal(discovery.headers.get("cache-control"), "public, max-age=300");
    const doc = (await discovery.json()) as { issuer: string; jwks_uri: string };
    assert.equal(doc.issuer, issuerUrl);
    assert.equal(new URL(doc.jwks_uri).pathname, "/openid/v1/jwks");

    const jwks = await fetch(`${base}/openid/v1/jwks`);
    assert.equal(jwks.status, 200);
    assert.equal(jwks.headers.get("cache-control"), "public, max-age=300");
    assert.deepEqual(await jwks.json(), issuer.jwks());

    const head = await fetch(`${base}/openid/v1/jwks`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-type"), "application/json");
    assert.equal(await head.text(), "");

    const revalidated = await fetch(`${base}/openid/v1/jwks`, {
      headers: { "If-None-Match": jwks.headers.get("etag") ?? "" },
    });
    assert.equal(revalidated.status, 304);

    const post = await fetch(`${base}/.well-known/openid-configuration`, { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    assert.equal((await fetch(`${base}/metrics`)).status, 404, "other paths are left to the next handler");
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

test("the publish CLI writes the discovery document and the JWKS as files", async () => {
  const { cluster, namespace } = await setup("issuer-publish");
  const out = await mkdtemp(path.join(os.tmpdir(), "issuer-publish-"));
  const issuer = "https://oidc.example.com/cluster-a";
  const cli = new URL("../../controller/issuer/publish.ts", import.meta.url).pathname;
  const args = [
    "--kubeconfig",
    cluster.kubeconfig,
    "--namespace",
    namespace,
    "--issuer",
    issuer,
    "--out",
    out,
  ];
  const { stdout } = await promisify(execFile)(process.execPath, [cli, ...args]);
  const discoveryFile = path.join(out, ".well-known", "openid-configuration");
  const jwksFile = path.join(out, "openid", "v1", "jwks");
  assert.deepEqual(stdout.trim().split("\n"), [discoveryFile, jwksFile]);

  const discovery = JSON.parse(await readFile(discoveryFile, "utf8")) as { issuer: string; jwks_uri: string };
  assert.equal(discovery.issuer, issuer);
  assert.equal(discovery.jwks_uri, `${issuer}/openid/v1/jwks`);
  const jwks = JSON.parse(await readFile(jwksFile, "utf8")) as { keys: { kid: string; d?: string }[] };
  const stored = await storedKeys(cluster, namespace);
  assert.deepEqual(
    jwks.keys.map((k) => k.kid),
    stored.keys.map((k) => k.kid),
  );
  assert.ok(jwks.keys.every((k) => k.d === undefined));

  await assert.rejects(
    promisify(execFile)(process.execPath, [
      cli,
      ...args.slice(0, -4),
      "--issuer",
      "http://127.0.0.1:1",
      "--out",
      out,
    ]),
    /must use https/,
  );
});
