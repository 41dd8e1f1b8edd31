// The run lifecycle as a table: every state a run can be in (Phase), read from what the API server
// holds, and the one action each calls for. Pure: the reconcile gathers what it observed, asks
// `decide`, and carries the action out.
import type { V1Pod, V1Secret } from "@kubernetes/client-node";
import { secretNotOwned, storedCredential, type StoredCredential } from "./credential.ts";
import type { CredentialMount, CredentialRecord } from "./credentials/types.ts";
import { parseGoDuration } from "./duration.ts";
import type { Ending, ProgressReason } from "./ending.ts";
import { isRunFailure } from "./failure.ts";
import { podOutcome, type StepOutcome } from "./outcome.ts";
import { podName } from "./pod.ts";
import { redact } from "./redact.ts";
import type { Resolved } from "./resolve.ts";
import { isCancelled, isDone, stepState, type StepState } from "./status.ts";
import type { CustomRun } from "./types.ts";

/** What one pass sees: the run, its current attempt's pod and credential Secret, and the clock. */
export interface Observed {
  run: CustomRun;
  pod?: V1Pod;
  /** Read only while the credential is live and something may need it (adopt, mount, redact). */
  secret?: V1Secret;
  /** Objects at the pod's or the Secret's name that this run does not own: never used, never read. */
  foreignPod?: string;
  foreignSecret?: string;
  /** The tail of the step's log, read once the step has failed: what it said before it ended. */
  log?: string;
  now: Date;
  /** Used when spec.timeout is not set. */
  defaultTimeoutMs: number;
  /** The step and grant the intent was recorded for, when this same reconcile resolved them. */
  resolved?: Resolved;
}

export type Phase =
  /** Deleted with our finalizer on: clean up, then let it go. */
  | { name: "deleting" }
  /** Finished, but the last attempt's credential is not revoked yet. */
  | { name: "ended-unrevoked" }
  /** Finished and cleaned up: only the finalizer is left. */
  | { name: "ended" }
  /** The step failed and that is recorded: revoke, then retry or end. */
  | { name: "failure-recorded"; failure: NonNullable<StepState["failure"]> }
  | { name: "cancelled" }
  | { name: "invalid-timeout"; message: string; reason: string }
  | { name: "timed-out"; timeout: string }
  /** The attempt has no credential record: resolve, and record what will be minted. */
  | { name: "new" }
  /** Someone else's pod or Secret holds a name reserved for this attempt. */
  | { name: "foreign-pod"; pod: string }
  | { name: "foreign-secret"; secret: string }
  /** The run's own Secret does not say what it holds (edited, or not written by the controller). */
  /** The intent is recorded and nothing is stored: mint, store, create the pod. */
  | { name: "minting" }
  /** An earlier pass minted and stored the credential, then stopped before recording it. */
  | { name: "stored"; saved: StoredCredential }
  /** The credential is recorded; the pod is still to be created. */
  | { name: "ready"; saved?: StoredCredential }
  /** The pod this attempt created is gone. */
  | { name: "pod-missing"; pod: string }
  | { name: "pod-pending"; pod: string; message: string }
  | { name: "pod-running"; pod: string }
  | { name: "step-failed"; outcome: Extract<StepOutcome, { phase: "failed" }> }
  | { name: "step-succeeded"; outcome: Extract<StepOutcome, { phase: "succeeded" }> };

export type Action =
  | { kind: "finalize" }
  | { kind: "revoke" }
  | { kind: "release" }
  | { kind: "record-intent" }
  /** Create the attempt's pod; the credential is minted, adopted from its Secret, or as recorded. */
  | { kind: "start-pod"; credential: "mint" | { adopt: StoredCredential } | { mount?: CredentialMount } }
  /** Adopt the stored credential into the record; the pod exists already. */
  | { kind: "adopt"; saved: StoredCredential }
  | { kind: "observe-pod"; pod: string; reason: ProgressReason; message: string }
  /** Record how the step failed, before anything else happens to the attempt. */
  | { kind: "record-failure"; failure: NonNullable<StepState["failure"]> }
  | { kind: "end"; ending: Ending };

export const attemptOf = (run: CustomRun): number => run.status?.retriesStatus?.length ?? 0;

/** The current attempt's credential record, if its intent has been recorded. */
export function attemptRecord(run: CustomRun): CredentialRecord | undefined {
  const record = stepState(run.status ?? {}).credential;
  return record?.attempt === attemptOf(run) ? record : undefined;
}

function timeoutMs(o: Observed): number {
  const t = o.run.spec.timeout;
  return t === undefined ? o.defaultTimeoutMs : parseGoDuration(t);
}

/** Milliseconds until the attempt times out; undefined when it has no timeout (or an invalid one). */
export function timeLeftMs(o: Observed): number | undefined {
  let limit;
  try {
    limit = timeoutMs(o);
  } catch {
    return undefined;
  }
  if (limit <= 0) return undefined;
  const start = o.run.status?.startTime;
  const elapsed = start ? o.now.getTime() - new Date(start).getTime() : 0;
  return limit - elapsed;
}

export function phaseOf(o: Observed): Phase {
  const { run } = o;
  const state = stepState(run.status ?? {});
  if (run.metadata.deletionTimestamp) return { name: "deleting" };
  if (isDone(run.status)) {
    const live = state.credential && state.credential.state !== "revoked";
    return { name: live ? "ended-unrevoked" : "ended" };
  }
  if (state.failure) return { name: "failure-recorded", failure: state.failure };
  if (isCancelled(run)) return { name: "cancelled" };
  try {
    timeoutMs(o);
  } catch (err) {
    if (!isRunFailure(err)) throw err;
    return { name: "invalid-timeout", reason: err.reason, message: err.message };
  }
  const left = timeLeftMs(o);
  if (left !== undefined && left <= 0) {
    return { name: "timed-out", timeout: run.spec.timeout ?? `${timeoutMs(o) / 1000}s` };
  }
  const record = attemptRecord(run);
  if (!record) return { name: "new" };
  if (o.foreignPod) return { name: "foreign-pod", pod: o.foreignPod };
  if (o.foreignSecret) return { name: "foreign-secret", secret: o.foreignSecret };
  const pod = podName(run.metadata.name ?? "", attemptOf(run));
  const saved = o.secret && storedCredential(o.secret);
  // The ledger vouched for the Secret's content (observe), so its record is the controller's own;
  // one that does not parse is treated like any Secret the controller did not write.
  const foreign = { name: "foreign-secret", secret: o.secret?.metadata?.name ?? "" } as const;
  if (record.state === "minting" && o.secret) return saved ? { name: "stored", saved } : foreign;
  if (!o.pod) {
    if (state.pod === pod) return { name: "pod-missing", pod };
    if (record.state === "minting") return { name: "minting" };
    if (o.secret && !saved) return foreign;
    return saved ? { name: "ready", saved } : { name: "ready" };
  }
  const outcome = podOutcome(o.pod, (text) => redact(text, o.secret), o.log);
  switch (outcome.phase) {
    case "pending":
      return { name: "pod-pending", pod, message: outcome.message };
    case "running":
      return { name: "pod-running", pod };
    case "failed":
      return { name: "step-failed", outcome };
    case "succeeded":
      return { name: "step-succeeded", outcome };
  }
}

/** Someone else's pod holds the name of the run's step pod. */
export function podNotOwned(run: CustomRun, pod: string): Ending {
  const message =
    `pod ${pod} in namespace ${run.metadata.namespace ?? ""} was not created for this run (uid ` +
    `${run.metadata.uid ?? ""}); that name is reserved for the run's step pod, so it is neither used nor read: ` +
    `delete it and re-run`;
  return { kind: "refused", reason: "StepPodNotOwned", message };
}

export function decide(o: Observed): Action {
  const phase = phaseOf(o);
  const runName = o.run.metadata.name ?? "";
  switch (phase.name) {
    case "deleting":
      return { kind: "finalize" };
    case "ended-unrevoked":
      return { kind: "revoke" };
    case "ended":
      return { kind: "release" };
    case "cancelled": {
      const message = o.run.spec.statusMessage || "CustomRun cancelled";
      return { kind: "end", ending: { kind: "cancelled", message } };
    }
    case "invalid-timeout":
      return { kind: "end", ending: { kind: "refused", reason: phase.reason, message: phase.message } };
    case "timed-out": {
      const message = `CustomRun ${runName} timed out after ${phase.timeout}`;
      return { kind: "end", ending: { kind: "timed-out", message } };
    }
    case "new":
      return { kind: "record-intent" };
    case "foreign-pod":
      return { kind: "end", ending: podNotOwned(o.run, phase.pod) };
    case "foreign-secret": {
      const { reason, message } = secretNotOwned(o.run, phase.secret);
      return { kind: "end", ending: { kind: "refused", reason, message } };
    }
    case "minting":
      return { kind: "start-pod", credential: "mint" };
    case "stored":
      return o.pod
        ? { kind: "adopt", saved: phase.saved }
        : { kind: "start-pod", credential: { adopt: phase.saved } };
    case "ready":
      return { kind: "start-pod", credential: phase.saved ? { mount: phase.saved.mount } : {} };
    case "pod-missing": {
      const message = `step pod ${phase.pod} was deleted before the step finished`;
      return { kind: "end", ending: { kind: "step-failed", reason: "StepPodMissing", message } };
    }
    case "pod-pending":
      return { kind: "observe-pod", pod: phase.pod, reason: "Started", message: phase.message };
    case "pod-running": {
      const message = `step pod ${phase.pod} is running`;
      return { kind: "observe-pod", pod: phase.pod, reason: "Running", message };
    }
    case "step-failed": {
      const { reason, message } = phase.outcome;
      return { kind: "record-failure", failure: { reason, message } };
    }
    case "failure-recorded":
      return { kind: "end", ending: { kind: "step-failed", ...phase.failure } };
    case "step-succeeded":
      return { kind: "end", ending: { kind: "succeeded", results: phase.outcome.results } };
  }
}
