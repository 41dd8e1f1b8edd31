// How a run or one of its attempts ends, and the status that says so. Pure: the reconcile decides
// on an Ending, revokes the attempt's credential, then asks this module for the status to write.
import type { StepFailureReason } from "./outcome.ts";
import { setSucceeded, type StepState } from "./status.ts";
import type { CustomRunStatus, RunResult } from "./types.ts";

/** The Succeeded condition's reason while the run is in progress. */
export type ProgressReason = "Started" | "Running";

/** Reasons the lifecycle itself gives. Refusals carry the reason their module named (a RunFailure). */
export type LifecycleReason =
  | ProgressReason
  | "Succeeded"
  | "CustomRunCancelled"
  | "CustomRunTimedOut"
  | "StepPodMissing"
  | "StepPodNotOwned"
  | "CredentialSecretNotOwned"
  | "GrantChangedBeforeMint"
  | StepFailureReason;

export type Ending =
  | { kind: "succeeded"; results: RunResult[] }
  | { kind: "cancelled"; message: string }
  | { kind: "timed-out"; message: string }
  /** The attempt's step failed, or its pod went away: retried while the run has retries left. */
  | { kind: "step-failed"; reason: StepFailureReason | "StepPodMissing"; message: string }
  /** The run cannot go on: bad input, a policy denial, a mint error. Never retried. */
  | { kind: "refused"; reason: string; message: string };

/** The status of the pass being made, and the bookkeeping inside it. */
export interface Draft {
  status: CustomRunStatus;
  state: StepState;
}

export function endingReason(ending: Ending): string {
  switch (ending.kind) {
    case "succeeded":
      return "Succeeded";
    case "cancelled":
      return "CustomRunCancelled";
    case "timed-out":
      return "CustomRunTimedOut";
    case "step-failed":
    case "refused":
      return ending.reason;
  }
}

const endingMessage = (ending: Ending): string =>
  ending.kind === "succeeded" ? "the step completed" : ending.message;

export const retryable = (ending: Ending): boolean =>
  ending.kind === "timed-out" || ending.kind === "step-failed";

/**
 * Whether the attempt's pod goes when the attempt ends. A pod that ended by itself stays for its
 * logs, as Tekton keeps a failed attempt's pod; one still running or never started does not.
 */
export function deletesPod(ending: Ending, retrying: boolean): boolean {
  if (ending.kind === "cancelled" || ending.kind === "timed-out") return true;
  return retrying && ending.kind === "step-failed" && ending.reason === "StepImagePullFailed";
}

/** The run's final status. `identity` are the credential's public results. */
export function finishRun(draft: Draft, ending: Ending, now: Date, identity: RunResult[]): Draft {
  const status = setSucceeded(
    draft.status,
    ending.kind === "succeeded" ? "True" : "False",
    endingReason(ending),
    endingMessage(ending),
    now,
  );
  status.completionTime = now.toISOString();
  status.results = [...(ending.kind === "succeeded" ? ending.results : []), ...identity];
  // The failure is in the condition now.
  const { failure: _recorded, ...state } = draft.state;
  return { status, state };
}

/** Files the attempt in retriesStatus, as Tekton does, and starts the next one. */
export function retryAttempt(
  draft: Draft,
  ending: Ending,
  now: Date,
  identity: RunResult[],
  retries: number,
): Draft {
  const reason = endingReason(ending);
  const message = endingMessage(ending);
  const snapshot: CustomRunStatus = {
    ...setSucceeded(draft.status, "False", reason, message, now),
    completionTime: now.toISOString(),
    results: identity,
  };
  delete snapshot.retriesStatus;
  const extra = { ...snapshot.extraFields };
  delete extra.scopedStep;
  snapshot.extraFields = { ...extra, scopedStep: draft.state };
  const retriesStatus = [...(draft.status.retriesStatus ?? []), snapshot];
  const status = setSucceeded(
    { ...draft.status, retriesStatus, startTime: now.toISOString(), results: [] },
    "Unknown",
    "Running",
    `retrying (attempt ${retriesStatus.length} of ${retries + 1}) after ${reason}: ${message}`,
    now,
  );
  return { status, state: {} };
}
