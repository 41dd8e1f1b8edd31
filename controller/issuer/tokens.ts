// Signing one token for one run. Every claim is checked against AWS's limits first.
import { randomBytes } from "node:crypto";
import { importJWK, SignJWT, type CryptoKey } from "jose";
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
  key: CryptoKey;
}

export async function importSigningKey(stored: StoredKey): Promise<SigningKey> {
  if (!stored.privateJwk) throw new Error(`key ${stored.kid} has no private part: it cannot sign`);
  const key = await importJWK({ ...stored.privateJwk }, stored.alg);
  if (key instanceof Uint8Array) throw new Error(`key ${stored.kid} is not an asymmetric key`);
  return { kid: stored.kid, alg: stored.alg, key };
}

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

  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: signing.alg, kid: signing.kid, typ: "JWT" })
    .setIssuer(settings.issuer)
    .setSubject(subject)
    .setAudience(request.audience)
    .setIssuedAt(iat)
    .setNotBefore(iat - settings.notBeforeSkewSeconds)
    .setExpirationTime(exp)
    .setJti(jti)
    .sign(signing.key);
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
