// Events and run metrics, derived in one place from the status before and after a pass: whatever
// action made the change, the same change says the same thing.
import type { CredentialProvider, CredentialRecord } from "./credentials/types.ts";
import type { LifecycleReason } from "./ending.ts";
import type { EventPort, RunMetricsPort } from "./ports.ts";
import { credentialsOf, isDone, succeededCondition } from "./status.ts";
import type { CustomRun, CustomRunStatus } from "./types.ts";

export interface RunEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

const endEvents: Partial<Record<LifecycleReason, string>> = {
  Succeeded: "Succeeded",
  CustomRunCancelled: "Cancelled",
  CustomRunTimedOut: "TimedOut",
};

function credentialEvents(
  before: CredentialRecord | undefined,
  after: CredentialRecord,
  provider: Pick<CredentialProvider, "describe">,
): RunEvent[] {
  if (before?.state === after.state) return [];
  const identity = provider.describe(after) || `the credential of attempt ${after.attempt}`;
  if (after.state === "revoked" && after.revocation?.method === "expiry") {
    const why = after.revocation.detail ?? "no revocation could be written";
    const message = `could not revoke ${identity}: ${why}; it stays valid until it expires`;
    return [{ type: "Warning", reason: "RevocationFellBackToExpiry", message }];
  }
  if (Object.keys(after.results).length === 0) return [];
  if (after.state === "active") return [{ type: "Normal", reason: "CredentialMinted", message: identity }];
  if (after.state === "revoked")
    return [{ type: "Normal", reason: "CredentialRevoked", message: `revoked ${identity}` }];
  return [];
}

/** The Events a pass's change of status calls for, in the order things happened. */
export function transitionEvents(
  before: CustomRunStatus,
  after: CustomRunStatus,
  provider: Pick<CredentialProvider, "describe">,
): RunEvent[] {
  const events: RunEvent[] = [];
  if (!before.startTime && after.startTime)
    events.push({ type: "Normal", reason: "Started", message: "scoped-step run started" });

  const earlier = new Map(credentialsOf(before).map((c) => [c.attempt, c]));
  for (const record of credentialsOf(after))
    events.push(...credentialEvents(earlier.get(record.attempt), record, provider));

  const retried = after.retriesStatus?.length ?? 0;
  if (retried > (before.retriesStatus?.length ?? 0)) {
    const last = after.retriesStatus?.[retried - 1];
    const reason = (last && succeededCondition(last)?.reason) ?? "";
    events.push({ type: "Warning", reason: "Retrying", message: `attempt failed (${reason}); retrying` });
  }

  const end = succeededCondition(after);
  if (end && isDone(after) && !isDone(before)) {
    const reason = (end.reason ?? "") as LifecycleReason;
    const event = endEvents[reason] ?? "Failed";
    if (end.status === "True") events.push({ type: "Normal", reason: event, message: end.message ?? "" });
    else
      events.push({ type: "Warning", reason: event, message: `${end.reason ?? ""}: ${end.message ?? ""}` });
  }
  return events;
}

/** Emits the pass's Events and counts runs started and finished. */
export function reportTransition(
  run: CustomRun,
  before: CustomRunStatus,
  ports: { events: EventPort; metrics?: RunMetricsPort; credentials: Pick<CredentialProvider, "describe"> },
): void {
  const after = run.status ?? {};
  for (const e of transitionEvents(before, after, ports.credentials))
    ports.events.emit(run, e.type, e.reason, e.message);
  if (!before.startTime && after.startTime) ports.metrics?.runStarted();
  const end = succeededCondition(after);
  if (end && isDone(after) && !isDone(before))
    ports.metrics?.runFinished(end.status === "True" ? "succeeded" : "failed", end.reason ?? "");
}
