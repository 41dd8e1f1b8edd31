// What a step pod says about the step: still pending, running, or ended with results or a
// failure. Pure; the termination message is the one Tekton's entrypoint writes (entrypoint.ts):
// a JSON array of {key, value, type}, task results being type 1 and Tekton's own entries
// (StartedAt, ExitCode) type 3.
import type { V1ContainerStatus, V1Pod } from "@kubernetes/client-node";
import { terminationMessageLimit, tooLargeLog } from "./entrypoint.ts";
import { annotations } from "./pod.ts";
import type { RunResult } from "./types.ts";

/** Tekton's result.TaskRunResultType: the entries that are the step's results. */
const taskRunResultType = 1;

/** Why a step that ran (or tried to) did not succeed. */
export type StepFailureReason =
  | "Failed"
  | "StepImagePullFailed"
  | "ResultsTooLarge"
  | "InvalidResults"
  | "UndeclaredResult"
  | "ResultTypeMismatch";

export type StepOutcome =
  | { phase: "pending"; message: string }
  | { phase: "running" }
  | { phase: "succeeded"; results: RunResult[] }
  | { phase: "failed"; reason: StepFailureReason; message: string; exitCode?: number };

const imagePullReasons = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
]);

function stepStatus(pod: V1Pod): V1ContainerStatus | undefined {
  return pod.status?.containerStatuses?.find((c) => c.name === "step");
}

/** The last lines of a log tail or message, bounded, for a condition message. */
export function lastLines(text: string, lines = 10, maxChars = 1024): string {
  const tail = text.trimEnd().split("\n").slice(-lines).join("\n");
  return tail.length > maxChars ? `…${tail.slice(-maxChars)}` : tail;
}

const tooLargeMessage =
  `the step's results did not fit: at most ${terminationMessageLimit} bytes fit in a termination message ` +
  `(the kubelet's limit); write large data to a workspace or object store and return a reference`;

const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((x) => typeof x === "string");

/** The object results the pod's annotation declares, with their keys; none when it is unreadable. */
function objectDeclarations(pod: V1Pod): Record<string, string[]> {
  try {
    return JSON.parse(pod.metadata?.annotations?.[annotations.objectResults] ?? "{}") as Record<
      string,
      string[]
    >;
  } catch {
    return {};
  }
}

export function parseResults(pod: V1Pod, message: string): StepOutcome {
  const declared = new Set(
    (pod.metadata?.annotations?.[annotations.results] ?? "").split(",").filter(Boolean),
  );
  const arrays = new Set(
    (pod.metadata?.annotations?.[annotations.arrayResults] ?? "").split(",").filter(Boolean),
  );
  const objects = objectDeclarations(pod);
  const fail = (reason: StepFailureReason, msg: string): StepOutcome => ({
    phase: "failed",
    reason,
    message: msg,
  });
  if (message.trim() === "") return { phase: "succeeded", results: [] };
  let entries: unknown;
  try {
    entries = JSON.parse(message);
  } catch {
    if (Buffer.byteLength(message) >= terminationMessageLimit) {
      return fail("ResultsTooLarge", tooLargeMessage);
    }
    return fail(
      "InvalidResults",
      "the step's termination message is not the results JSON Tekton's entrypoint writes",
    );
  }
  if (!Array.isArray(entries))
    return fail("InvalidResults", "the step's termination message is not a JSON array");
  // The entrypoint appends to what the file already holds, so a key can come twice: its own
  // entries come last and win.
  const written = new Map<string, string>();
  for (const entry of entries as { key?: unknown; value?: unknown; type?: unknown }[]) {
    if (entry.type !== taskRunResultType) continue;
    const key = typeof entry.key === "string" ? entry.key : "";
    // As Tekton passes results on: the value as written, less one trailing newline (echo's).
    const value = typeof entry.value === "string" ? entry.value.replace(/\n$/, "") : "";
    written.set(key, value);
  }
  const results: RunResult[] = [];
  for (const [key, value] of written) {
    if (!declared.has(key)) {
      const names = [...declared];
      return fail(
        "UndeclaredResult",
        `the step wrote result ${key}, which it does not declare; declared results: ${names.length ? names.join(", ") : "none"}`,
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      parsed = undefined;
    }
    if (arrays.has(key) && !isStringArray(parsed)) {
      return fail(
        "ResultTypeMismatch",
        `result ${key} is declared as an array but its value is not a JSON array of strings`,
      );
    }
    const keys = objects[key];
    if (keys) {
      const object =
        parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? parsed : undefined;
      const missing = keys.filter(
        (k) => typeof (object as Record<string, unknown> | undefined)?.[k] !== "string",
      );
      if (!object || !Object.values(object).every((v) => typeof v === "string") || missing.length) {
        return fail(
          "ResultTypeMismatch",
          `result ${key} is declared as an object but its value is not a JSON object of strings` +
            (object && missing.length ? ` with keys ${missing.join(", ")}` : ""),
        );
      }
    }
    if (!arrays.has(key) && isStringArray(parsed)) {
      return fail(
        "ResultTypeMismatch",
        `result ${key} looks like a JSON array, which Tekton would pass on as an array param; declare it with type: array ` +
          `if that is meant, or write it in another form`,
      );
    }
    results.push({ name: key, value });
  }
  return { phase: "succeeded", results };
}

/**
 * What the pod says about the step. `clean` is applied to text the step wrote before any of it is
 * shortened, so nothing it takes out can survive in part.
 */
export function podOutcome(
  pod: V1Pod,
  clean: (text: string) => string = (text) => text,
  log?: string,
): StepOutcome {
  const status = stepStatus(pod);
  const terminated = status?.state?.terminated;
  if (terminated) {
    const message = terminated.message ?? "";
    if (terminated.exitCode === 0) return parseResults(pod, message);
    if (terminated.exitCode === 1 && log?.includes(tooLargeLog)) {
      return {
        phase: "failed",
        reason: "ResultsTooLarge",
        exitCode: 1,
        message: tooLargeMessage,
      };
    }
    // The entrypoint's message is its JSON; the output is in the log. When the entrypoint could not
    // run at all, the kubelet put the log's tail in the message (FallbackToLogsOnError).
    const tail = lastLines(clean(log ?? (isEntrypointMessage(message) ? "" : message)));
    return {
      phase: "failed",
      reason: "Failed",
      exitCode: terminated.exitCode,
      message: `step exited with code ${terminated.exitCode}${tail ? `; last lines:\n${tail}` : ""}`,
    };
  }
  const waiting = status?.state?.waiting;
  if (waiting?.reason && imagePullReasons.has(waiting.reason)) {
    return {
      phase: "failed",
      reason: "StepImagePullFailed",
      message:
        `the step image ${pod.spec?.containers[0]?.image ?? ""} could not be pulled (${waiting.reason}): ${waiting.message ?? ""}`.trim(),
    };
  }
  if (status?.state?.running) return { phase: "running" };
  if (pod.status?.phase === "Failed") {
    return {
      phase: "failed",
      reason: "Failed",
      message: `step pod failed: ${pod.status.reason ?? ""} ${pod.status.message ?? ""}`.trim(),
    };
  }
  const unscheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
  if (unscheduled) {
    return {
      phase: "pending",
      message:
        `step pod ${pod.metadata?.name ?? ""} cannot be scheduled yet (${unscheduled.reason ?? "Unschedulable"}` +
        `${unscheduled.message ? `: ${unscheduled.message}` : ""}); check the step's podTemplate (nodeSelector, tolerations, affinity) and its resources`,
    };
  }
  const why = waiting?.reason
    ? `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ""}`
    : (pod.status?.phase ?? "Pending");
  return { phase: "pending", message: `step pod ${pod.metadata?.name ?? ""} is not running yet (${why})` };
}

function isEntrypointMessage(message: string): boolean {
  try {
    return Array.isArray(JSON.parse(message));
  } catch {
    return false;
  }
}

/** Whether the step ended with a failure whose log the message needs (observe reads it then). */
export function needsLog(pod: V1Pod): boolean {
  const code = stepStatus(pod)?.state?.terminated?.exitCode;
  return code !== undefined && code !== 0;
}

/** How long the step container ran, once it has ended. */
export function stepRunSeconds(pod: V1Pod): number | undefined {
  const t = stepStatus(pod)?.state?.terminated;
  if (!t?.startedAt || !t.finishedAt) return undefined;
  const seconds = (new Date(t.finishedAt).getTime() - new Date(t.startedAt).getTime()) / 1000;
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}
