// The issuer as the rest of the controller sees it: load (or create) the shared key set, sign
// tokens with the active key, serve the public documents, and rotate when the engine says so.
// Every replica runs one; they agree through the key store alone, so no leader is needed.
import type { IncomingMessage, ServerResponse } from "node:http";
import { pino, type Logger } from "pino";
import { checkSubjectTemplate, defaultSubjectTemplate, IssuerConfigError, limits } from "./claims.ts";
import {
  checkIssuerUrl,
  discoveryDocument,
  documentHandler,
  jwksDocument,
  type DiscoveryDocument,
  type Jwks,
} from "./documents.ts";
import { kmsSource, secretSource, type SourceOptions } from "./key-source.ts";
import type { StoredKeySet } from "./key-store.ts";
import {
  activeKey,
  keyActivatedAt,
  publicJwk,
  publishedKeys,
  signingAlgorithms,
  type KeySet,
  type RotationPolicy,
  type SigningAlgorithm,
} from "./keys.ts";
import { KmsKeyError } from "./kms.ts";
import { signToken, type IssuedToken, type SigningKey, type TokenRequest } from "./tokens.ts";

interface IssuerSettings {
  /** Public issuer URL: the `iss` claim and where verifiers fetch the documents. */
  issuerUrl: string;
  /** Algorithm for new keys; existing keys keep theirs until rotated out. Default ES256. */
  algorithm?: SigningAlgorithm;
  /** Default 7 days. */
  rotationIntervalSeconds?: number;
  /**
   * How long a new key is in the JWKS before it signs, so verifiers' caches, other replicas and
   * statically published copies know it first. Default 1 hour; 0 activates at once.
   */
  keyPublishLeadSeconds?: number;
  /** Upper bound on any token's lifetime (60..3600, default 3600); retired keys stay this long. */
  maxTokenLifetimeSeconds?: number;
  /** Lifetime when a request names none (default 600). */
  defaultTokenLifetimeSeconds?: number;
  /**
   * Extra time a retired key stays published, for verifiers' clock skew and for replicas that
   * have not reloaded yet. Keep it above the engine's reload period. Default 300.
   */
  clockSkewSeconds?: number;
  /** `nbf` = `iat` minus this (default 5). */
  notBeforeSkewSeconds?: number;
  subjectTemplate?: string;
  /** Allows http, ports and loopback issuer URLs: tests and the demo only. */
  allowInsecureIssuer?: boolean;
  logger?: Logger;
}

/**
 * Where the key set lives: a Secret (or, with `kms`, a ConfigMap) named `secretName` in
 * `namespace`, or any other `store`, e.g. `memoryKeyStore()` in unit tests. With `kms` the
 * private keys are in AWS KMS and the set holds public keys, KMS ARNs, states and times only.
 */
export type IssuerOptions = IssuerSettings & SourceOptions;

export interface RotationResult {
  /** Whether the stored key set changed in this call (by this replica). */
  changed: boolean;
  activeKid: string;
  /** Keys newly published (not yet signing). */
  published: string[];
  /** The key that started signing in this call, if any. */
  activated?: string | undefined;
  /** Retired keys removed because every token they signed has expired. */
  pruned: string[];
}

export interface Issuer {
  readonly issuerUrl: string;
  /** True once a key set is loaded: the issuer can sign and serve its documents. */
  readonly ready: boolean;
  /** Why it is not ready yet (KMS unreachable at start), for /readyz. */
  readonly notReadyReason: string | undefined;
  issueToken(request: TokenRequest): Promise<IssuedToken>;
  jwks(): Jwks;
  discovery(): DiscoveryDocument;
  /** Serves the discovery document and JWKS; false for other paths. */
  handler: (req: IncomingMessage, res: ServerResponse) => boolean;
  /** Publishes, activates and prunes keys when due; safe to call from every replica at once. */
  rotateIfDue(now?: Date): Promise<RotationResult>;
  /** Re-reads the key store to pick up other replicas' rotations; call it on a timer. */
  reload(): Promise<void>;
  /** When the active key began signing, in Unix seconds. */
  activeKeyActivatedAt(): number;
}

const maxWriteAttempts = 8;

interface Loaded {
  stored: StoredKeySet & { keys: KeySet };
  signing: SigningKey;
}

export async function createIssuer(options: IssuerOptions): Promise<Issuer> {
  const settings = checkOptions(options);
  const log = (options.logger ?? pino({ level: "silent" })).child({ component: "issuer" });
  const policy: RotationPolicy = {
    rotationIntervalSeconds: settings.rotationIntervalSeconds,
    publishLeadSeconds: settings.keyPublishLeadSeconds,
    retentionSeconds: settings.maxTokenLifetimeSeconds + settings.clockSkewSeconds,
  };
  const source = options.kms
    ? kmsSource(options, policy, log)
    : secretSource(options, settings.algorithm, policy);
  const store = source.store;

  let current: Loaded | undefined;

  // One store operation at a time per replica, so an older read never replaces a newer one.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work);
    queue = run.catch(() => undefined);
    return run;
  };

  const adopt = async (stored: StoredKeySet & { keys: KeySet }): Promise<Loaded> => {
    if (stored.version !== undefined && current?.stored.version === stored.version) return current;
    if (source.served) stored = { ...stored, keys: await source.served(stored.keys) };
    const active = activeKey(stored.keys);
    let signing = current?.signing;
    if (signing?.kid !== active.kid) {
      signing = await source.signer(active);
      if (current) log.info({ kid: active.kid, alg: active.alg }, "signing with a new active key");
    }
    current = { stored, signing };
    return current;
  };

  const hasKeys = (s: StoredKeySet): s is StoredKeySet & { keys: KeySet } => s.keys !== undefined;

  /**
   * Reads the store and applies `change` until a write sticks or nothing needs writing. When the
   * store is empty it is filled with what this replica holds (or a first key): a deleted Secret
   * comes back with the keys live tokens were signed with.
   */
  const converge = async (change: (keys: KeySet) => Promise<KeySet | undefined>) => {
    for (let attempt = 1; attempt <= maxWriteAttempts; attempt++) {
      const stored = await store.read();
      let wanted: KeySet | undefined;
      const restoring = !hasKeys(stored) && current !== undefined;
      if (hasKeys(stored)) {
        wanted = await change(stored.keys);
        if (!wanted) return { before: stored.keys, after: await adopt(stored) };
      } else if (current) {
        log.warn({ store: store.location }, "key store is empty: restoring the key set this replica holds");
        wanted = current.stored.keys;
      } else {
        wanted = await source.first(new Date());
      }
      const written = await store.write(wanted, stored.version);
      if (!written || !hasKeys(written)) {
        log.debug({ store: store.location, attempt }, "key store changed under us; re-reading");
        continue;
      }
      const after = await adopt(written);
      // A restored set has not had `change` applied yet: go round once more.
      if (restoring) continue;
      if (!hasKeys(stored)) {
        log.info({ store: store.location, kid: after.signing.kid }, "created the first signing key");
      }
      return { before: stored.keys, after };
    }
    throw new Error(`could not update ${store.location}: it kept changing (${maxWriteAttempts} attempts)`);
  };

  const loaded = () => {
    if (!current)
      throw new KmsKeyError(`the signing key is not loaded yet: ${notReady ?? "starting"}`, "NotReady", true);
    return current;
  };
  const jwks = () => jwksDocument(publishedKeys(loaded().stored.keys).map(publicJwk));
  const started = (how: string) =>
    log.info(
      { store: store.location, kid: loaded().signing.kid, keys: loaded().stored.keys.keys.length },
      how,
    );

  // KMS unreachable at start: not ready, and tried again with backoff until it answers. Anything
  // KMS refuses outright (no such key, wrong key spec, disabled) stops the start.
  let notReady: string | undefined;
  const start = () =>
    serial(() =>
      converge((keys) => (source.checkOnStart ? source.step(keys, new Date()) : source.check(keys))),
    );
  try {
    await start();
    started("issuer ready");
  } catch (err) {
    if (!(err instanceof KmsKeyError && err.transient)) throw err;
    notReady = err.message;
    log.warn(
      { store: store.location, code: err.code, err: err.message },
      "signing key unavailable at start; not ready",
    );
    const retry = (delayMs: number) => {
      setTimeout(() => {
        start()
          .then(() => {
            notReady = undefined;
            started("issuer ready: the signing key answered");
          })
          .catch((again: unknown) => {
            notReady = again instanceof Error ? again.message : String(again);
            log.warn({ store: store.location, err: notReady }, "signing key still unavailable; not ready");
            retry(Math.min(delayMs * 2, 30_000));
          });
      }, delayMs).unref();
    };
    retry(500);
  }

  return {
    issuerUrl: settings.issuerUrl,
    get ready() {
      return current !== undefined;
    },
    get notReadyReason() {
      return current ? undefined : (notReady ?? "starting");
    },
    async issueToken(request) {
      let issued: IssuedToken;
      try {
        issued = await signToken(loaded().signing, request, {
          issuer: settings.issuerUrl,
          subjectTemplate: settings.subjectTemplate,
          defaultLifetimeSeconds: settings.defaultTokenLifetimeSeconds,
          maxLifetimeSeconds: settings.maxTokenLifetimeSeconds,
          notBeforeSkewSeconds: settings.notBeforeSkewSeconds,
        });
      } catch (err) {
        if (!(err instanceof KmsKeyError)) throw err;
        log.warn(
          { code: err.code, transient: err.transient, err: err.message },
          "KMS could not sign a token",
        );
        // Only a refusal ends the run (its reason names the key); the rest is tried again.
        if (err.transient) throw new Error(err.message, { cause: err });
        throw err;
      }
      log.debug(
        {
          kid: issued.kid,
          jti: issued.jti,
          sub: issued.subject,
          aud: issued.audience,
          exp: issued.expiresAt,
        },
        "token issued",
      );
      return issued;
    },
    jwks,
    discovery: () => discoveryDocument(settings.issuerUrl, jwks()),
    handler: documentHandler(settings.issuerUrl, jwks),
    rotateIfDue(now = new Date()) {
      return serial(async () => {
        const { before, after } = await converge((keys) => source.step(keys, now));
        const result = describeChange(before, after.stored.keys, after.signing.kid);
        if (result.changed) log.info(result, "signing keys rotated");
        return result;
      });
    },
    async reload() {
      await serial(() => converge((keys) => source.check(keys)));
    },
    activeKeyActivatedAt() {
      return current ? keyActivatedAt(activeKey(current.stored.keys)) : 0;
    },
  };
}

function describeChange(before: KeySet | undefined, after: KeySet, activeKid: string): RotationResult {
  const had = new Map((before?.keys ?? []).map((k) => [k.kid, k.state]));
  const has = new Set(after.keys.map((k) => k.kid));
  const activated = had.get(activeKid) === "active" ? undefined : activeKid;
  const published = after.keys.filter((k) => !had.has(k.kid) && k.state === "next").map((k) => k.kid);
  const pruned = [...had.keys()].filter((kid) => !has.has(kid));
  return {
    changed: activated !== undefined || published.length > 0 || pruned.length > 0,
    activeKid,
    published,
    activated,
    pruned,
  };
}

type CheckedSettings = Required<Omit<IssuerSettings, "logger">>;

function checkOptions(options: IssuerSettings): CheckedSettings {
  const settings: CheckedSettings = {
    issuerUrl: options.issuerUrl,
    algorithm: options.algorithm ?? "ES256",
    rotationIntervalSeconds: options.rotationIntervalSeconds ?? 7 * 24 * 3600,
    keyPublishLeadSeconds: options.keyPublishLeadSeconds ?? 3600,
    maxTokenLifetimeSeconds: options.maxTokenLifetimeSeconds ?? limits.tokenLifetimeMaxSeconds,
    defaultTokenLifetimeSeconds: options.defaultTokenLifetimeSeconds ?? 600,
    clockSkewSeconds: options.clockSkewSeconds ?? 300,
    notBeforeSkewSeconds: options.notBeforeSkewSeconds ?? 5,
    subjectTemplate: options.subjectTemplate ?? defaultSubjectTemplate,
    allowInsecureIssuer: options.allowInsecureIssuer ?? false,
  };
  checkIssuerUrl(settings.issuerUrl, settings.allowInsecureIssuer);
  checkSubjectTemplate(settings.subjectTemplate);
  if (!signingAlgorithms.includes(settings.algorithm)) {
    throw new IssuerConfigError(
      `signing algorithm ${settings.algorithm} is not one of ${signingAlgorithms.join(", ")}`,
    );
  }
  const whole = (name: keyof CheckedSettings, value: number, min: number, max = Number.MAX_SAFE_INTEGER) => {
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new IssuerConfigError(`${name} must be a whole number from ${min} to ${max}, got ${value}`);
    }
  };
  const { tokenLifetimeMinSeconds: minLife, tokenLifetimeMaxSeconds: maxLife } = limits;
  whole("maxTokenLifetimeSeconds", settings.maxTokenLifetimeSeconds, minLife, maxLife);
  whole(
    "defaultTokenLifetimeSeconds",
    settings.defaultTokenLifetimeSeconds,
    minLife,
    settings.maxTokenLifetimeSeconds,
  );
  whole("keyPublishLeadSeconds", settings.keyPublishLeadSeconds, 0);
  whole("rotationIntervalSeconds", settings.rotationIntervalSeconds, settings.keyPublishLeadSeconds + 1);
  whole("clockSkewSeconds", settings.clockSkewSeconds, 0);
  whole("notBeforeSkewSeconds", settings.notBeforeSkewSeconds, 0, 300);
  return settings;
}
