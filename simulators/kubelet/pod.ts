// One pod on the test kubelet, from bound to deleted: volumes, init containers in order, then the
// containers together, each as a real process; status written through pods/status after every
// change, as the kubelet's status manager does; on deletion, SIGTERM, SIGKILL after the grace
// period, then the final delete with grace period 0 that makes the object go away.
import { randomBytes } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { CoreV1Api, V1Container, V1Pod } from "@kubernetes/client-node";
import { behaviourAnnotation, behaviourOf, prepareLaunch, unstartable, type Launch } from "./container.ts";
import { ConfigError, containerEnv } from "./env.ts";
import { MountError, type Tools } from "./mounts.ts";
import { describeError, isConflict, isNotFound, type ObjectSource } from "./objects.ts";
import { ContainerProcess, OutputBuffer, type ProcessGroups } from "./process.ts";
import { terminationMessage, timestamp, type ContainerRecord } from "./status.ts";
import { StatusWriter } from "./status-writer.ts";
import { prepareVolumes, refreshDownwardVolumes, VolumeError, type PreparedVolume } from "./volumes.ts";

export { behaviourAnnotation };

export interface RunnerContext {
  core: CoreV1Api;
  objects: ObjectSource;
  groups: ProcessGroups;
  tools: Tools & { unshare: string; sh: string };
  baseDir: string;
  retryIntervalMs: number;
  /** The `kubernetes` service variables every container gets. */
  serviceEnv: ReadonlyMap<string, string>;
  log: (line: string) => void;
}

export interface ContainerProcessInfo {
  container: string;
  pid: number;
  running: boolean;
}

interface Slot extends ContainerRecord {
  spec: V1Container;
  init: boolean;
  output: OutputBuffer;
  process?: ContainerProcess;
}

/** startedAt of a container that never started, as the kubelet reports it. */
const neverStarted = "1970-01-01T00:00:00Z";

export class PodRunner {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  private pod: V1Pod;
  private readonly ctx: RunnerContext;
  private readonly dir: string;
  private readonly slots: Slot[];
  private volumes = new Map<string, PreparedVolume>();
  private sandboxReady = false;
  /** The labels and annotations the downward API volumes were last written from. */
  private downwardFrom = "";
  private downwardWrites: Promise<void> = Promise.resolve();
  /** Aborted when the pod is being deleted or the kubelet stops: nothing new starts. */
  private readonly halt = new AbortController();
  private deletionGrace: number | undefined;
  private gone = false;
  private stopping = false;
  private finished = false;
  private deleting: Promise<void> | undefined;
  private readonly status: StatusWriter;
  private done: Promise<void> = Promise.resolve();

  constructor(ctx: RunnerContext, pod: V1Pod) {
    this.ctx = ctx;
    this.pod = pod;
    this.namespace = pod.metadata?.namespace ?? "default";
    this.name = pod.metadata?.name ?? "";
    this.uid = pod.metadata?.uid ?? "";
    this.dir = path.join(ctx.baseDir, this.uid);
    this.status = new StatusWriter(
      ctx.core,
      { name: this.name, namespace: this.namespace, uid: this.uid },
      ctx.log,
    );
    const inits = pod.spec?.initContainers ?? [];
    const slot = (spec: V1Container, init: boolean, reason: string): Slot => ({
      spec,
      init,
      name: spec.name,
      image: spec.image ?? "",
      state: { waiting: { reason } },
      started: false,
      output: new OutputBuffer(),
    });
    const mainReason = inits.length > 0 ? "PodInitializing" : "ContainerCreating";
    this.slots = [
      ...inits.map((c) => slot(c, true, "PodInitializing")),
      ...(pod.spec?.containers ?? []).map((c) => slot(c, false, mainReason)),
    ];
  }

  start(): void {
    this.done = this.run().catch((err: unknown) => {
      this.ctx.log(`pod ${this.namespace}/${this.name}: ${describeError(err)}`);
    });
  }

  /** A newer version of the pod, from the watch. */
  observe(pod: V1Pod): void {
    this.pod = pod;
    this.refreshDownward();
    const meta = pod.metadata;
    if (meta?.deletionTimestamp) {
      this.requestDeletion(meta.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30);
    }
  }

  /** The pod object is gone (deleted with grace period 0, or while the watch was down). */
  vanished(pod: V1Pod | undefined): void {
    this.gone = true;
    this.status.close();
    this.requestDeletion(pod?.metadata?.deletionGracePeriodSeconds ?? 0);
  }

  /** The kubelet stops: kill everything now, write nothing more. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    this.halt.abort();
    for (const s of this.slots) s.process?.terminate(0);
    this.status.close();
    await this.done;
    await this.status.idle();
    await this.downwardWrites;
  }

  output(container?: string): string {
    return this.slots
      .filter((s) => container === undefined || s.name === container)
      .map((s) => s.output.text())
      .join("");
  }

  hasContainer(container: string): boolean {
    return this.slots.some((s) => s.name === container);
  }

  volumePath(volume: string): string | undefined {
    return this.volumes.get(volume)?.hostPath;
  }

  processes(): ContainerProcessInfo[] {
    return this.slots.flatMap((s) =>
      s.process ? [{ container: s.name, pid: s.process.pid, running: s.process.isRunning }] : [],
    );
  }

  /** Rewrites the downward API volumes when the labels or annotations changed since. */
  private refreshDownward(): void {
    const from = downwardSource(this.pod);
    if (!this.sandboxReady || this.halted || from === this.downwardFrom) return;
    this.downwardFrom = from;
    const pod = this.pod;
    this.downwardWrites = this.downwardWrites
      .then(() => refreshDownwardVolumes(pod, this.volumes, this.ctx.objects))
      .catch((err: unknown) => {
        this.ctx.log(`pod ${this.namespace}/${this.name}: downward API volumes: ${describeError(err)}`);
      });
  }

  private get halted(): boolean {
    return this.halt.signal.aborted;
  }

  private requestDeletion(graceSeconds: number): void {
    this.deletionGrace = Math.min(this.deletionGrace ?? graceSeconds, graceSeconds);
    this.halt.abort();
    for (const s of this.slots) s.process?.terminate(this.deletionGrace);
    if (this.finished) void this.finishDeletion();
  }

  private async run(): Promise<void> {
    const behaviour = behaviourOf(this.pod);
    this.publish();
    if (behaviour) {
      const slot =
        behaviour.kind === "image-pull-error" && this.slots.find((s) => s.name === behaviour.container);
      if (slot) {
        const why = `test kubelet: pull failure requested by annotation ${behaviourAnnotation} or image kubelet.test/*`;
        this.setState(slot, {
          waiting: { reason: "ErrImagePull", message: `Failed to pull image "${slot.image}": ${why}` },
        });
      }
      await untilAborted(this.halt.signal);
      return this.end();
    }

    while (!this.halted) {
      try {
        this.downwardFrom = downwardSource(this.pod);
        this.volumes = await prepareVolumes(this.pod, this.dir, this.ctx.objects);
        break;
      } catch (err) {
        const message =
          err instanceof VolumeError ? err.message : `MountVolume.SetUp failed: ${describeError(err)}`;
        this.setWaitingMessage(message);
        await pause(this.ctx.retryIntervalMs, this.halt.signal);
      }
    }
    if (this.halted) return this.end();
    this.sandboxReady = true;
    this.refreshDownward();
    this.setWaitingMessage(undefined);
    this.publish();

    let initialized = true;
    for (const slot of this.slots.filter((s) => s.init)) {
      if ((await this.runContainer(slot)) !== 0) {
        initialized = false;
        break;
      }
    }
    if (initialized) await Promise.all(this.slots.filter((s) => !s.init).map((s) => this.runContainer(s)));
    return this.end();
  }

  private async end(): Promise<void> {
    this.finished = true;
    this.publish();
    if (this.deletionGrace !== undefined) await this.finishDeletion();
  }

  /** Runs one container to its end; its exit code, or undefined if it never started. */
  private async runContainer(slot: Slot): Promise<number | undefined> {
    const c = slot.spec;
    let env: Map<string, string> | undefined;
    while (!env) {
      if (this.halted) return undefined;
      try {
        env = await containerEnv(this.pod, c, this.ctx.objects, this.ctx.serviceEnv);
      } catch (err) {
        const message = err instanceof ConfigError ? err.message : describeError(err);
        this.setState(slot, { waiting: { reason: "CreateContainerConfigError", message } });
        await pause(this.ctx.retryIntervalMs, this.halt.signal);
      }
    }
    // The spec cannot change, so these wait for the deletion, as the kubelet's retries would.
    const problem = unstartable(this.pod, c);
    if (problem) {
      this.setState(slot, { waiting: problem });
      await untilAborted(this.halt.signal);
      return undefined;
    }

    slot.containerID = `test-kubelet://${randomBytes(32).toString("hex")}`;
    let launch: Launch;
    try {
      launch = await prepareLaunch(this.pod, c, env, this.dir, this.volumes, this.ctx.tools);
    } catch (err) {
      const message = err instanceof MountError ? err.message : describeError(err);
      return this.terminated(slot, 128, "StartError", `test kubelet: ${message}`, neverStarted);
    }
    if (this.halted) return undefined;

    const { groups, tools } = this.ctx;
    const proc = new ContainerProcess({ ...launch, tools, groups, output: slot.output });
    slot.process = proc;
    const startedAt = timestamp();
    if (await proc.started) {
      slot.started = true;
      this.setState(slot, { running: { startedAt } });
    }
    const exit = await proc.exited;
    slot.started = false;
    if (!exit.started) {
      const why = slot.output.bytes().subarray(-1024).toString("utf8").trim();
      return this.terminated(slot, 128, "StartError", why, neverStarted);
    }
    const file = await readFile(launch.terminationFile).catch(() => Buffer.alloc(0));
    const message = terminationMessage(file, c.terminationMessagePolicy, exit.exitCode, slot.output.bytes());
    const reason = exit.exitCode === 0 ? "Completed" : "Error";
    return this.terminated(slot, exit.exitCode, reason, message, startedAt);
  }

  private terminated(
    slot: Slot,
    exitCode: number,
    reason: string,
    message: string,
    startedAt: string,
  ): number {
    this.setState(slot, {
      terminated: {
        exitCode,
        reason,
        ...(message ? { message } : {}),
        startedAt,
        finishedAt: timestamp(),
        ...(slot.containerID ? { containerID: slot.containerID } : {}),
      },
    });
    return exitCode;
  }

  private setState(slot: Slot, state: Slot["state"]): void {
    slot.state = state;
    this.publish();
  }

  private setWaitingMessage(message: string | undefined): void {
    for (const s of this.slots) {
      if ("waiting" in s.state)
        s.state = { waiting: { reason: s.state.waiting.reason, ...(message ? { message } : {}) } };
    }
    this.publish();
  }

  private publish(): void {
    this.status.publish({
      init: this.slots.filter((s) => s.init),
      main: this.slots.filter((s) => !s.init),
      sandboxReady: this.sandboxReady,
      generation: this.pod.metadata?.generation,
    });
  }

  /** The kubelet's last word on a deleted pod: delete it with grace period 0, then clean up. */
  private finishDeletion(): Promise<void> {
    this.deleting ??= (async () => {
      await this.status.idle();
      await this.downwardWrites;
      if (this.stopping) return;
      if (!this.gone) {
        try {
          await this.ctx.core.deleteNamespacedPod({
            name: this.name,
            namespace: this.namespace,
            gracePeriodSeconds: 0,
            body: { gracePeriodSeconds: 0, preconditions: { uid: this.uid } },
          });
        } catch (err) {
          if (!isNotFound(err) && !isConflict(err)) {
            this.ctx.log(`pod ${this.namespace}/${this.name}: delete failed: ${describeError(err)}`);
          }
        }
      }
      await rm(this.dir, { recursive: true, force: true });
    })();
    return this.deleting;
  }
}

function downwardSource(pod: V1Pod): string {
  return JSON.stringify([pod.metadata?.labels ?? {}, pod.metadata?.annotations ?? {}]);
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => undefined);
}
