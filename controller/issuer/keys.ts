// Signing keys and the rules of their life: generated, published ahead of use ("next"), used for
// signing ("active"), kept for verification ("retired"), then pruned. A retired key keeps only its
// public half: whoever reads the stored set later cannot sign with a key that no longer signs.
// The functions that decide a key set's next state are pure; time is always passed in.
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import type { JSONSchemaType, ValidateFunction } from "ajv";
import { validateKeySet as generatedKeySetValidator } from "./key-set.generated.ts";

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
  /** Private JWK of a next or active key: never logged, never served, dropped at retirement. */
  privateJwk?: PrivateJwk | undefined;
  /** Public JWK of a retired key, kept so its tokens verify until they expire; every KMS key's. */
  publicJwk?: PublicParts | undefined;
  /** The KMS key that holds the private half (KMS store): its ARN, never an alias. */
  kmsKeyArn?: string | undefined;
}

/** The public members of a JWK (EC: crv, x, y; RSA: n, e). */
export interface PublicParts {
  kty: string;
  crv?: string | undefined;
  x?: string | undefined;
  y?: string | undefined;
  n?: string | undefined;
  e?: string | undefined;
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

function publicParts(jwk: PublicParts): PublicParts {
  // Built member by member rather than by deleting private ones, so nothing new can slip through.
  return jwk.kty === "RSA"
    ? { kty: jwk.kty, n: jwk.n, e: jwk.e }
    : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
}

function keyPublicParts(key: StoredKey): PublicParts {
  const jwk = key.privateJwk ?? key.publicJwk;
  if (!jwk) throw new Error(`key ${key.kid} has neither a private nor a public JWK`);
  return publicParts(jwk);
}

export function publicJwk(key: StoredKey): PublicJwk {
  return { ...keyPublicParts(key), kid: key.kid, alg: key.alg, use: "sig" };
}

/** The key as it is kept once it no longer signs: its public half only. */
export function retire(key: StoredKey, at: string): StoredKey {
  const { kid, alg, createdAt, activatedAt, kmsKeyArn } = key;
  return {
    kid,
    alg,
    state: "retired",
    createdAt,
    ...(activatedAt ? { activatedAt } : {}),
    ...(kmsKeyArn ? { kmsKeyArn } : {}),
    retiredAt: key.retiredAt ?? at,
    publicJwk: keyPublicParts(key),
  };
}

/**
 * The key set without the private half of any retired key (as older versions stored them), or
 * `undefined` when there is none to drop.
 */
export function dropRetiredPrivateKeys(set: KeySet): KeySet | undefined {
  if (!set.keys.some((k) => k.state === "retired" && k.privateJwk)) return undefined;
  return {
    version: 1,
    keys: set.keys.map((k) =>
      k.state === "retired" && k.privateJwk ? retire(k, k.retiredAt ?? k.createdAt) : k,
    ),
  };
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

/** When the key began signing, in Unix seconds. */
export function keyActivatedAt(key: StoredKey): number {
  return Date.parse(key.activatedAt ?? key.createdAt) / 1000;
}

/** `kid` starts signing at `now`; the key that signed until then is retired. */
export function promote(keys: StoredKey[], kid: string, now: Date): StoredKey[] {
  const at = now.toISOString();
  return keys.map((k) =>
    k.state === "active" ? retire(k, at) : k.kid === kid ? { ...k, state: "active", activatedAt: at } : k,
  );
}

/** The keys without retired ones whose tokens have all expired by `now`. */
export function unexpired(keys: StoredKey[], now: Date, retentionSeconds: number): StoredKey[] {
  return keys.filter(
    (k) => k.state !== "retired" || seconds(k.retiredAt ?? k.createdAt, now) < retentionSeconds,
  );
}

/** Seconds from an ISO time to `now`. */
export const secondsSince = (from: string, now: Date): number => seconds(from, now);

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
  const custody = dropRetiredPrivateKeys(set);
  let keys = unexpired((custody ?? set).keys, now, policy.retentionSeconds);
  let changed = custody !== undefined || keys.length !== set.keys.length;
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
    keys = promote(keys, next.kid, now);
    changed = true;
  }
  return changed ? { version: 1, keys } : undefined;
}

const optionalString = { type: "string", nullable: true } as const;
const publicMembers = {
  kty: { type: "string" },
  crv: optionalString,
  x: optionalString,
  y: optionalString,
  n: optionalString,
  e: optionalString,
} as const;

export const keySetSchema: JSONSchemaType<KeySet> = {
  type: "object",
  required: ["version", "keys"],
  properties: {
    version: { type: "integer", const: 1 },
    keys: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        required: ["kid", "alg", "state", "createdAt"],
        properties: {
          kid: { type: "string", minLength: 1 },
          alg: { type: "string", enum: ["ES256", "RS256"] },
          state: { type: "string", enum: ["next", "active", "retired"] },
          createdAt: { type: "string", format: "date-time" },
          activatedAt: { type: "string", format: "date-time", nullable: true },
          retiredAt: { type: "string", format: "date-time", nullable: true },
          kmsKeyArn: { type: "string", nullable: true, pattern: "^arn:aws[a-z-]*:kms:" },
          publicJwk: {
            type: "object",
            nullable: true,
            required: ["kty"],
            properties: publicMembers,
          },
          privateJwk: {
            type: "object",
            nullable: true,
            required: ["kty", "d"],
            properties: {
              ...publicMembers,
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

/** keySetSchema, compiled ahead of time by ajv (hack/validators.ts). */
const validateKeySet = generatedKeySetValidator as unknown as ValidateFunction<KeySet>;

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
  for (const key of parsed.keys) {
    if (key.privateJwk && key.kmsKeyArn) throw new Error(`has key ${key.kid} both in KMS and in the set`);
    if (key.state !== "retired" && !key.privateJwk && !(key.kmsKeyArn && key.publicJwk))
      throw new Error(`has ${key.state} key ${key.kid} without its private JWK or KMS key`);
    if (!key.privateJwk && !key.publicJwk) throw new Error(`has key ${key.kid} without a JWK`);
  }
  return parsed;
}

export function serializeKeySet(set: KeySet): string {
  return JSON.stringify(set);
}
