import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, sign, verify } from "node:crypto";
import { KMSServiceException, type KeyMetadata } from "@aws-sdk/client-kms";
import { calculateJwkThumbprint } from "jose";
import { derToJoseSignature, kmsFailure, spkiToJwk, unusableKey } from "../../controller/issuer/kms.ts";
import {
  firstKmsKeySet,
  kmsRotationStep,
  targetRetired,
  type KmsTarget,
} from "../../controller/issuer/kms-rotation.ts";
import {
  activeKey,
  parseKeySet,
  publishedKeys,
  serializeKeySet,
  type KeySet,
} from "../../controller/issuer/keys.ts";

describe("KMS ECDSA signatures", () => {
  test("DER signatures become R||S that verifies as a JWS signature, leading zeros and sign bytes included", () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const lengths = new Set<number>();
    // Enough signatures that some R or S is shorter than 32 bytes or needs a sign byte (33).
    for (let i = 0; i < 600; i++) {
      const data = Buffer.from(`token ${i}`);
      const der = sign("sha256", data, { key: privateKey, dsaEncoding: "der" });
      lengths.add(der.length);
      const raw = derToJoseSignature(der, 32);
      assert.equal(raw.length, 64);
      assert.ok(verify("sha256", data, { key: publicKey, dsaEncoding: "ieee-p1363" }, raw), `signature ${i}`);
    }
    assert.ok(lengths.size > 2, `DER lengths seen: ${[...lengths].join(", ")}`);
  });

  test("anything but a DER SEQUENCE of two INTEGERs is refused", () => {
    const good = Buffer.from("3006020101020102", "hex");
    assert.deepEqual([...derToJoseSignature(good, 2)], [0, 1, 0, 2]);
    for (const [hex, why] of [
      ["", /truncated/],
      ["3106020101020102", /no SEQUENCE/],
      ["3007020101020102", /length does not match/],
      ["3006030101020102", /no INTEGER/],
      ["300702010102010200", /trailing|length does not match/],
      ["3008020301020302020102", /length does not match|longer than/],
      ["3009020401020304020102", /longer than 2 bytes/],
    ] as const) {
      assert.throws(() => derToJoseSignature(Buffer.from(hex, "hex"), 2), why, hex);
    }
  });
});

describe("KMS public keys", () => {
  for (const [alg, type] of [
    ["ES256", "ec"],
    ["RS256", "rsa"],
  ] as const) {
    test(`${alg}: GetPublicKey's SubjectPublicKeyInfo becomes the same public JWK, nothing private`, async () => {
      const { publicKey } =
        type === "ec"
          ? generateKeyPairSync("ec", { namedCurve: "P-256" })
          : generateKeyPairSync("rsa", { modulusLength: 2048 });
      const spki = publicKey.export({ format: "der", type: "spki" });
      const jwk = await spkiToJwk(spki, alg);
      const expected = publicKey.export({ format: "jwk" });
      assert.deepEqual(
        jwk,
        type === "ec"
          ? { kty: "EC", crv: "P-256", x: expected.x, y: expected.y }
          : { kty: "RSA", n: expected.n, e: expected.e },
      );
      assert.equal("d" in jwk, false);
    });
  }

  const meta: KeyMetadata = {
    KeyId: "1234abcd-12ab-34cd-56ef-1234567890ab",
    KeyUsage: "SIGN_VERIFY",
    KeySpec: "ECC_NIST_P256",
    SigningAlgorithms: ["ECDSA_SHA_256"],
    KeyState: "Enabled",
  };
  test("a key that cannot sign tokens is named with what is wrong with it", () => {
    assert.equal(unusableKey(meta), undefined);
    assert.equal(
      unusableKey({ ...meta, KeySpec: "RSA_3072", SigningAlgorithms: ["RSASSA_PKCS1_V1_5_SHA_256"] }),
      undefined,
    );
    assert.match(unusableKey({ ...meta, KeyUsage: "ENCRYPT_DECRYPT" }) ?? "", /key usage is ENCRYPT_DECRYPT/);
    assert.match(unusableKey({ ...meta, KeySpec: "ECC_SECG_P256K1" }) ?? "", /key spec is ECC_SECG_P256K1/);
    assert.match(
      unusableKey({ ...meta, KeySpec: "RSA_2048", SigningAlgorithms: ["RSASSA_PSS_SHA_256"] }) ?? "",
      /does not offer RSASSA_PKCS1_V1_5_SHA_256/,
    );
    assert.match(unusableKey({ ...meta, KeyState: "Disabled" }) ?? "", /state is Disabled/);
    assert.match(unusableKey({ ...meta, KeyState: "PendingDeletion" }) ?? "", /state is PendingDeletion/);
  });
});

describe("KMS key rotation", () => {
  const policy = { publishLeadSeconds: 3600, retentionSeconds: 3900 };
  const t0 = new Date("2026-11-30T00:00:00Z");
  const at = (s: number) => new Date(t0.getTime() + s * 1000);
  const target = (n: number): KmsTarget => ({
    kid: `kid-${n}`,
    alg: "ES256",
    kmsKeyArn: `arn:aws:kms:eu-west-1:111122223333:key/0000000${n}-0000-4000-8000-000000000000`,
    publicJwk: { kty: "EC", crv: "P-256", x: `x${n}`, y: `y${n}` },
  });
  const states = (set: KeySet) => Object.fromEntries(set.keys.map((k) => [k.kid, k.state]));
  const step = (set: KeySet, n: number, s: number) => kmsRotationStep(set, target(n), at(s), policy);

  test("the first key the alias names signs at once, and nothing changes while the alias stays", () => {
    const set = firstKmsKeySet(target(1), t0);
    assert.deepEqual(states(set), { "kid-1": "active" });
    assert.equal(activeKey(set).kmsKeyArn, target(1).kmsKeyArn);
    assert.equal(step(set, 1, 30 * 86_400), undefined);
  });

  test("a new key behind the alias is published first, signs once the lead has passed, and the old one stays until its tokens expire", () => {
    let set = firstKmsKeySet(target(1), t0);
    set = step(set, 2, 100) ?? assert.fail("the new key is published");
    assert.deepEqual(states(set), { "kid-1": "active", "kid-2": "next" });
    assert.deepEqual(
      publishedKeys(set).map((k) => k.kid),
      ["kid-1", "kid-2"],
    );
    assert.equal(step(set, 2, 100 + 3599), undefined, "the old key signs until the lead has passed");
    set = step(set, 2, 100 + 3600) ?? assert.fail("the new key activates");
    assert.deepEqual(states(set), { "kid-1": "retired", "kid-2": "active" });
    assert.equal(set.keys.find((k) => k.kid === "kid-1")?.retiredAt, at(3700).toISOString());
    assert.equal(
      step(set, 2, 3700 + 3899),
      undefined,
      "the retired key is kept for the longest token lifetime",
    );
    set = step(set, 2, 3700 + 3900) ?? assert.fail("the retired key is pruned");
    assert.deepEqual(states(set), { "kid-2": "active" });
  });

  test("publish lead 0 activates the new key in the same step", () => {
    const set = kmsRotationStep(firstKmsKeySet(target(1), t0), target(2), at(10), {
      ...policy,
      publishLeadSeconds: 0,
    });
    assert.deepEqual(states(set ?? assert.fail()), { "kid-1": "retired", "kid-2": "active" });
  });

  test("the alias moved back before the new key signed: the new key is dropped, the old one keeps signing", () => {
    const published = step(firstKmsKeySet(target(1), t0), 2, 100) ?? assert.fail();
    const back = step(published, 1, 200) ?? assert.fail("the next key is dropped");
    assert.deepEqual(states(back), { "kid-1": "active" });
  });

  test("the alias moved again before activation: the newest key replaces the next one and its lead starts again", () => {
    let set = step(firstKmsKeySet(target(1), t0), 2, 100) ?? assert.fail();
    set = step(set, 3, 3000) ?? assert.fail();
    assert.deepEqual(states(set), { "kid-1": "active", "kid-3": "next" });
    assert.equal(step(set, 3, 3000 + 3599), undefined);
    assert.deepEqual(states(step(set, 3, 3000 + 3600) ?? assert.fail()), {
      "kid-1": "retired",
      "kid-3": "active",
    });
  });

  test("an alias back on a retired key does not bring it back: the active key keeps signing", () => {
    let set = step(firstKmsKeySet(target(1), t0), 2, 0) ?? assert.fail();
    set = step(set, 2, 3600) ?? assert.fail();
    assert.ok(targetRetired(set, target(1)));
    assert.equal(step(set, 1, 3700), undefined);
    // Once pruned, it is a key like any other.
    const later = step(set, 1, 3600 + 3900) ?? assert.fail();
    assert.deepEqual(states(later), { "kid-2": "active", "kid-1": "next" });
  });

  test("the stored set holds ARNs and public keys only, and parses back", () => {
    let set = step(firstKmsKeySet(target(1), t0), 2, 0) ?? assert.fail();
    set = step(set, 2, 3600) ?? assert.fail();
    const text = serializeKeySet(set);
    assert.deepEqual(parseKeySet(text), set);
    assert.doesNotMatch(text, /"d"|privateJwk/);
    for (const key of set.keys) assert.match(key.kmsKeyArn ?? "", /^arn:aws:kms:/);
  });

  test("a stored KMS key without its public key or ARN is refused", () => {
    const set = firstKmsKeySet(target(1), t0);
    const [key] = set.keys;
    assert.throws(
      () => parseKeySet(JSON.stringify({ ...set, keys: [{ ...key, publicJwk: undefined }] })),
      /without its private JWK or KMS key/,
    );
    assert.throws(
      () => parseKeySet(JSON.stringify({ ...set, keys: [{ ...key, kmsKeyArn: "alias/x" }] })),
      /kmsKeyArn/,
    );
  });

  test("kid is the RFC 7638 thumbprint of the public key", async () => {
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = await spkiToJwk(publicKey.export({ format: "der", type: "spki" }), "ES256");
    assert.equal(
      await calculateJwkThumbprint(jwk, "sha256"),
      await calculateJwkThumbprint(publicKey.export({ format: "jwk" }), "sha256"),
    );
  });
});

describe("KMS errors", () => {
  const kmsError = (name: string, status: number) =>
    new KMSServiceException({
      name,
      $fault: status >= 500 ? "server" : "client",
      $metadata: { httpStatusCode: status },
      message: `${name} said no`,
    });

  test("throttling, KMS's own failures and no answer are retried; refusals end the run with KMS's code", () => {
    for (const [err, transient, code] of [
      [kmsError("ThrottlingException", 400), true, "ThrottlingException"],
      [kmsError("KMSInternalException", 500), true, "KMSInternalException"],
      [kmsError("DependencyTimeoutException", 503), true, "DependencyTimeoutException"],
      [kmsError("KeyUnavailableException", 500), true, "KeyUnavailableException"],
      [kmsError("SomethingNew", 502), true, "SomethingNew"],
      [
        Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:4599"), { code: "ECONNREFUSED" }),
        true,
        "Unreachable",
      ],
      [kmsError("AccessDeniedException", 400), false, "AccessDeniedException"],
      [kmsError("DisabledException", 400), false, "DisabledException"],
      [kmsError("KMSInvalidStateException", 400), false, "KMSInvalidStateException"],
      [kmsError("NotFoundException", 400), false, "NotFoundException"],
      [kmsError("InvalidKeyUsageException", 400), false, "InvalidKeyUsageException"],
      [
        Object.assign(new Error("Could not load credentials from any providers"), {
          name: "CredentialsProviderError",
        }),
        false,
        "NoCredentials",
      ],
    ] as const) {
      const failure = kmsFailure(err, "Sign with arn:aws:kms:eu-west-1:111122223333:key/k");
      assert.equal(failure.transient, transient, code);
      assert.equal(failure.code, code);
      assert.equal(failure.reason, "SigningKeyUnavailable");
      assert.match(failure.message, /Sign with arn:aws:kms:eu-west-1:111122223333:key\/k/);
      if (!transient) assert.match(failure.message, /platform operator|credentials/);
    }
  });
});
