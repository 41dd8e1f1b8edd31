// Signing keys and the rules of their life: generated, published ahead of use ("next"), used for
// signing ("active"), kept for verification ("retired"), then pruned. The functions that decide a
// key set's next state are pure; time is always passed in.
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import { Ajv, type JSONSchemaType } from "ajv";

export type SigningAlgorithm = "ES256" | "RS256";
export const signingAlgorithms: readonly SigningAlgorithm[] = ["ES256", "RS256"];

export type KeyState = "next" | "active" | "retired";

export interface StoredKey {
  /** RFC 7638 thumbprint (SHA-256) of the public key. */
  kid: string;
  alg: SigningAlgorithm;
  state: KeyState;
  createdAt: string;
  activatedAt?: string | undefined;
  retiredAt?: string | undefined;
  /** Private JWK: never logged, never served. */
  privateJwk: PrivateJwk;
}

export interface PrivateJwk {
  kty: string;
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
  d: string;
  p?: string;
  q?: string;
  dp?: string;
  dq?: string;
  qi?: string;
}

export interface KeySet {
  version: 1;
  keys: StoredKey[];
}

/** What a verifier sees: the public half and nothing else. */
export interface PublicJwk {
  kty: string;
  kid: string;
  alg: SigningAlgorithm;
  use: "sig";
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
}

export interface RotationPolicy {
  /** How long a key signs before it is replaced. */
  rotationIntervalSeconds: number;
  /** How long before activation the next key is already in the JWKS. */
  publishLeadSeconds: number;
  /** How long a retired key stays in the JWKS: the longest token lifetime plus a clock-skew margin. */
  retentionSeconds: number;
}

export async function generateKey(alg: SigningAlgorithm, now: Date, state: KeyState): Promise<StoredKey> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  const privateJwk = toPrivateJwk(jwk);
  const kid = await calculateJwkThumbprint(publicParts(privateJwk), "sha256");
  const at = now.toISOString();
  return { kid, alg, state, createdAt: at, ...(state === "active" ? { activatedAt: at } : {}), privateJwk };
}

function toPrivateJwk(jwk: JWK): PrivateJwk {
  if (typeof jwk.kty !== "string" || typeof jwk.d !== "string")
    throw new Error("generated key is not private");
  const { kty, crv, x, y, n, e, d, p, q, dp, dq, qi } = jwk;
  return { kty, crv, x, y, n, e, d, p, q, dp, dq, qi };
}

function publicParts(jwk: PrivateJwk): {
  kty: string;
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
} {
  // Built member by member rather than by deleting private ones, so nothing new can slip through.
  return jwk.kty === "RSA"
    ? { kty: jwk.kty, n: jwk.n, e: jwk.e }
    : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
}

export function publicJwk(key: StoredKey): PublicJwk {
  return { ...publicParts(key.privateJwk), kid: key.kid, alg: key.alg, use: "sig" };
}

export function activeKey(set: KeySet): StoredKey {
  const active = set.keys.filter((k) => k.state === "active");
  if (active.length !== 1 || !active[0])
    throw new Error(`key set has ${active.length} active keys, expected 1`);
  return active[0];
}

/** Keys a verifier must know: the active one, the next one and retired ones not yet pruned. */
export function publishedKeys(set: KeySet): StoredKey[] {
  const order: Record<KeyState, number> = { active: 0, next: 1, retired: 2 };
  return [...set.keys].sort((a, b) => order[a.state] - order[b.state]);
}

const seconds = (from: string, to: Date) => (to.getTime() - Date.parse(from)) / 1000;

export function keyAgeSeconds(key: StoredKey, now: Date): number {
  return seconds(key.activatedAt ?? key.createdAt, now);
}

/**
 * The key set after one scheduled step at `now`: prune retired keys whose tokens have all expired,
 * publish a next key when activation is `publishLeadSeconds` away, promote it once it has been
 * published that long. Returns `undefined` when nothing is due. `makeKey` is only called when a
 * key is needed.
 */
export async function rotationStep(
  set: KeySet,
  now: Date,
  policy: RotationPolicy,
  makeKey: () => Promise<StoredKey>,
): Promise<KeySet | undefined> {
  let keys = set.keys.filter(
    (k) => k.state !== "retired" || seconds(k.retiredAt ?? k.createdAt, now) < policy.retentionSeconds,
  );
  let changed = keys.length !== set.keys.length;
  const active = activeKey({ version: 1, keys });
  const activeAge = keyAgeSeconds(active, now);
  let next = keys.find((k) => k.state === "next");
  if (!next && activeAge >= policy.rotationIntervalSeconds - policy.publishLeadSeconds) {
    next = { ...(await makeKey()), state: "next", createdAt: now.toISOString() };
    keys = [...keys, next];
    changed = true;
  }
  if (
    next &&
    activeAge >= policy.rotationIntervalSeconds &&
    seconds(next.createdAt, now) >= policy.publishLeadSeconds
  ) {
    const at = now.toISOString();
    const promoted = next.kid;
    keys = keys.map((k) =>
      k.state === "active"
        ? { ...k, state: "retired", retiredAt: at }
        : k.kid === promoted
          ? { ...k, state: "active", activatedAt: at }
          : k,
    );
    changed = true;
  }
  return changed ? { version: 1, keys } : undefined;
}

const keySetSchema: JSONSchemaType<KeySet> = {
  type: "object",
  required: ["version", "keys"],
  properties: {
    version: { type: "integer", const: 1 },
    keys: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        required: ["kid", "alg", "state", "createdAt", "privateJwk"],
        properties: {
          kid: { type: "string", minLength: 1 },
          alg: { type: "string", enum: ["ES256", "RS256"] },
          state: { type: "string", enum: ["next", "active", "retired"] },
          createdAt: { type: "string", format: "date-time" },
          activatedAt: { type: "string", format: "date-time", nullable: true },
          retiredAt: { type: "string", format: "date-time", nullable: true },
          privateJwk: {
            type: "object",
            required: ["kty", "d"],
            properties: {
              kty: { type: "string" },
              crv: { type: "string", nullable: true },
              x: { type: "string", nullable: true },
              y: { type: "string", nullable: true },
              n: { type: "string", nullable: true },
              e: { type: "string", nullable: true },
              d: { type: "string" },
              p: { type: "string", nullable: true },
              q: { type: "string", nullable: true },
              dp: { type: "string", nullable: true },
              dq: { type: "string", nullable: true },
              qi: { type: "string", nullable: true },
            },
          },
        },
      },
    },
  },
};

const validateKeySet = new Ajv({
  formats: { "date-time": (s: string) => !Number.isNaN(Date.parse(s)) },
}).compile(keySetSchema);

/** Reads a stored key set, refusing anything malformed rather than signing with a guess. */
export function parseKeySet(text: string): KeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error("is not JSON");
  }
  if (!validateKeySet(parsed)) {
    const first = validateKeySet.errors?.[0];
    throw new Error(`is not a key set: ${first?.instancePath ?? ""} ${first?.message ?? ""}`.trim());
  }
  activeKey(parsed);
  if (parsed.keys.filter((k) => k.state === "next").length > 1) throw new Error("has more than one next key");
  return parsed;
}

export function serializeKeySet(set: KeySet): string {
  return JSON.stringify(set);
}
