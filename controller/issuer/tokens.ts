// Signing one token for one run. Every claim is checked against AWS's limits first. The compact
// JWS is assembled here and only its signing input goes to the key, so a key held elsewhere (KMS)
// signs exactly what an in-process key would.
import { createPrivateKey, randomBytes, sign } from "node:crypto";
import {
  assertedFacts,
  assertedSessionTags,
  checkAudience,
  checkLifetime,
  checkSessionTags,
  checkSourceIdentity,
  checkTokenSize,
  renderSubject,
  sessionTagsClaim,
  sourceIdentityClaim,
  tagsClaim,
  tenantSuppliedFacts,
  unverifiedClaim,
  type RunFacts,
} from "./claims.ts";
import type { SigningAlgorithm, StoredKey } from "./keys.ts";

export interface TokenRequest {
  facts: RunFacts;
  /** `aud`, from the trait's `audience`. */
  audience: string;
  /** From the trait's `tokenExpirationSeconds`; the issuer's default when absent. */
  lifetimeSeconds?: number | undefined;
  /**
   * AWS session tags (`aws.sessionTags`, as the policy allowed them), sent in the
   * `https://aws.amazon.com/tags` claim beside the tags the issuer asserts from the facts.
   */
  sessionTags?: Readonly<Record<string, string>> | undefined;
  transitiveTagKeys?: readonly string[] | undefined;
  /** AWS source identity: a per-run id that CloudTrail records and role chaining keeps. */
  sourceIdentity?: string | undefined;
  /** The operator policy's subject template for this run; the issuer's own when absent. */
  subjectTemplate?: string | undefined;
  /** The policy lets the template use tenant-supplied facts. */
  allowTenantSuppliedSubjectFacts?: boolean | undefined;
  /** Signing time; the clock when absent. */
  now?: Date | undefined;
}

export interface IssuedToken {
  /** The compact JWS. Secret: never log it, never put it in status. */
  token: string;
  jti: string;
  kid: string;
  issuedAt: Date;
  expiresAt: Date;
  subject: string;
  audience: string;
}

export interface TokenSettings {
  issuer: string;
  subjectTemplate: string;
  defaultLifetimeSeconds: number;
  maxLifetimeSeconds: number;
  /** How far before `iat` the token becomes valid, for verifiers whose clocks run behind. */
  notBeforeSkewSeconds: number;
}

export interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  /** The JWS signature over `input` (ES256: raw R||S, RS256: PKCS #1 v1.5). */
  sign(input: Uint8Array): Promise<Uint8Array>;
}

/** A key whose private half is in this process (the Secret store). */
export function importSigningKey(stored: StoredKey): Promise<SigningKey> {
  if (!stored.privateJwk) throw new Error(`key ${stored.kid} has no private part: it cannot sign`);
  const key = createPrivateKey({ key: { ...stored.privateJwk }, format: "jwk" });
  if (key.asymmetricKeyType !== (stored.alg === "ES256" ? "ec" : "rsa")) {
    throw new Error(`key ${stored.kid} is not an ${stored.alg} key`);
  }
  return Promise.resolve({
    kid: stored.kid,
    alg: stored.alg,
    // JWS wants ECDSA signatures as R||S, not DER (RFC 7518 section 3.4).
    sign: (input) => Promise.resolve(sign("sha256", input, { key, dsaEncoding: "ieee-p1363" })),
  });
}

const base64url = (data: Uint8Array | string) => Buffer.from(data).toString("base64url");

export async function signToken(
  signing: SigningKey,
  request: TokenRequest,
  settings: TokenSettings,
): Promise<IssuedToken> {
  const subject = renderSubject(
    request.subjectTemplate ?? settings.subjectTemplate,
    request.facts,
    request.allowTenantSuppliedSubjectFacts ?? false,
  );
  checkAudience(request.audience);
  const lifetime = request.lifetimeSeconds ?? settings.defaultLifetimeSeconds;
  checkLifetime(lifetime, settings.maxLifetimeSeconds);
  const transitive = request.transitiveTagKeys ?? [];
  const asserted = assertedSessionTags(request.facts);
  checkSessionTags(request.sessionTags ?? {}, transitive, asserted);
  const tags = { ...request.sessionTags, ...asserted };
  if (request.sourceIdentity !== undefined) checkSourceIdentity(request.sourceIdentity);

  const iat = Math.floor((request.now ?? new Date()).getTime() / 1000);
  const exp = iat + lifetime;
  const jti = randomBytes(16).toString("base64url");
  const claims: Record<string, unknown> = {};
  for (const name of assertedFacts) {
    const value = request.facts[name];
    if (value !== undefined && value !== "") claims[name] = value;
  }
  const unverified: Record<string, string> = {};
  for (const name of tenantSuppliedFacts) {
    const value = request.facts[name];
    if (value !== undefined && value !== "") unverified[name] = value;
  }
  if (Object.keys(unverified).length > 0) claims[unverifiedClaim] = unverified;
  if (Object.keys(tags).length > 0) claims[tagsClaim] = sessionTagsClaim(tags, transitive);
  if (request.sourceIdentity !== undefined) claims[sourceIdentityClaim] = request.sourceIdentity;

  const header = { alg: signing.alg, kid: signing.kid, typ: "JWT" };
  const payload = {
    ...claims,
    iss: settings.issuer,
    sub: subject,
    aud: request.audience,
    iat,
    nbf: iat - settings.notBeforeSkewSeconds,
    exp,
    jti,
  };
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
  const token = `${input}.${base64url(await signing.sign(Buffer.from(input, "ascii")))}`;
  checkTokenSize(token);
  return {
    token,
    jti,
    kid: signing.kid,
    issuedAt: new Date(iat * 1000),
    expiresAt: new Date(exp * 1000),
    subject,
    audience: request.audience,
  };
}
