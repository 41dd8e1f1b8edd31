// The ledger sweeper: revokes every credential whose run is gone, finished, being deleted or past
// that attempt, and removes entries whose sessions have expired. It reads nothing but the ledger
// and the runs as the API server has them now, so a restarted controller rebuilds every pending
// revocation from the ledger alone, whatever the tenant did to the run.
import { credentialSecretName, podName } from "./pod.ts";
import {
  describeOutcome,
  entryExpiry,
  ledgerEntryName,
  recordFromEntry,
  sweepAction,
  type LedgerEntry,
} from "./ledger.ts";
import type { TaskContext } from "./ports.ts";
import type { CustomRun } from "./types.ts";

export interface SweepReport {
  revoked: number;
  removed: number;
  /** Entries that could not be handled this time; the next sweep tries again. */
  failed: number;
}

export async function sweepLedger(
  ctx: TaskContext,
  scope?: { namespace: string; name: string },
): Promise<SweepReport> {
  const report: SweepReport = { revoked: 0, removed: 0, failed: 0 };
  // Listed before any run is read: a run missing after its entry was written is really gone.
  const entries = await ctx.ledger.list(scope);
  const runs = new Map<string, Promise<CustomRun | undefined>>();
  for (const entry of entries) {
    const key = `${entry.run.namespace}/${entry.run.name}`;
    const now = ctx.now();
    try {
      const settled = entry.state === "revoked" || entryExpiry(entry).getTime() <= now.getTime();
      let run: CustomRun | undefined;
      if (!settled) {
        if (!runs.has(key)) runs.set(key, ctx.cluster.getRun(entry.run.namespace, entry.run.name));
        run = await runs.get(key);
      }
      const action = sweepAction(entry, run, now);
      if (action.kind === "delete") {
        await ctx.ledger.remove(entry);
        report.removed++;
      } else if (action.kind === "revoke") {
        await revokeEntry(ctx, entry, action.why, action.runGone);
        report.revoked++;
      }
    } catch (err) {
      report.failed++;
      ctx.log.error(
        { err, entry: ledgerEntryName(entry.run.uid, entry.attempt), ...entry.run },
        "could not sweep a ledger entry; will try again",
      );
    }
  }
  return report;
}

/** Sweeps one run's entries; throws when one could not be handled, so the pass is retried. */
export async function sweepRun(ctx: TaskContext, namespace: string, name: string): Promise<void> {
  const report = await sweepLedger(ctx, { namespace, name });
  if (report.failed > 0) {
    throw new Error(`${report.failed} ledger entries of CustomRun ${namespace}/${name} could not be swept`);
  }
}

async function revokeEntry(ctx: TaskContext, entry: LedgerEntry, why: string, runGone: boolean) {
  const provider = ctx.credentials;
  if (entry.provider !== provider.name) {
    throw new Error(
      `credential minted by provider ${entry.provider}, but this controller runs ${provider.name}; ` +
        `run it with --credentials=${entry.provider} until the entry expires at ${entry.notAfter}`,
    );
  }
  const { namespace, name, uid } = entry.run;
  if (runGone) {
    // Where no garbage collector removes what the run owned (or before it gets to it), the
    // credential Secret and the pod go now; a new run of the same name owns its own, so leave those.
    const owned = (o?: { metadata?: { ownerReferences?: { uid: string }[] } }) =>
      (o?.metadata?.ownerReferences ?? []).some((r) => r.uid === uid);
    const secret = credentialSecretName(name, entry.attempt);
    if (owned(await ctx.cluster.getSecret(namespace, secret)))
      await ctx.cluster.deleteSecret(namespace, secret);
    const pod = podName(name, entry.attempt);
    if (owned(await ctx.cluster.getPod(namespace, pod))) await ctx.cluster.deletePod(namespace, pod);
  }
  const started = performance.now();
  const outcome = await provider.revoke(recordFromEntry(entry));
  ctx.metrics?.credentialRevoked(entry.provider, (performance.now() - started) / 1000);
  const revokedAt = ctx.now().toISOString();
  await ctx.ledger.update(uid, entry.attempt, {
    state: "revoked",
    revokedAt,
    revocation: describeOutcome(outcome),
  });
  ctx.log.info(
    {
      audit: "revoke",
      via: "ledger",
      why,
      namespace,
      name,
      uid,
      attempt: entry.attempt,
      provider: entry.provider,
      ...entry.intent,
      method: outcome.method,
      revokedAt,
    },
    "credential revoked from the ledger",
  );
}
