// Writes a pod's status through the pods/status subresource, as the kubelet's status manager does:
// after every change, in order, one write at a time, skipping writes that would change nothing.
import { setTimeout as delay } from "node:timers/promises";
import { PatchStrategy, setHeaderOptions, type CoreV1Api } from "@kubernetes/client-node";
import { hostIP } from "./env.ts";
import { describeError, isNotFound } from "./objects.ts";
import {
  containerStatus,
  podConditions,
  podPhase,
  timestamp,
  type Condition,
  type ContainerRecord,
} from "./status.ts";

export interface PodState {
  init: ContainerRecord[];
  main: ContainerRecord[];
  sandboxReady: boolean;
  generation: number | undefined;
}

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

export class StatusWriter {
  private readonly core: CoreV1Api;
  private readonly pod: { name: string; namespace: string; uid: string };
  private readonly log: (line: string) => void;
  private readonly startTime = timestamp();
  private readonly conditions = new Map<string, Condition>();
  private writes: Promise<void> = Promise.resolve();
  private last = "";
  private closed = false;

  constructor(
    core: CoreV1Api,
    pod: { name: string; namespace: string; uid: string },
    log: (line: string) => void,
  ) {
    this.core = core;
    this.pod = pod;
    this.log = log;
  }

  /** Queues a write of the status for this state, unless it is what was written last. */
  publish(state: PodState): void {
    if (this.closed) return;
    // The uid makes a write fail rather than land on a new pod of the same name.
    const body = { metadata: { uid: this.pod.uid }, status: this.status(state) };
    const json = JSON.stringify(body);
    if (json === this.last) return;
    this.last = json;
    this.writes = this.writes.then(() => this.write(body));
  }

  /** No more writes: the pod is gone, or the kubelet stops. */
  close(): void {
    this.closed = true;
  }

  /** Resolves when every queued write is done. */
  idle(): Promise<void> {
    return this.writes;
  }

  private status({ init, main, sandboxReady, generation }: PodState): Record<string, unknown> {
    // The kubelet sorts containerStatuses by name; init containers keep their order.
    const sorted = [...main].sort((a, b) => a.name.localeCompare(b.name));
    const now = timestamp();
    const conditions = podConditions(init, sorted, sandboxReady).map((c) => {
      const previous = this.conditions.get(c.type);
      const time = previous?.status === c.status ? previous.lastTransitionTime : now;
      const condition: Condition = { ...c, lastTransitionTime: time };
      this.conditions.set(c.type, condition);
      return condition;
    });
    return {
      ...(generation !== undefined ? { observedGeneration: generation } : {}),
      phase: podPhase(init, sorted),
      conditions,
      hostIP,
      hostIPs: [{ ip: hostIP }],
      ...(sandboxReady ? { podIP: hostIP, podIPs: [{ ip: hostIP }] } : {}),
      startTime: this.startTime,
      ...(init.length > 0 ? { initContainerStatuses: init.map(containerStatus) } : {}),
      containerStatuses: sorted.map(containerStatus),
    };
  }

  private async write(body: object): Promise<void> {
    const { name, namespace } = this.pod;
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await this.core.patchNamespacedPodStatus({ name, namespace, body }, mergePatch);
        return;
      } catch (err) {
        if (isNotFound(err)) return;
        if (attempt === 4) {
          this.log(`pod ${namespace}/${name}: status not written: ${describeError(err)}`);
          return;
        }
        await delay(100 * 2 ** attempt);
      }
    }
  }
}
