// Web identity token verification as STS does it for an IAM OIDC provider: find the provider by
// `iss`, fetch the discovery document and then the JWKS over HTTP, verify the signature with the
// `kid`, then check `aud`, `sub` and the validity window with IAM's five minutes of clock-skew
// tolerance. By default nothing is cached, so a test that takes the issuer down sees the failure at
// once; with a key cache, the JWKS is kept as long as its Cache-Control max-age allows (as STS does)
// and fetched again when a token names a key it does not hold.
import { compactVerify, createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors } from "jose";
import type { JSONWebKeySet, JWTPayload } from "jose";
import { AwsError } from "./wire.ts";
import type { OidcProvider } from "./state.ts";

export const VERIFICATION_KEY_UNAVAILABLE =
  "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements";

const NOT_A_JWT =
  "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)";
const ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"];
const SKEW_SECONDS = 300;
export const TAGS_CLAIM = "https://aws.amazon.com/tags";
export const SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity";

export interface VerifiedToken {
  provider: OidcProvider;
  claims: JWTPayload;
  subject: string;
  /** The audience IAM matched against the provider's client ids (the `azp` when there is one). */
  audience: string;
  audiences: string[];
}

function invalid(message: string): AwsError {
  return new AwsError("InvalidIdentityToken", message);
}

/** `https://host/path` -> `host/path`: the provider ARN's resource and the condition key prefix. */
export function issuerHostPath(url: string): string {
  return url.replace(/^https?:\/\//, "").replace(/\/$/, "");
}

/** Key sets fetched earlier, by issuer, and until when (ms since the epoch) each may be used. */
export type KeyCache = Map<string, { keys: JSONWebKeySet; until: number }>;

async function fetchJson(url: string, timeoutMs: number): Promise<{ body: unknown; maxAgeS: number }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  const control = response.headers.get("cache-control") ?? "";
  const maxAge = /(?:^|[,\s])max-age=(\d+)/.exec(control)?.[1];
  const cacheable = maxAge !== undefined && !/no-cache|no-store/.test(control);
  return { body: await response.json(), maxAgeS: cacheable ? Number(maxAge) : 0 };
}

/** The issuer's key set: held in the cache while fresh and holding `kid`, else fetched. */
async function fetchKeys(
  issuer: string,
  timeoutMs: number,
  at: Date,
  cache?: KeyCache,
  kid?: string,
): Promise<JSONWebKeySet> {
  const held = cache?.get(issuer);
  const known = held?.keys.keys.some((k) => kid === undefined || k.kid === kid);
  if (held && known && held.until > at.getTime()) return held.keys;
  try {
    const discovery = await fetchJson(
      `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`,
      timeoutMs,
    );
    const jwksUri = (discovery.body as { jwks_uri?: unknown }).jwks_uri;
    if (typeof jwksUri !== "string") throw new Error("no jwks_uri");
    const fetched = await fetchJson(jwksUri, timeoutMs);
    const jwks = fetched.body as { keys?: unknown };
    if (!Array.isArray(jwks.keys)) throw new Error("no keys");
    const maxAgeS = Math.min(discovery.maxAgeS, fetched.maxAgeS);
    if (cache && maxAgeS > 0)
      cache.set(issuer, { keys: jwks as JSONWebKeySet, until: at.getTime() + maxAgeS * 1000 });
    return jwks as JSONWebKeySet;
  } catch {
    throw invalid(VERIFICATION_KEY_UNAVAILABLE);
  }
}

async function verifySignature(token: string, keys: JSONWebKeySet): Promise<void> {
  try {
    await compactVerify(token, createLocalJWKSet(keys), { algorithms: ALGORITHMS });
  } catch (err) {
    // STS reports a kid it cannot find among the issuer's keys as a key it could not retrieve.
    if (err instanceof errors.JWKSNoMatchingKey) throw invalid(VERIFICATION_KEY_UNAVAILABLE);
    if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
      throw invalid("The token's signing algorithm is not supported");
    }
    throw invalid("The signature of the ID token could not be verified");
  }
}

/** A NumericDate claim; tokens are decoded unchecked, so a string or garbage reads as NaN. */
function numericClaim(claims: JWTPayload, name: string): number | undefined {
  const raw: unknown = claims[name];
  return raw === undefined ? undefined : Number(raw);
}

function requireClaim(claims: JWTPayload, name: string): void {
  if (claims[name] === undefined) throw invalid(`Missing a required claim: ${name}`);
}

export async function verifyWebIdentityToken(
  token: string,
  /** The providers registered in the role's account, by issuer host and path. */
  providers: Map<string, OidcProvider>,
  now: Date,
  fetchTimeoutMs: number,
  /** Where key sets are kept between calls; none, and every call fetches them. */
  cache?: KeyCache,
): Promise<VerifiedToken> {
  let claims: JWTPayload;
  let kid: string | undefined;
  try {
    kid = decodeProtectedHeader(token).kid;
    claims = decodeJwt(token);
  } catch {
    throw invalid(NOT_A_JWT);
  }
  requireClaim(claims, "iss");
  const iss = String(claims.iss);
  const provider = providers.get(issuerHostPath(iss));
  if (!provider) throw invalid(`No OpenIDConnect provider found in your account for ${iss}`);

  await verifySignature(token, await fetchKeys(provider.url, fetchTimeoutMs, now, cache, kid));

  requireClaim(claims, "aud");
  requireClaim(claims, "sub");
  requireClaim(claims, "exp");
  const audiences = Array.isArray(claims.aud) ? claims.aud : [String(claims.aud)];
  const azp = typeof claims.azp === "string" ? claims.azp : undefined;
  const audience = azp ?? audiences.find((a) => provider.audiences.includes(a));
  if (audience === undefined || !provider.audiences.includes(audience)) {
    throw invalid("Incorrect token audience");
  }
  const nowSeconds = Math.floor(now.getTime() / 1000);
  const exp = numericClaim(claims, "exp") ?? NaN;
  if (!Number.isFinite(exp)) throw invalid("The exp claim must be a NumericDate");
  if (nowSeconds > exp + SKEW_SECONDS) {
    throw new AwsError(
      "ExpiredTokenException",
      `Token expired: current date/time ${nowSeconds} must be before the expiration date/time ${exp}`,
    );
  }
  const nbf = numericClaim(claims, "nbf");
  if (nbf !== undefined && nbf > nowSeconds + SKEW_SECONDS) {
    throw invalid(`Token not yet valid: current date/time ${nowSeconds} is before nbf ${nbf}`);
  }
  const iat = numericClaim(claims, "iat");
  if (iat !== undefined && iat > nowSeconds + SKEW_SECONDS) {
    throw invalid(`Token issued in the future: iat ${iat} is after current date/time ${nowSeconds}`);
  }
  return { provider, claims, subject: String(claims.sub), audience, audiences };
}

export interface SessionClaims {
  tags: Record<string, string>;
  transitiveTagKeys: string[];
  sourceIdentity: string | undefined;
}

const TAG_KEY = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$/u;
const TAG_VALUE = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$/u;

/** Session tags and source identity carried by the token, checked against STS's limits. */
export function sessionClaims(claims: JWTPayload): SessionClaims {
  const result: SessionClaims = { tags: {}, transitiveTagKeys: [], sourceIdentity: undefined };
  const rawTags = claims[TAGS_CLAIM];
  if (rawTags !== undefined) {
    const { principal_tags: principalTags, transitive_tag_keys: transitive } = (rawTags ?? {}) as Record<
      string,
      unknown
    >;
    if (typeof principalTags !== "object" || principalTags === null || Array.isArray(principalTags)) {
      throw invalid(`The ${TAGS_CLAIM} claim must contain a principal_tags object`);
    }
    const seen = new Set<string>();
    for (const [key, value] of Object.entries(principalTags)) {
      const single = Array.isArray(value) && value.length === 1 ? (value[0] as unknown) : undefined;
      if (typeof single !== "string") {
        throw invalid(`Session tag ${key} must have exactly one string value in an array`);
      }
      if (!TAG_KEY.test(key) || !TAG_VALUE.test(single)) {
        throw invalid(`Session tag ${key} must have a key of 1..128 and a value of 0..256 valid characters`);
      }
      if (key.toLowerCase().startsWith("aws:"))
        throw invalid(`Session tag keys cannot start with aws: (${key})`);
      if (seen.has(key.toLowerCase())) throw invalid(`Duplicate session tag key (case-insensitive): ${key}`);
      seen.add(key.toLowerCase());
      result.tags[key] = single;
    }
    if (Object.keys(result.tags).length > 50) {
      throw invalid(
        `The token carries ${Object.keys(result.tags).length} session tags; at most 50 are allowed`,
      );
    }
    if (transitive !== undefined) {
      if (!Array.isArray(transitive) || !transitive.every((k) => typeof k === "string")) {
        throw invalid("transitive_tag_keys must be a list of strings");
      }
      for (const key of transitive) {
        if (!seen.has(key.toLowerCase())) throw invalid(`Transitive tag key ${key} is not a session tag`);
      }
      result.transitiveTagKeys = transitive;
    }
  }
  const source = claims[SOURCE_IDENTITY_CLAIM];
  if (source !== undefined) {
    if (typeof source !== "string" || !/^[\w+=,.@-]{2,64}$/.test(source)) {
      throw invalid("Source identity must be 2 to 64 characters of [\\w+=,.@-]");
    }
    if (source.toLowerCase().startsWith("aws:")) throw invalid("Source identity cannot start with aws:");
    result.sourceIdentity = source;
  }
  return result;
}
