// Pod status as the kubelet computes it for restartPolicy Never pods: pure functions from what each
// container is doing to phase, conditions and containerStatuses.
import { createHash } from "node:crypto";

export type ContainerState =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | {
      terminated: {
        exitCode: number;
        signal?: number;
        reason: string;
        message?: string;
        startedAt: string;
        finishedAt: string;
        containerID?: string;
      };
    };

export interface ContainerRecord {
  name: string;
  image: string;
  state: ContainerState;
  containerID?: string;
  started: boolean;
}

export interface Condition {
  type: string;
  status: "True" | "False";
  reason?: string;
  message?: string;
  lastTransitionTime: string;
}

/** metav1.Time precision: seconds. */
export function timestamp(d = new Date()): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

const isWaiting = (c: ContainerRecord) => "waiting" in c.state;
const isRunning = (c: ContainerRecord) => "running" in c.state;
const exitCode = (c: ContainerRecord) => ("terminated" in c.state ? c.state.terminated.exitCode : undefined);

/** The kubelet's getPhase, for restartPolicy Never. */
export function podPhase(init: ContainerRecord[], main: ContainerRecord[]): string {
  if (init.some((c) => (exitCode(c) ?? 0) !== 0)) return "Failed";
  if (init.some((c) => exitCode(c) === undefined)) return "Pending";
  if (main.some(isWaiting)) return "Pending";
  if (main.some(isRunning)) return "Running";
  return main.every((c) => exitCode(c) === 0) ? "Succeeded" : "Failed";
}

export function podConditions(
  init: ContainerRecord[],
  main: ContainerRecord[],
  sandboxReady: boolean,
): Omit<Condition, "lastTransitionTime">[] {
  const phase = podPhase(init, main);
  const done = phase === "Succeeded" || phase === "Failed";
  const incompleteInit = init.filter((c) => exitCode(c) !== 0).map((c) => c.name);
  const unready = main.filter((c) => !isRunning(c)).map((c) => c.name);
  const notReady = (what: string) =>
    done
      ? ({ status: "False", reason: "PodCompleted" } as const)
      : ({
          status: "False",
          reason: "ContainersNotReady",
          message: `containers with ${what} status: [${unready.join(" ")}]`,
        } as const);
  const ready = unready.length === 0 ? ({ status: "True" } as const) : notReady("unready");
  return [
    { type: "PodReadyToStartContainers", status: sandboxReady && !done ? "True" : "False" },
    incompleteInit.length === 0
      ? {
          type: "Initialized",
          status: "True",
          ...(done && init.length > 0 ? { reason: "PodCompleted" } : {}),
        }
      : {
          type: "Initialized",
          status: "False",
          reason: "ContainersNotInitialized",
          message: `containers with incomplete status: [${incompleteInit.join(" ")}]`,
        },
    { type: "Ready", ...ready },
    { type: "ContainersReady", ...ready },
    { type: "PodScheduled", status: "True" },
  ];
}

/** containerStatuses[] entry, with a fake but stable imageID. */
export function containerStatus(c: ContainerRecord): Record<string, unknown> {
  const running = isRunning(c);
  return {
    name: c.name,
    image: c.image,
    imageID: c.containerID ? imageID(c.image) : "",
    ...(c.containerID ? { containerID: c.containerID } : {}),
    ready: running,
    started: running,
    restartCount: 0,
    state: c.state,
    lastState: {},
  };
}

function imageID(image: string): string {
  if (image.includes("@sha256:")) return image;
  const repo = image.replace(/:[^/:]+$/, "");
  return `${repo}@sha256:${createHash("sha256").update(image).digest("hex")}`;
}

// The kubelet's limits: 4096 bytes of termination message per container, and for
// FallbackToLogsOnError the last 80 lines of the log, at most 2048 bytes.
const messageLimit = 4096;
const fallbackLines = 80;
const fallbackBytes = 2048;

export function terminationMessage(
  file: Buffer,
  policy: string | undefined,
  exitCode: number,
  output: Buffer,
): string {
  const message = file.subarray(0, messageLimit).toString("utf8");
  if (message !== "" || policy !== "FallbackToLogsOnError" || exitCode === 0) return message;
  return tailOfLog(output);
}

export function tailOfLog(output: Buffer): string {
  let start = output.length;
  // A trailing newline ends the last line, it does not start another.
  let lines = output.at(-1) === 0x0a ? -1 : 0;
  while (start > 0) {
    if (output[start - 1] === 0x0a && ++lines === fallbackLines) break;
    start--;
  }
  const tail = output.subarray(start);
  return tail.subarray(Math.max(0, tail.length - fallbackBytes)).toString("utf8");
}
