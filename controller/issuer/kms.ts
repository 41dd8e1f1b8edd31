// The KMS side of the KMS key store: which key the configured alias or ARN names and whether it
// can sign tokens (DescribeKey), its public half as a JWK (GetPublicKey), and signing (Sign). The
// private key never leaves KMS. The token's SHA-256 digest is sent (MessageType DIGEST), as a
// token can exceed KMS's 4096-byte limit on raw messages, and KMS's DER ECDSA signature becomes
// the raw R||S a JWS carries.
import { createHash } from "node:crypto";
import {
  DescribeKeyCommand,
  GetPublicKeyCommand,
  KMSClient,
  KMSServiceException,
  SignCommand,
  type KeyMetadata,
  type SigningAlgorithmSpec,
} from "@aws-sdk/client-kms";
import { calculateJwkThumbprint, exportJWK, importSPKI } from "jose";
import type { PublicParts, SigningAlgorithm } from "./keys.ts";
import type { KmsTarget } from "./kms-rotation.ts";
import type { SigningKey } from "./tokens.ts";

export interface KmsConnection {
  /** The key as the operator names it: alias/..., an alias ARN, a key id or a key ARN. */
  keyId: string;
  region: string;
  /** A VPC endpoint, or local-kms in tests; the regional endpoint when absent. */
  endpoint?: string | undefined;
  /** Attempts per call, the SDK's retries of throttling and 5xx included. Default 3. */
  maxAttempts?: number | undefined;
}

/** What KMS key specs sign which JWS algorithm, and with which KMS signing algorithm. */
const algorithms: Record<string, { alg: SigningAlgorithm; kms: SigningAlgorithmSpec }> = {
  ECC_NIST_P256: { alg: "ES256", kms: "ECDSA_SHA_256" },
  RSA_2048: { alg: "RS256", kms: "RSASSA_PKCS1_V1_5_SHA_256" },
  RSA_3072: { alg: "RS256", kms: "RSASSA_PKCS1_V1_5_SHA_256" },
  RSA_4096: { alg: "RS256", kms: "RSASSA_PKCS1_V1_5_SHA_256" },
};
const kmsAlgorithm = (alg: SigningAlgorithm): SigningAlgorithmSpec =>
  alg === "ES256" ? "ECDSA_SHA_256" : "RSASSA_PKCS1_V1_5_SHA_256";

/** Codes retrying can fix: KMS is busy or briefly without the key, or its answer never came. */
const transientCodes = new Set([
  "ThrottlingException",
  "KMSInternalException",
  "DependencyTimeoutException",
  "KeyUnavailableException",
  "ServiceUnavailableException",
]);

/**
 * KMS could not sign or describe the key. `reason` is the run's failure reason when a run
 * needed the key; `transient` errors are retried (the queue's backoff, bounded by the run's
 * timeout) and never end a run by themselves.
 */
export class KmsKeyError extends Error {
  readonly reason = "SigningKeyUnavailable";
  readonly code: string;
  readonly transient: boolean;
  constructor(message: string, code: string, transient: boolean, cause?: unknown) {
    super(message, { cause });
    this.name = "KmsKeyError";
    this.code = code;
    this.transient = transient;
  }
}

const isKmsError = (err: unknown): err is KMSServiceException => err instanceof KMSServiceException;

/** A KMS call's failure as a KmsKeyError: transient (retried) or a refusal (ends the run). */
export function kmsFailure(err: unknown, doing: string): KmsKeyError {
  if (err instanceof Error && err.name === "CredentialsProviderError") {
    return new KmsKeyError(
      `the controller has no AWS credentials for KMS ${doing}: ${err.message}; give its ServiceAccount an IAM role (IRSA or Pod Identity) or AWS_* environment variables`,
      "NoCredentials",
      false,
      err,
    );
  }
  if (!isKmsError(err)) {
    const why = err instanceof Error ? err.message : String(err);
    return new KmsKeyError(`KMS did not answer ${doing}: ${why}`, "Unreachable", true, err);
  }
  const transient = transientCodes.has(err.name) || (err.$metadata.httpStatusCode ?? 0) >= 500;
  const advice = transient
    ? "it will be tried again"
    : "the platform operator must fix the key or the controller's kms-key-id setting and its IAM permissions " +
      "(kms:DescribeKey, kms:GetPublicKey, kms:Sign)";
  return new KmsKeyError(
    `KMS refused ${doing}: ${err.name}: ${err.message}; ${advice}`,
    err.name,
    transient,
    err,
  );
}

/** Why a key cannot sign tokens, or undefined when it can. */
export function unusableKey(meta: KeyMetadata): string | undefined {
  if (meta.KeyUsage !== "SIGN_VERIFY")
    return `its key usage is ${meta.KeyUsage ?? "unknown"}, not SIGN_VERIFY`;
  const spec = meta.KeySpec ?? "unknown";
  const wanted = algorithms[spec];
  if (!wanted) {
    return `its key spec is ${spec}; tokens are signed with ECC_NIST_P256 (ES256) or RSA_2048/3072/4096 (RS256)`;
  }
  if (!(meta.SigningAlgorithms ?? []).includes(wanted.kms)) return `it does not offer ${wanted.kms}`;
  if (meta.KeyState !== "Enabled") return `its state is ${meta.KeyState ?? "unknown"}, not Enabled`;
  return undefined;
}

export interface KmsKeys {
  /** Where the keys are, for logs and messages (no secret in it). */
  readonly location: string;
  /** The key the configured alias or ARN names now, checked to be a usable signing key. */
  resolve(): Promise<KmsTarget>;
  /** KMS's own public key for a key ARN (cached: it never changes). */
  publicKey(arn: string): Promise<KmsTarget>;
  signer(key: { kid: string; alg: SigningAlgorithm; kmsKeyArn: string }): SigningKey;
  destroy(): void;
}

export function kmsKeys(conn: KmsConnection, client?: KMSClient): KmsKeys {
  const kms =
    client ??
    new KMSClient({
      region: conn.region,
      maxAttempts: conn.maxAttempts ?? 3,
      ...(conn.endpoint ? { endpoint: conn.endpoint } : {}),
    });
  const location = `KMS key ${conn.keyId} (${conn.endpoint ?? conn.region})`;
  // Public keys never change: one GetPublicKey per key for the life of the process.
  const publicKeys = new Map<string, Promise<KmsTarget>>();
  const fetchPublicKey = async (arn: string): Promise<KmsTarget> => {
    let answer;
    try {
      answer = await kms.send(new GetPublicKeyCommand({ KeyId: arn }));
    } catch (err) {
      throw kmsFailure(err, `GetPublicKey on ${arn}`);
    }
    const alg = algorithms[answer.KeySpec ?? ""]?.alg;
    if (!answer.PublicKey || !alg || answer.KeyId !== arn) {
      throw new KmsKeyError(`KMS returned no usable public key for ${arn}`, "NoPublicKey", false);
    }
    const publicJwk = await spkiToJwk(answer.PublicKey, alg);
    return { kid: await calculateJwkThumbprint(publicJwk, "sha256"), alg, kmsKeyArn: arn, publicJwk };
  };
  const publicKey = (arn: string): Promise<KmsTarget> => {
    let known = publicKeys.get(arn);
    if (!known) {
      known = fetchPublicKey(arn);
      publicKeys.set(arn, known);
      known.catch(() => publicKeys.delete(arn));
    }
    return known;
  };
  return {
    location,
    async resolve() {
      let meta: KeyMetadata | undefined;
      try {
        meta = (await kms.send(new DescribeKeyCommand({ KeyId: conn.keyId }))).KeyMetadata;
      } catch (err) {
        throw kmsFailure(err, `DescribeKey on ${conn.keyId}`);
      }
      if (!meta?.Arn) throw new KmsKeyError(`KMS described ${conn.keyId} without an ARN`, "NoArn", true);
      const why = unusableKey(meta);
      if (why) {
        throw new KmsKeyError(
          `kms-key-id ${conn.keyId} names KMS key ${meta.Arn}, which cannot sign tokens: ${why}`,
          "UnusableKey",
          false,
        );
      }
      return publicKey(meta.Arn);
    },
    publicKey,
    signer({ kid, alg, kmsKeyArn }) {
      return {
        kid,
        alg,
        async sign(input) {
          let signature: Uint8Array | undefined;
          try {
            signature = (
              await kms.send(
                new SignCommand({
                  KeyId: kmsKeyArn,
                  Message: createHash("sha256").update(input).digest(),
                  MessageType: "DIGEST",
                  SigningAlgorithm: kmsAlgorithm(alg),
                }),
              )
            ).Signature;
          } catch (err) {
            throw kmsFailure(err, `Sign with ${kmsKeyArn}`);
          }
          if (!signature)
            throw new KmsKeyError(`KMS returned no signature from ${kmsKeyArn}`, "NoSignature", true);
          return alg === "ES256" ? derToJoseSignature(signature, 32) : signature;
        },
      };
    },
    destroy: () => kms.destroy(),
  };
}

/** A DER SubjectPublicKeyInfo (what GetPublicKey returns) as the public members of a JWK. */
export async function spkiToJwk(spki: Uint8Array, alg: SigningAlgorithm): Promise<PublicParts> {
  const body = Buffer.from(spki)
    .toString("base64")
    .replace(/.{1,64}/g, "$&\n");
  const pem = `-----BEGIN PUBLIC KEY-----\n${body}-----END PUBLIC KEY-----`;
  const jwk = await exportJWK(await importSPKI(pem, alg, { extractable: true }));
  if (jwk.kty === "EC") return { kty: "EC", crv: jwk.crv, x: jwk.x, y: jwk.y };
  if (jwk.kty === "RSA") return { kty: "RSA", n: jwk.n, e: jwk.e };
  throw new Error(`unexpected public key type ${jwk.kty ?? "unknown"}`);
}

/**
 * An ECDSA signature as DER (SEQUENCE { INTEGER r, INTEGER s }) to JWS's fixed-width R||S
 * (RFC 7518 section 3.4): each integer without its sign byte, left-padded to `size` bytes.
 */
export function derToJoseSignature(der: Uint8Array, size: number): Uint8Array {
  const fail = (why: string): never => {
    throw new Error(`not a DER ECDSA signature: ${why}`);
  };
  let at = 0;
  const byte = () => (at < der.length ? (der[at++] as number) : fail("truncated"));
  const length = () => {
    const first = byte();
    if (first < 0x80) return first;
    const count = first & 0x7f;
    if (count === 0 || count > 2) fail("bad length");
    let n = 0;
    for (let i = 0; i < count; i++) n = n * 256 + byte();
    return n;
  };
  if (byte() !== 0x30) fail("no SEQUENCE");
  if (length() !== der.length - at) fail("SEQUENCE length does not match");
  const out = new Uint8Array(size * 2);
  for (const half of [0, 1]) {
    if (byte() !== 0x02) fail("no INTEGER");
    const n = length();
    if (n === 0 || at + n > der.length) fail("bad INTEGER length");
    let value = der.subarray(at, at + n);
    at += n;
    if (value[0] === 0 && value.length > 1) value = value.subarray(1);
    if (value.length > size) fail(`INTEGER longer than ${size} bytes`);
    out.set(value, half * size + size - value.length);
  }
  if (at !== der.length) fail("trailing bytes");
  return out;
}
