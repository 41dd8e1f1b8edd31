// The credential side of a run, beside its lifecycle: the intent recorded before minting, the mint
// and its Secret, adopting a Secret an interrupted pass stored, and revocation (redacting step
// output is redact.ts). What a credential is made of is the provider's business (credentials/);
// this module only moves records, Secrets and mounts.
import { createHash } from "node:crypto";
import type { V1Secret } from "@kubernetes/client-node";
import type {
  CredentialMount,
  CredentialProvider,
  CredentialRecord,
  Grant,
  RunFacts,
} from "./credentials/types.ts";
import { canonicalJson } from "./canonical.ts";
import { isRunFailure, RunFailure } from "./failure.ts";
import { describeOutcome, intentEntry } from "./ledger.ts";
import { boundedName, credentialSecretName, labels, managedByValue, runOwnerReference } from "./pod.ts";
import type { TaskContext } from "./ports.ts";
import { describeRef } from "./trait.ts";
import type { CustomRun, RunResult } from "./types.ts";

const recordAnnotation = "scopedstep.dev/credential";

/** The record written before anything is minted, so a crash mid-mint leaves something to revoke. */
export function recordIntent(provider: CredentialProvider, facts: RunFacts, grant: Grant): CredentialRecord {
  return {
    provider: provider.name,
    attempt: facts.attempt,
    state: "minting",
    intent: provider.intent(facts, grant),
    grant: grantDigest(grant),
    results: {},
  };
}

export const grantDigest = (grant: Grant): string =>
  `sha256:${createHash("sha256").update(canonicalJson(grant)).digest("hex")}`;

/**
 * The grant resolved now must be the one the intent was recorded for: the Application or the
 * policy may have changed in between, and the record (and so revocation) names the old one.
 */
function checkGrant(record: CredentialRecord, grant: Grant): void {
  if (record.grant === undefined || record.grant === grantDigest(grant)) return;
  const ref = grant.trait.ref;
  throw new RunFailure(
    "GrantChangedBeforeMint",
    `the ${ref.trait} trait on ${describeRef(ref)}, or the policy that grants it, changed after this attempt's ` +
      `credential was recorded and before it was minted; nothing was minted: re-run the step`,
    { nothingIssued: true },
  );
}

/**
 * Mints the attempt's credential and stores its secret material in the attempt's Secret. Throws
 * what the provider threw: a RunFailure when the run cannot have a credential.
 */
export async function mintCredential(
  ctx: TaskContext,
  run: CustomRun,
  record: CredentialRecord,
  facts: RunFacts,
  grant: Grant,
): Promise<{ record: CredentialRecord; mount: CredentialMount }> {
  const provider = ctx.credentials;
  const started = performance.now();
  let minted;
  try {
    checkGrant(record, grant);
    // The ledger entry first: from there on, whatever happens to the run, it can be revoked. The
    // provider prepares while it is written (the token's facts), and issues nothing before.
    const entry = intentEntry(record, ledgerRun(run), provider.lifetimeSeconds(grant), ctx.now());
    const recorded = ctx.ledger.recordIntent(entry);
    const minting = provider.mint(facts, grant, recorded);
    // Settled below: the ledger's failure, if any, is the one to report.
    minting.catch(() => undefined);
    await recorded;
    minted = await minting;
  } catch (err) {
    ctx.metrics?.credentialFailed(provider.name, isRunFailure(err) ? err.reason : "Transient");
    // The cloud answered that it issued nothing: the ledger says so, and the sweeper denies nothing.
    if (isRunFailure(err) && err.nothingIssued) {
      await ctx.ledger.update(run.metadata.uid ?? "", record.attempt, {
        state: "revoked",
        revokedAt: ctx.now().toISOString(),
        revocation: "none: nothing was issued",
      });
    }
    throw err;
  }
  ctx.metrics?.credentialMinted(provider.name, (performance.now() - started) / 1000);
  ctx.failpoint?.("after-mint");
  const active: CredentialRecord = {
    ...record,
    state: "active",
    mintedAt: ctx.now().toISOString(),
    results: minted.results,
    ...(minted.expiresAt ? { expiresAt: minted.expiresAt } : {}),
  };
  const secret =
    Object.keys(minted.secretData).length > 0
      ? credentialSecret(run, active, minted.secretData, minted.mount)
      : undefined;
  // The digest before the Secret: a Secret the ledger does not vouch for is never adopted.
  await ctx.ledger.update(run.metadata.uid ?? "", record.attempt, {
    state: "minted",
    ...(minted.expiresAt ? { expiresAt: minted.expiresAt } : {}),
    secretDigest: secret ? secretDigest(secret) : noSecret,
  });
  if (secret && !(await ctx.cluster.createSecret(secret)))
    throw secretNotOwned(run, secret.metadata?.name ?? "", { taken: true });
  ctx.failpoint?.("after-secret");
  ctx.log.info(
    { ...runLog(run), audit: "mint", provider: provider.name, attempt: record.attempt, ...active.results },
    "credential minted",
  );
  return { record: active, mount: minted.mount };
}

const ledgerRun = (run: CustomRun) => ({
  namespace: run.metadata.namespace ?? "",
  name: run.metadata.name ?? "",
  uid: run.metadata.uid ?? "",
});

/** The ledger's secretDigest when the provider stores nothing in a Secret (token-only and the like). */
export const noSecret = "none";

/**
 * sha256 over what the controller writes in a credential Secret, its data and its record, the same
 * whether the Secret is the one about to be created (stringData) or one read back (data).
 */
export function secretDigest(secret: V1Secret): string {
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(secret.data ?? {})) data[k] = Buffer.from(v, "base64").toString();
  Object.assign(data, secret.stringData ?? {});
  const entries = Object.keys(data)
    .sort()
    .map((k) => [k, data[k]]);
  const record = secret.metadata?.annotations?.[recordAnnotation] ?? null;
  return createHash("sha256")
    .update(JSON.stringify([entries, record]))
    .digest("hex");
}

/** What the controller writes on the Secret beside the secret material: public facts only. */
export interface StoredCredential {
  results: Record<string, string>;
  expiresAt?: string;
  mount: CredentialMount;
}

const isStringMap = (v: unknown): v is Record<string, string> =>
  typeof v === "object" &&
  v !== null &&
  !Array.isArray(v) &&
  Object.values(v).every((x) => typeof x === "string");

/**
 * The credential a Secret of the run's own says it holds; undefined when its record is missing or
 * is not what the controller writes. Only ever asked of a Secret the run owns.
 */
export function storedCredential(secret: V1Secret): StoredCredential | undefined {
  const raw = secret.metadata?.annotations?.[recordAnnotation];
  let saved: unknown;
  try {
    saved = raw === undefined ? undefined : JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof saved !== "object" || saved === null) return undefined;
  const { results, expiresAt, mount } = saved as Partial<Record<keyof StoredCredential, unknown>>;
  if (!isStringMap(results) || (expiresAt !== undefined && typeof expiresAt !== "string")) return undefined;
  if (typeof mount !== "object" || mount === null) return undefined;
  const { secretEnv, env, files } = mount as Partial<Record<keyof CredentialMount, unknown>>;
  if (!isStringMap(secretEnv) || !isStringMap(env) || !isStringMap(files)) return undefined;
  return { results, mount: { secretEnv, env, files }, ...(expiresAt ? { expiresAt } : {}) };
}

/** The record of a credential minted and stored by an earlier pass that stopped before recording it. */
export function adoptStored(record: CredentialRecord, saved: StoredCredential): CredentialRecord {
  return {
    ...record,
    state: "active",
    results: saved.results,
    ...(saved.expiresAt ? { expiresAt: saved.expiresAt } : {}),
  };
}

/** Deletes the attempt's credential Secret and has the provider revoke the credential. */
export async function revokeCredential(
  ctx: TaskContext,
  run: CustomRun,
  record: CredentialRecord,
  opts: { secretIsForeign?: boolean } = {},
): Promise<CredentialRecord> {
  if (record.state === "revoked") return record;
  const started = performance.now();
  const name = credentialSecretName(run.metadata.name ?? "", record.attempt);
  // A Secret someone else put at the credential's name was never ours to delete.
  if (!opts.secretIsForeign) await ctx.cluster.deleteSecret(run.metadata.namespace ?? "", name);
  const revocation = await ctx.credentials.revoke(record);
  ctx.metrics?.credentialRevoked(record.provider, (performance.now() - started) / 1000);
  const revokedAt = ctx.now().toISOString();
  await ctx.ledger.update(run.metadata.uid ?? "", record.attempt, {
    state: "revoked",
    revokedAt,
    revocation: describeOutcome(revocation),
  });
  ctx.failpoint?.("after-revoke");
  ctx.log.info(
    {
      ...runLog(run),
      audit: "revoke",
      provider: record.provider,
      attempt: record.attempt,
      ...record.results,
      revokedAt,
      revocation: revocation.method,
      ...(revocation.detail ? { detail: revocation.detail } : {}),
    },
    "credential revoked",
  );
  return { ...record, state: "revoked", revokedAt, revocation };
}

/**
 * A mint the cloud answered with a modelled error issued nothing: the record ends here, with
 * nothing for the provider to revoke.
 */
export function nothingIssued(record: CredentialRecord, now: Date): CredentialRecord {
  return { ...record, state: "revoked", revokedAt: now.toISOString(), revocation: { method: "none" } };
}

/** The credential's public facts, published as the run's results. */
export function identityResults(record: CredentialRecord | undefined): RunResult[] {
  if (!record || Object.keys(record.results).length === 0) return [];
  const out = Object.entries(record.results).map(([name, value]) => ({ name, value }));
  if (record.revokedAt) out.push({ name: "revoked-at", value: record.revokedAt });
  if (record.revocation) out.push({ name: "revocation", value: record.revocation.method });
  return out;
}

/** `taken`: found at the name when the controller went to create it, so never to be deleted. */
export function secretNotOwned(run: CustomRun, secret: string, opts: { taken?: boolean } = {}): RunFailure {
  return new RunFailure(
    "CredentialSecretNotOwned",
    `Secret ${secret} in namespace ${run.metadata.namespace ?? ""} was not created for this run (uid ` +
      `${run.metadata.uid ?? ""}), or was changed after it was; that name is reserved for the run's credential, so it is neither used nor ` +
      `deleted: delete it and re-run`,
    opts.taken ? { foreignSecret: secret } : {},
  );
}

const runLog = (run: CustomRun) => ({
  namespace: run.metadata.namespace,
  name: run.metadata.name,
  uid: run.metadata.uid,
});

function credentialSecret(
  run: CustomRun,
  record: CredentialRecord,
  data: Record<string, string>,
  mount: CredentialMount,
): V1Secret {
  const name = run.metadata.name ?? "";
  const saved: StoredCredential = { results: record.results, mount };
  if (record.expiresAt) saved.expiresAt = record.expiresAt;
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "Opaque",
    metadata: {
      name: credentialSecretName(name, record.attempt),
      namespace: run.metadata.namespace ?? "",
      labels: {
        [labels.managedBy]: managedByValue,
        [labels.customRun]: boundedName(name, 63),
        [labels.attempt]: String(record.attempt),
      },
      annotations: { [recordAnnotation]: JSON.stringify(saved) },
      ownerReferences: [runOwnerReference(run)],
    },
    stringData: data,
  };
}
