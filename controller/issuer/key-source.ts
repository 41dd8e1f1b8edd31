// Where the private keys are and how the key set changes. The Secret store generates keys and
// keeps them in the set (keys.ts); the KMS store follows the key the configured alias names
// (kms-rotation.ts), keeps a public-only set, and signs through KMS (kms.ts).
import { calculateJwkThumbprint } from "jose";
import type { Logger } from "pino";
import type { Kube } from "../kube-client.ts";
import { IssuerConfigError } from "./claims.ts";
import { configMapKeyStore, secretKeyStore, type KeyStore } from "./key-store.ts";
import {
  dropRetiredPrivateKeys,
  generateKey,
  rotationStep,
  type KeySet,
  type RotationPolicy,
  type SigningAlgorithm,
  type StoredKey,
} from "./keys.ts";
import { kmsKeys, KmsKeyError, type KmsConnection, type KmsKeys } from "./kms.ts";
import { firstKmsKeySet, kmsRotationStep, targetRetired, type KmsTarget } from "./kms-rotation.ts";
import { importSigningKey, type SigningKey } from "./tokens.ts";

/** Where the key set is stored, and the KMS key when the private keys are in KMS. */
export interface SourceOptions {
  kube?: Kube | undefined;
  namespace?: string | undefined;
  secretName?: string | undefined;
  store?: KeyStore | undefined;
  kms?: (KmsConnection & { keys?: KmsKeys | undefined }) | undefined;
}

/**
 * Where the private keys are and how the key set changes: the Secret store generates keys and
 * keeps them in the set; the KMS store follows the key the configured alias names.
 */
export interface KeySource {
  store: KeyStore;
  /** The first key set, for an empty store. */
  first(now: Date): Promise<KeySet>;
  /** One scheduled step; `undefined` when nothing changes. */
  step(keys: KeySet, now: Date): Promise<KeySet | undefined>;
  /** On start and reload: repairs a set needs; `undefined` when none. */
  check(keys: KeySet): Promise<KeySet | undefined>;
  /** Start-up checks the key's holder (KMS) first: until it answers, the issuer is not ready. */
  checkOnStart: boolean;
  /**
   * The keys to sign with and publish, from a set as stored: the KMS store publishes only keys
   * whose public half KMS itself returns, so whoever can write the set cannot add a key of their own.
   */
  served?: (keys: KeySet) => Promise<KeySet>;
  signer(key: StoredKey): Promise<SigningKey>;
}

export function secretSource(
  options: SourceOptions,
  algorithm: SigningAlgorithm,
  policy: RotationPolicy,
): KeySource {
  const store =
    options.store ??
    (options.kube && options.namespace
      ? secretKeyStore(options.kube, options.namespace, options.secretName)
      : undefined);
  if (!store) throw new IssuerConfigError("the issuer needs a key store");
  return {
    store,
    first: async (now) => ({ version: 1, keys: [await generateKey(algorithm, now, "active")] }),
    step: (keys, now) => rotationStep(keys, now, policy, () => generateKey(algorithm, now, "next")),
    // A set stored by an older version may still hold retired private keys: drop them on sight.
    check: (keys) => Promise.resolve(dropRetiredPrivateKeys(keys)),
    checkOnStart: false,
    signer: importSigningKey,
  };
}

/**
 * Keys in KMS: the set follows the key the alias names (kms-rotation.ts), and it holds nothing
 * private, so it lives in a ConfigMap that every replica reads and writes conditionally.
 */
export function kmsSource(options: SourceOptions, policy: RotationPolicy, log: Logger): KeySource {
  if (!options.kms) throw new IssuerConfigError("no KMS key configured");
  const kms = options.kms.keys ?? kmsKeys(options.kms);
  const store =
    options.store ??
    (options.kube && options.namespace
      ? configMapKeyStore(options.kube, options.namespace, options.secretName)
      : undefined);
  if (!store) throw new IssuerConfigError("the KMS key store needs a namespace for its key set");
  return {
    store,
    first: async (now) => firstKmsKeySet(await kms.resolve(), now),
    async step(keys, now) {
      const target = await kms.resolve();
      if (targetRetired(keys, target)) {
        log.warn(
          { kmsKeyArn: target.kmsKeyArn, kid: target.kid },
          "the KMS alias names a key that was retired; it will not sign again: create a new key to rotate",
        );
      }
      return kmsRotationStep(keys, target, now, policy);
    },
    check: () => Promise.resolve(undefined),
    checkOnStart: true,
    served: (keys) => keysKmsVouchesFor(keys, kms, store.location, log),
    signer(key) {
      if (!key.kmsKeyArn) {
        return Promise.reject(new IssuerConfigError(`key ${key.kid} in ${store.location} is not a KMS key`));
      }
      return Promise.resolve(kms.signer({ kid: key.kid, alg: key.alg, kmsKeyArn: key.kmsKeyArn }));
    },
  };
}

/**
 * The keys of a stored set that KMS vouches for: each names a KMS key ARN whose public key, as
 * GetPublicKey returns it, is the one stored (and its thumbprint the kid). Others are left out of
 * the JWKS with a warning; a retired key KMS no longer serves (disabled or deleted) too, so keep
 * an old key enabled until it is pruned. No active key left means nothing can sign.
 */
async function keysKmsVouchesFor(keys: KeySet, kms: KmsKeys, location: string, log: Logger): Promise<KeySet> {
  const vouched: StoredKey[] = [];
  for (const key of keys.keys) {
    const leave = (why: string) =>
      log.warn({ kid: key.kid, kmsKeyArn: key.kmsKeyArn, state: key.state }, `key not published: ${why}`);
    if (!key.kmsKeyArn || !key.publicJwk) {
      leave(`${location} holds it without a KMS key ARN`);
      continue;
    }
    let truth: KmsTarget;
    try {
      truth = await kms.publicKey(key.kmsKeyArn);
    } catch (err) {
      if (!(err instanceof KmsKeyError) || err.transient || key.state !== "retired") throw err;
      leave(`KMS no longer serves its public key (${err.code})`);
      continue;
    }
    const stored = await calculateJwkThumbprint({ ...key.publicJwk }, "sha256");
    if (truth.kid !== key.kid || stored !== key.kid) {
      leave(`its public key in ${location} is not the one KMS holds for ${key.kmsKeyArn}`);
      continue;
    }
    vouched.push(key);
  }
  if (!vouched.some((k) => k.state === "active")) {
    throw new KmsKeyError(
      `the active key in ${location} does not match its KMS key: delete the ConfigMap's key set to start over from kms-key-id`,
      "KeySetMismatch",
      false,
    );
  }
  return { version: 1, keys: vouched };
}
