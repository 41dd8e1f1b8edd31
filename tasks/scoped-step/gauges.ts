// The credential gauges an operator alerts on, computed from the durable records the lifecycle
// keeps, so the figures survive restarts and failovers. One pure function, so the source of the
// records can change (the runs' status today) without touching metrics or alerts.
import { isCancelled, isDone, stepState } from "./status.ts";
import type { CustomRun } from "./types.ts";

export interface CredentialGauges {
  /** Credentials minted (or being minted) and not yet revoked. */
  active: number;
  /** Of those, the ones whose run no longer needs them: finished, cancelled or being deleted. */
  pendingRevocation: number;
  /** When the oldest credential not yet revoked was minted, in Unix seconds; 0 when there is none. */
  oldestUnrevokedSince: number;
}

export function credentialGauges(runs: Iterable<CustomRun>): CredentialGauges {
  const figures: CredentialGauges = { active: 0, pendingRevocation: 0, oldestUnrevokedSince: 0 };
  for (const run of runs) {
    const credential = stepState(run.status ?? {}).credential;
    if (!credential || credential.state === "revoked") continue;
    figures.active++;
    if (isDone(run.status) || isCancelled(run) || run.metadata.deletionTimestamp) {
      figures.pendingRevocation++;
    }
    const since = credential.mintedAt ?? run.status?.startTime;
    if (since) {
      const at = new Date(since).getTime() / 1000;
      if (figures.oldestUnrevokedSince === 0 || at < figures.oldestUnrevokedSince)
        figures.oldestUnrevokedSince = at;
    }
  }
  return figures;
}
