// The credential ledger: one entry per credential, kept in the controller's own namespace where a
// namespace user cannot read, change or delete it. The run's status is the tenant's object (they
// can delete the run, and with it the status); the ledger is ours. An entry is written before the
// provider is asked to mint, names everything revocation needs, and is removed only once the
// session it describes can no longer be alive. Pure: what an entry holds and what to do with it.
import type { CredentialRecord, RevocationOutcome } from "./credentials/types.ts";
import { isDone } from "./status.ts";
import type { CustomRun } from "./types.ts";

export interface LedgerEntry {
  provider: string;
  run: { namespace: string; name: string; uid: string };
  attempt: number;
  /** The provider's intent identifiers (role, account, session name, source identity, ...). */
  intent: Record<string, string>;
  /** The latest moment a credential minted under this entry can still be valid. */
  notAfter: string;
  state: "intent" | "minted" | "revoked";
  /** The credential's own expiry, once the mint has answered. */
  expiresAt?: string;
  /**
   * sha256 of the credential Secret the controller stores (secretDigest): a Secret at the
   * credential's name that does not hash to it was not written by the controller, whatever owner
   * reference it carries (a namespace user can copy the run's UID into one). "none" when the
   * provider stores no Secret.
   */
  secretDigest?: string;
  revokedAt?: string;
  /** How it was revoked (RevocationOutcome.method) and why, when it fell back to expiry. */
  revocation?: string;
}

/**
 * Time allowed between writing the intent and the provider issuing the credential: the mint
 * follows the write in the same pass, but STS retries with backoff and a slow answer count too.
 */
export const mintAllowanceSeconds = 300;

/** Deterministic per run attempt, so writing the intent again is harmless. */
export const ledgerEntryName = (uid: string, attempt: number): string => `credential-${uid}-${attempt}`;

export function intentEntry(
  record: Pick<CredentialRecord, "provider" | "attempt" | "intent">,
  run: LedgerEntry["run"],
  lifetimeSeconds: number,
  now: Date,
): LedgerEntry {
  return {
    provider: record.provider,
    run,
    attempt: record.attempt,
    intent: record.intent,
    notAfter: new Date(now.getTime() + (lifetimeSeconds + mintAllowanceSeconds) * 1000).toISOString(),
    state: "intent",
  };
}

/** When the last credential this entry covers is over. */
export const entryExpiry = (entry: LedgerEntry): Date => new Date(entry.expiresAt ?? entry.notAfter);

/** The record the provider revokes from, built from the entry alone. */
export function recordFromEntry(entry: LedgerEntry): CredentialRecord {
  return {
    provider: entry.provider,
    attempt: entry.attempt,
    state: entry.state === "intent" ? "minting" : entry.state === "minted" ? "active" : "revoked",
    intent: entry.intent,
    results: {},
    // Without an answer from the mint, the latest possible expiry: a deny lasts as long as needed.
    expiresAt: entryExpiry(entry).toISOString(),
  };
}

export const describeOutcome = (outcome: RevocationOutcome): string =>
  outcome.detail ? `${outcome.method}: ${outcome.detail}` : outcome.method;

export type SweepAction =
  { kind: "keep" } | { kind: "delete"; why: string } | { kind: "revoke"; why: string; runGone: boolean };

/**
 * What the sweeper does with one entry, given the run as the API server has it now (read after
 * the entry was listed, so a run that is missing really is gone: UIDs are never reused).
 */
export function sweepAction(entry: LedgerEntry, run: CustomRun | undefined, now: Date): SweepAction {
  if (entryExpiry(entry).getTime() <= now.getTime()) return { kind: "delete", why: "session expired" };
  if (entry.state === "revoked") return { kind: "keep" };
  if (!run || run.metadata.uid !== entry.run.uid)
    return { kind: "revoke", why: "run deleted", runGone: true };
  if (run.metadata.deletionTimestamp) return { kind: "revoke", why: "run being deleted", runGone: false };
  if (isDone(run.status)) return { kind: "revoke", why: "run finished", runGone: false };
  if (entry.attempt < (run.status?.retriesStatus?.length ?? 0)) {
    return { kind: "revoke", why: "attempt over", runGone: false };
  }
  return { kind: "keep" };
}
