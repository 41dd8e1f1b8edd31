// Pure helpers for the CustomRun status this task type writes.
import { sameJson } from "./canonical.ts";
import type { CredentialRecord } from "./credentials/types.ts";
import type { StepFailureReason } from "./outcome.ts";
import type { Condition, CustomRun, CustomRunStatus } from "./types.ts";

/** Our bookkeeping, kept in status.extraFields.scopedStep. Public facts only. */
export interface StepState {
  /** Pod created for the current attempt, once it has been. */
  pod?: string;
  /**
   * The attempt's credential. Its intent identifiers are fixed per attempt, so revoking by them
   * also covers a credential minted by a pass that stopped before it could record the result.
   */
  credential?: CredentialRecord;
  /**
   * How the step failed, recorded (redacted) before its credential is revoked, so that what is
   * published never depends on the credential Secret still being there to redact with.
   */
  failure?: { reason: StepFailureReason; message: string };
}

/** Every credential the run has had: one per attempt, in retriesStatus and the current state. */
export function credentialsOf(status: CustomRunStatus): CredentialRecord[] {
  const all = [...(status.retriesStatus ?? []), status].map((s) => stepState(s).credential);
  return all.filter((c): c is CredentialRecord => c !== undefined);
}

export function stepState(status: CustomRunStatus): StepState {
  const raw = status.extraFields?.scopedStep;
  return raw && typeof raw === "object" ? raw : {};
}

export function withStepState(status: CustomRunStatus, state: StepState): CustomRunStatus {
  return { ...status, extraFields: { ...status.extraFields, scopedStep: state } };
}

export function succeededCondition(status: CustomRunStatus): Condition | undefined {
  return status.conditions?.find((c) => c.type === "Succeeded");
}

export function isDone(status: CustomRunStatus | undefined): boolean {
  const c = status ? succeededCondition(status) : undefined;
  return c?.status === "True" || c?.status === "False";
}

/** Sets the Succeeded condition; keeps lastTransitionTime when the status value does not change. */
export function setSucceeded(
  status: CustomRunStatus,
  value: Condition["status"],
  reason: string,
  message: string,
  now: Date,
): CustomRunStatus {
  const previous = succeededCondition(status);
  const lastTransitionTime =
    previous?.status === value && previous.lastTransitionTime
      ? previous.lastTransitionTime
      : now.toISOString();
  const condition: Condition = { type: "Succeeded", status: value, reason, message, lastTransitionTime };
  return {
    ...status,
    conditions: [...(status.conditions ?? []).filter((c) => c.type !== "Succeeded"), condition],
  };
}

/** Whether writing `b` over `a` would change nothing (whatever the order of their keys). */
export function sameStatus(a: CustomRunStatus | undefined, b: CustomRunStatus): boolean {
  return sameJson(a ?? {}, b);
}

export const isCancelled = (run: CustomRun): boolean => run.spec.status === "RunCancelled";
