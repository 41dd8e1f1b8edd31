// Rotation when the private keys live in AWS KMS. KMS does not rotate asymmetric keys itself, so
// the operator does: a new key, then UpdateAlias. Every maintenance pass resolves the configured
// alias (or ARN) to its key, the "target", and this pure step decides what the shared key set
// becomes: a new target is published as "next" and the active key keeps signing until the
// publish lead has passed; then the target signs and the old key is retired, published until
// every token it signed has expired. The set holds public keys, KMS ARNs, states and times only.
import {
  activeKey,
  promote,
  secondsSince,
  unexpired,
  type KeySet,
  type RotationPolicy,
  type StoredKey,
} from "./keys.ts";

/** The key the configured alias or ARN resolves to now, with its public half. */
export interface KmsTarget {
  kid: string;
  alg: StoredKey["alg"];
  kmsKeyArn: string;
  publicJwk: NonNullable<StoredKey["publicJwk"]>;
}

export type KmsPolicy = Pick<RotationPolicy, "publishLeadSeconds" | "retentionSeconds">;

const asKey = (target: KmsTarget, state: StoredKey["state"], at: string): StoredKey => ({
  kid: target.kid,
  alg: target.alg,
  state,
  createdAt: at,
  ...(state === "active" ? { activatedAt: at } : {}),
  kmsKeyArn: target.kmsKeyArn,
  publicJwk: target.publicJwk,
});

/** The first key set: nothing signed before, so the target signs at once. */
export function firstKmsKeySet(target: KmsTarget, now: Date): KeySet {
  return { version: 1, keys: [asKey(target, "active", now.toISOString())] };
}

/**
 * The key set after one pass at `now` with the alias resolving to `target`, or `undefined` when
 * nothing changes. A target that is already retired is not brought back: the alias pointing at an
 * old key is most likely a replica with an older configuration, and a flip-flop between two keys
 * would restart the lead on every pass. A "next" key the alias no longer points at never signed,
 * so it is dropped.
 */
export function kmsRotationStep(
  set: KeySet,
  target: KmsTarget,
  now: Date,
  policy: KmsPolicy,
): KeySet | undefined {
  const at = now.toISOString();
  let keys = unexpired(set.keys, now, policy.retentionSeconds);
  let changed = keys.length !== set.keys.length;
  const active = activeKey({ version: 1, keys });
  const next = keys.find((k) => k.state === "next");
  const isTarget = (k: StoredKey) => k.kmsKeyArn === target.kmsKeyArn;

  if (isTarget(active)) {
    if (next) {
      keys = keys.filter((k) => k !== next);
      changed = true;
    }
    return changed ? { version: 1, keys } : undefined;
  }
  if (keys.some((k) => k.state === "retired" && isTarget(k))) {
    return changed ? { version: 1, keys } : undefined;
  }
  let candidate = next;
  if (!candidate || !isTarget(candidate)) {
    candidate = asKey(target, "next", at);
    keys = [...keys.filter((k) => k.state !== "next"), candidate];
    changed = true;
  }
  if (secondsSince(candidate.createdAt, now) >= policy.publishLeadSeconds) {
    keys = promote(keys, candidate.kid, now);
    changed = true;
  }
  return changed ? { version: 1, keys } : undefined;
}

/** Whether the target is a key the set retired (for a warning: it will not sign again). */
export const targetRetired = (set: KeySet, target: KmsTarget): boolean =>
  set.keys.some((k) => k.state === "retired" && k.kmsKeyArn === target.kmsKeyArn);
