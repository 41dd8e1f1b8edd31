import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import {
  ClaimError,
  IssuerConfigError,
  createIssuer,
  memoryKeyStore,
  renderSubject,
  type ClaimErrorReason,
  type Issuer,
  type RunFacts,
  type SigningAlgorithm,
  type TokenRequest,
} from "../../controller/issuer/index.ts";
import { checkIssuerUrl } from "../../controller/issuer/documents.ts";
import { parseKeySet } from "../../controller/issuer/keys.ts";
import { ownSigner } from "../../controller/identity.ts";

const issuerUrl = "http://127.0.0.1:8443";
const facts: RunFacts = {
  namespace: "team-a",
  namespaceUid: "6f1c2a9e-0000-4000-8000-000000000001",
  customRunUid: "0b7d4c3e-0000-4000-8000-000000000002",
  application: "payments",
  component: "api",
  customRun: "deploy-run-x7k2p",
  pipelineRun: "release-42",
  pipelineTask: "deploy",
  serviceAccount: "deployer",
};
const request = (over: Partial<TokenRequest> = {}): TokenRequest => ({
  facts,
  audience: "sts.amazonaws.com",
  ...over,
});

const memoryIssuer = (algorithm: SigningAlgorithm = "ES256", extra: { subjectTemplate?: string } = {}) =>
  createIssuer({ store: memoryKeyStore(), issuerUrl, allowInsecureIssuer: true, algorithm, ...extra });

async function rejectsWith(what: Promise<unknown>, reason: ClaimErrorReason, message?: RegExp) {
  await assert.rejects(what, (err: unknown) => {
    assert.ok(err instanceof ClaimError, `a ClaimError, got ${String(err)}`);
    assert.equal(err.reason, reason, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

for (const algorithm of ["ES256", "RS256"] as const) {
  describe(`tokens signed with ${algorithm}`, () => {
    let issuer: Issuer;
    before(async () => {
      issuer = await memoryIssuer(algorithm);
    });

    test("the issuer starts with one key of that algorithm", () => {
      assert.equal(issuer.ready, true);
      assert.deepEqual(
        issuer.jwks().keys.map((k) => k.alg),
        [algorithm],
      );
    });

    test("a token verifies against the JWKS and carries every claim", async () => {
      const issued = await issuer.issueToken(
        request({
          lifetimeSeconds: 900,
          sessionTags: { team: "payments", "cost-center": "1234" },
          transitiveTagKeys: ["team"],
          sourceIdentity: "scoped-step.team-a.deploy-run-x7k2p",
        }),
      );
      const header = decodeProtectedHeader(issued.token);
      assert.equal(header.alg, algorithm);
      assert.equal(header.kid, issued.kid);
      assert.ok(
        issuer.jwks().keys.some((k) => k.kid === header.kid),
        "kid names a key in the JWKS",
      );

      const { payload } = await jwtVerify(issued.token, createLocalJWKSet(issuer.jwks()), {
        issuer: issuerUrl,
        audience: "sts.amazonaws.com",
        algorithms: [algorithm],
      });
      assert.equal(payload.sub, "system:scoped-step:team-a:payments:api");
      assert.equal(payload.sub, issued.subject);
      assert.equal(payload.jti, issued.jti);
      const { iat, nbf, exp } = payload;
      assert.ok(iat !== undefined && nbf !== undefined && exp !== undefined);
      assert.ok(nbf < iat && iat < exp, `nbf ${nbf} < iat ${iat} < exp ${exp}`);
      assert.equal(iat - nbf, 5);
      assert.equal(exp - iat, 900);
      assert.equal(issued.issuedAt.getTime(), iat * 1000);
      assert.equal(issued.expiresAt.getTime(), exp * 1000);
      // Asserted facts are top-level claims; what the run's author wrote is under "unverified".
      assert.equal(payload.namespace, "team-a");
      assert.equal(payload.namespaceUid, facts.namespaceUid);
      assert.equal(payload.customRunUid, facts.customRunUid);
      assert.equal(payload.application, "payments");
      assert.equal(payload.component, "api");
      assert.deepEqual(payload.unverified, {
        customRun: "deploy-run-x7k2p",
        pipelineRun: "release-42",
        pipelineTask: "deploy",
        serviceAccount: "deployer",
      });
      for (const name of ["customRun", "pipelineRun", "pipelineTask", "serviceAccount"]) {
        assert.equal(payload[name], undefined, `${name} is not a top-level claim`);
      }
      assert.deepEqual(payload["https://aws.amazon.com/tags"], {
        principal_tags: {
          team: ["payments"],
          "cost-center": ["1234"],
          "scoped-step:namespace": ["team-a"],
          "scoped-step:namespace-uid": [facts.namespaceUid],
          "scoped-step:application": ["payments"],
          "scoped-step:component": ["api"],
          "scoped-step:run-uid": [facts.customRunUid],
        },
        transitive_tag_keys: ["team"],
      });
      assert.equal(payload["https://aws.amazon.com/source_identity"], "scoped-step.team-a.deploy-run-x7k2p");
    });

    test("the JWKS holds public keys only, marked for signatures", () => {
      for (const key of issuer.jwks().keys) {
        for (const field of ["d", "p", "q", "dp", "dq", "qi"]) assert.ok(!(field in key), `no ${field}`);
        assert.equal(key.use, "sig");
        assert.equal(key.alg, algorithm);
        assert.equal(key.kty, algorithm === "ES256" ? "EC" : "RSA");
      }
      assert.doesNotMatch(JSON.stringify(issuer.jwks()), /"(d|p|q|dp|dq|qi)"/);
    });
  });
}

test("tokens default to 600 s, get a fresh unguessable jti each, and omit absent facts and AWS claims", async () => {
  const issuer = await memoryIssuer();
  const now = new Date("2030-01-01T00:00:00Z");
  const { pipelineRun: _r, pipelineTask: _t, namespaceUid: _nu, customRunUid: _cu, ...standalone } = facts;
  const a = await issuer.issueToken(request({ facts: standalone, now }));
  const b = await issuer.issueToken(request({ facts: standalone, now }));
  assert.notEqual(a.jti, b.jti);
  assert.ok(a.jti.length >= 22, "at least 128 random bits");
  assert.equal(a.expiresAt.getTime() - a.issuedAt.getTime(), 600_000);
  assert.equal(a.issuedAt.toISOString(), "2030-01-01T00:00:00.000Z");
  const { payload } = await jwtVerify(a.token, createLocalJWKSet(issuer.jwks()), {
    currentDate: new Date("2030-01-01T00:05:00Z"),
  });
  assert.deepEqual(payload.unverified, { customRun: facts.customRun, serviceAccount: facts.serviceAccount });
  assert.equal(payload.namespaceUid, undefined);
  assert.deepEqual(
    payload["https://aws.amazon.com/tags"],
    {
      principal_tags: {
        "scoped-step:namespace": ["team-a"],
        "scoped-step:application": ["payments"],
        "scoped-step:component": ["api"],
      },
    },
    "only the tags the issuer asserts, and no transitive keys",
  );
  assert.equal(payload["https://aws.amazon.com/source_identity"], undefined);
});

test("the discovery document names the issuer, the JWKS and what the tokens carry", async () => {
  const issuer = await memoryIssuer("RS256");
  const doc = issuer.discovery();
  assert.equal(doc.issuer, issuerUrl);
  assert.equal(doc.jwks_uri, `${issuerUrl}/openid/v1/jwks`);
  assert.deepEqual(doc.response_types_supported, ["id_token"]);
  assert.deepEqual(doc.subject_types_supported, ["public"]);
  assert.deepEqual(doc.id_token_signing_alg_values_supported, ["RS256"]);
  assert.deepEqual(doc.scopes_supported, ["openid"]);
  for (const claim of [
    "iss",
    "sub",
    "aud",
    "iat",
    "nbf",
    "exp",
    "jti",
    "namespace",
    "namespaceUid",
    "customRunUid",
    "application",
    "component",
    "unverified",
    "https://aws.amazon.com/tags",
    "https://aws.amazon.com/source_identity",
  ]) {
    assert.ok(doc.claims_supported.includes(claim), `claims_supported has ${claim}`);
  }
});

describe("subject templates", () => {
  test("the default subject is namespace, application and component", () => {
    assert.equal(
      renderSubject("system:scoped-step:{namespace}:{application}:{component}", facts),
      "system:scoped-step:team-a:payments:api",
    );
  });

  test("a template may use the asserted facts, and the tenant-supplied ones only when allowed", () => {
    assert.equal(
      renderSubject("{namespace}/{namespaceUid}/{customRunUid}", facts),
      `team-a/${facts.namespaceUid}/${facts.customRunUid}`,
    );
    const tenant = "{namespace}/{pipelineRun}/{pipelineTask}/{customRun}/{serviceAccount}";
    assert.throws(
      () => renderSubject(tenant, facts),
      (err: unknown) =>
        err instanceof ClaimError &&
        err.reason === "InvalidSubject" &&
        /\{pipelineRun\}, \{pipelineTask\}, \{customRun\}, \{serviceAccount\}, which whoever creates the run chooses/.test(
          err.message,
        ),
    );
    assert.equal(renderSubject(tenant, facts, true), "team-a/release-42/deploy/deploy-run-x7k2p/deployer");
  });

  test("an unknown placeholder is refused per run, and is a configuration error at start-up", async () => {
    assert.throws(
      () => renderSubject("system:{namespace}:{roleArn}", facts),
      (err: unknown) => err instanceof ClaimError && err.reason === "InvalidSubject",
    );
    assert.throws(() => renderSubject("system:{namespace}:{component", facts), /unbalanced/);
    await assert.rejects(memoryIssuer("ES256", { subjectTemplate: "ci:{pipelineRun}" }), IssuerConfigError);
    await assert.rejects(memoryIssuer("ES256", { subjectTemplate: "{params.whoami}" }), (err: unknown) => {
      assert.ok(err instanceof IssuerConfigError);
      assert.match(err.message, /\{params\.whoami\}/);
      return true;
    });
  });

  test("a placeholder for a fact the run lacks names the missing label", () => {
    const { pipelineRun: _omit, ...standalone } = facts;
    assert.throws(
      () => renderSubject("{namespace}:{pipelineRun}", standalone, true),
      (err: unknown) =>
        err instanceof ClaimError &&
        err.reason === "InvalidSubject" &&
        /tekton\.dev\/pipelineRun/.test(err.message),
    );
  });

  test("a fact that could widen a trust-policy match is refused", () => {
    for (const component of ["api:admin", "api*", "a?i", "api x"]) {
      assert.throws(
        () => renderSubject("{namespace}:{component}", { ...facts, component }),
        (err: unknown) => err instanceof ClaimError && err.reason === "InvalidSubject",
        component,
      );
    }
  });
});

describe("claims are checked against AWS's limits before signing", () => {
  let issuer: Issuer;
  before(async () => {
    issuer = await memoryIssuer();
  });

  test("subject: at most 255 characters", async () => {
    await rejectsWith(
      issuer.issueToken(request({ facts: { ...facts, component: "c".repeat(250) } })),
      "InvalidSubject",
      /255/,
    );
  });

  test("audience: 1..255 characters", async () => {
    await rejectsWith(issuer.issueToken(request({ audience: "" })), "InvalidAudience");
    await rejectsWith(issuer.issueToken(request({ audience: "a".repeat(256) })), "InvalidAudience");
  });

  test("lifetime: 60..3600 seconds", async () => {
    await rejectsWith(
      issuer.issueToken(request({ lifetimeSeconds: 59 })),
      "InvalidTokenLifetime",
      /60 to 3600/,
    );
    await rejectsWith(issuer.issueToken(request({ lifetimeSeconds: 3601 })), "InvalidTokenLifetime");
    await rejectsWith(issuer.issueToken(request({ lifetimeSeconds: 600.5 })), "InvalidTokenLifetime");
    const capped = await createIssuer({
      store: memoryKeyStore(),
      issuerUrl,
      allowInsecureIssuer: true,
      maxTokenLifetimeSeconds: 900,
    });
    await rejectsWith(
      capped.issueToken(request({ lifetimeSeconds: 901 })),
      "InvalidTokenLifetime",
      /60 to 900/,
    );
  });

  const tooMany = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, "v"]));
  const tooManyWithAsserted = Object.fromEntries(Array.from({ length: 46 }, (_, i) => [`k${i}`, "v"]));
  const tagCases: [string, Record<string, string>, string[], RegExp][] = [
    ["more than 50 tags", tooMany, [], /at most 50/],
    ["a key over 128 characters", { ["k".repeat(129)]: "v" }, [], /1\.\.128/],
    ["an empty key", { "": "v" }, [], /1\.\.128/],
    ["a value over 256 characters", { team: "v".repeat(257) }, [], /256/],
    ["a character AWS refuses in a key", { "team#1": "v" }, [], /may contain only/],
    ["a character AWS refuses in a value", { team: "a,b" }, [], /may contain only/],
    ["the reserved aws: prefix", { "aws:team": "v" }, [], /reserved prefix/],
    [
      "the controller's own prefix, in any case",
      { "Scoped-Step:namespace": "prod" },
      [],
      /prefix scoped-step:, which only the controller sets/,
    ],
    [
      "more than 50 with the controller's own",
      tooManyWithAsserted,
      [],
      /got 51 \(5 of them set by the controller\)/,
    ],
    ["keys differing only in case", { Team: "a", team: "b" }, [], /letter case/],
    ["a transitive key that is not a tag", { team: "a" }, ["owner"], /not one of the session tags/],
  ];
  for (const [what, sessionTags, transitiveTagKeys, message] of tagCases) {
    test(`session tags: ${what}`, async () => {
      await rejectsWith(
        issuer.issueToken(request({ sessionTags, transitiveTagKeys })),
        "InvalidSessionTags",
        message,
      );
    });
  }

  test("session tags: letters of any script, spaces and _ . : / = + - @ are fine", async () => {
    const issued = await issuer.issueToken(
      request({ sessionTags: { équipe: "paiements", "path/to:x": "a b=c+d-e@f_g.h", empty: "" } }),
    );
    assert.ok(issued.token.length > 0);
  });

  for (const [what, value] of [
    ["one character", "a"],
    ["65 characters", "a".repeat(65)],
    ["a character outside [\\w+=,.@-]", "run/42"],
    ["the aws: prefix", "aws:run"],
  ] as const) {
    test(`source identity: ${what}`, async () => {
      await rejectsWith(issuer.issueToken(request({ sourceIdentity: value })), "InvalidSourceIdentity");
    });
  }

  test("the whole token: at most 20000 characters", async () => {
    const big = Object.fromEntries(
      Array.from({ length: 45 }, (_, i) => [
        `${String(i).padStart(2, "0")}${"k".repeat(126)}`,
        "v".repeat(256),
      ]),
    );
    await rejectsWith(issuer.issueToken(request({ sessionTags: big })), "TokenTooLarge", /20000/);
  });
});

describe("issuer URL", () => {
  test("production needs https with no port, query, fragment or trailing slash", () => {
    checkIssuerUrl("https://oidc.example.com", false);
    checkIssuerUrl("https://bucket.s3.eu-west-1.amazonaws.com/cluster-a", false);
    for (const bad of [
      "http://oidc.example.com",
      "https://oidc.example.com:8443",
      "https://oidc.example.com?x=1",
      "https://oidc.example.com#x",
      "https://oidc.example.com/",
      "https://127.0.0.1",
      "ftp://oidc.example.com",
      "oidc.example.com",
    ]) {
      assert.throws(() => checkIssuerUrl(bad, false), IssuerConfigError, bad);
    }
  });

  test("http and loopback ports need allowInsecureIssuer", async () => {
    checkIssuerUrl("http://127.0.0.1:8443", true);
    await assert.rejects(
      createIssuer({ store: memoryKeyStore(), issuerUrl: "http://127.0.0.1:8443" }),
      /allowInsecureIssuer/,
    );
  });
});

describe("rotation with an in-memory store", () => {
  const day = 24 * 3600;

  test("the next key is published ahead of activation, then signs, and the old one is kept until its tokens expire", async () => {
    const store = memoryKeyStore();
    const issuer = await createIssuer({
      store,
      issuerUrl,
      allowInsecureIssuer: true,
      rotationIntervalSeconds: 7 * day,
      keyPublishLeadSeconds: 3600,
      maxTokenLifetimeSeconds: 3600,
      clockSkewSeconds: 300,
    });
    const first = issuer.jwks().keys[0]?.kid;
    // Time is measured from the first key's creation, read back rather than guessed.
    const start = Date.parse((await store.read()).keys?.keys[0]?.createdAt ?? "");
    const at = (seconds: number) => new Date(start + seconds * 1000);

    assert.equal((await issuer.rotateIfDue(at(7 * day - 3601))).changed, false);
    const published = await issuer.rotateIfDue(at(7 * day - 3600));
    assert.equal(published.published.length, 1);
    assert.equal(published.activeKid, first, "the old key still signs");
    assert.equal(issuer.jwks().keys.length, 2, "the next key is already public");

    assert.equal((await issuer.rotateIfDue(at(7 * day - 1))).changed, false);
    const activated = await issuer.rotateIfDue(at(7 * day));
    assert.equal(activated.activated, published.published[0]);
    assert.equal((await issuer.issueToken(request({ now: at(7 * day) }))).kid, activated.activated);
    assert.equal(issuer.activeKeyActivatedAt(), at(7 * day).getTime() / 1000);

    assert.equal((await issuer.rotateIfDue(at(7 * day + 3899))).pruned.length, 0);
    const pruned = await issuer.rotateIfDue(at(7 * day + 3900));
    assert.deepEqual(pruned.pruned, [first]);
    assert.deepEqual(
      issuer.jwks().keys.map((k) => k.kid),
      [activated.activated],
    );
  });
});

describe("key custody", () => {
  const day = 24 * 3600;

  for (const algorithm of ["ES256", "RS256"] as const) {
    test(`${algorithm}: a key that stops signing is stored public-only, and its tokens still verify`, async () => {
      const store = memoryKeyStore();
      const issuer = await createIssuer({
        store,
        issuerUrl,
        allowInsecureIssuer: true,
        algorithm,
        keyPublishLeadSeconds: 0,
      });
      const old = (await store.read()).keys?.keys[0];
      assert.ok(old?.privateJwk?.d);
      const start = Date.parse(old.createdAt);
      const signedBefore = await issuer.issueToken(request({ now: new Date(start) }));
      const rotatedAt = new Date(start + 7 * day * 1000);
      assert.ok((await issuer.rotateIfDue(rotatedAt)).activated);

      const keys = (await store.read()).keys?.keys ?? [];
      const retired = keys.find((k) => k.kid === old.kid);
      assert.equal(retired?.state, "retired");
      assert.equal(retired.privateJwk, undefined, "no private JWK");
      assert.deepEqual(
        Object.keys(retired.publicJwk ?? {}).sort(),
        algorithm === "ES256" ? ["crv", "kty", "x", "y"] : ["e", "kty", "n"],
        "public members only",
      );
      assert.ok(!JSON.stringify(keys).includes(old.privateJwk.d), "the private part is gone from the store");
      await jwtVerify(signedBefore.token, createLocalJWKSet(issuer.jwks()), {
        issuer: issuerUrl,
        currentDate: new Date(start + 60_000),
      });
      assert.ok(
        keys.filter((k) => k.state !== "retired").every((k) => k.privateJwk?.d),
        "the signing keys keep theirs",
      );
    });
  }

  test("a key set stored with retired private keys loses them when an issuer loads it", async () => {
    const source = memoryKeyStore();
    const issuer = await createIssuer({
      store: source,
      issuerUrl,
      allowInsecureIssuer: true,
      keyPublishLeadSeconds: 0,
    });
    const first = (await source.read()).keys?.keys[0];
    assert.ok(first?.privateJwk);
    await issuer.rotateIfDue(new Date(Date.parse(first.createdAt) + 7 * day * 1000));
    const current = (await source.read()).keys;
    assert.ok(current);
    // As an older version stored a retired key: with its private JWK.
    const legacy = {
      version: 1 as const,
      keys: current.keys.map((k) =>
        k.kid === first.kid ? { ...k, privateJwk: first.privateJwk, publicJwk: undefined } : k,
      ),
    };
    const store = memoryKeyStore();
    await store.write(legacy, undefined);

    const loaded = await createIssuer({ store, issuerUrl, allowInsecureIssuer: true });
    const keys = (await store.read()).keys?.keys ?? [];
    assert.equal(keys.find((k) => k.kid === first.kid)?.privateJwk, undefined);
    assert.ok(!JSON.stringify(keys).includes(first.privateJwk.d));
    assert.deepEqual(
      loaded
        .jwks()
        .keys.map((k) => k.kid)
        .sort(),
      current.keys.map((k) => k.kid).sort(),
      "the retired key stays published",
    );
  });

  test("a stored active key without its private part is refused", () => {
    assert.throws(
      () =>
        parseKeySet(
          JSON.stringify({
            version: 1,
            keys: [
              {
                kid: "k1",
                alg: "ES256",
                state: "active",
                createdAt: "2026-11-29T00:00:00Z",
                publicJwk: { kty: "EC", crv: "P-256", x: "AA", y: "AA" },
              },
            ],
          }),
        ),
      /active key k1 without its private JWK/,
    );
  });
});

test("the controller's signer reads the namespace's UID while the ledger is written, and signs only after it", async () => {
  const signed: TokenRequest[] = [];
  const issuer = {
    issuerUrl,
    issueToken: (r: TokenRequest) => {
      signed.push(r);
      return memoryIssuer().then((i) => i.issueToken(r));
    },
  };
  const reads: string[] = [];
  const signer = ownSigner(issuer, (name) => {
    reads.push(name);
    return Promise.resolve(`uid-of-${name}`);
  });
  const customRunUid = "0b7d4c3e-0000-4000-8000-000000000002";
  const runFacts = {
    namespace: "team-a",
    uid: customRunUid,
    customRun: "deploy-run-x7k2p",
    application: "payments",
    component: "api",
    serviceAccount: "deployer",
  };

  const failed = signer.issueToken({
    facts: runFacts,
    audience: "sts.amazonaws.com",
    recorded: Promise.reject(new Error("etcd timed out")),
  });
  await assert.rejects(failed, /etcd timed out/);
  assert.deepEqual(reads, ["team-a"], "the namespace was read all the same");
  assert.equal(signed.length, 0, "nothing was signed for an intent the ledger does not hold");

  let record = () => {};
  const recorded = new Promise<void>((resolve) => (record = resolve));
  const issuing = signer.issueToken({ facts: runFacts, audience: "sts.amazonaws.com", recorded });
  assert.deepEqual(reads, ["team-a", "team-a"], "read before the ledger answered");
  assert.equal(signed.length, 0);
  record();
  const token = await issuing;
  assert.equal(signed.length, 1);
  assert.equal(signed[0]?.facts.namespaceUid, "uid-of-team-a");
  assert.equal(signed[0]?.facts.customRunUid, customRunUid);
  assert.ok(!("recorded" in (signed[0] ?? {})), "the issuer is not handed the ledger's promise");
  assert.ok(token.token);
});
