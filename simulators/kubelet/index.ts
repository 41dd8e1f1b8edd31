// A kubelet for tests: no real kubelet (nor scheduler) runs on the local control plane, so this one
// registers a Node, binds unscheduled pods to it through pods/binding, and runs each pod's
// containers for real as local processes, with the pod's env and volumes mounted in a private
// mount namespace, writing pod status through pods/status the way the kubelet does. A test can
// then prove what a step really saw. The image is ignored: commands are the host's.
//
//   const kubelet = await startTestKubelet(cluster.kc, { namespace: ns });
//   t.after(() => kubelet.stop());
//
// Needs root (mount namespaces, bind mounts, setpriv) and util-linux. Several may run in one
// process, each scoped to its own namespace. The parts are the other files here (README.md lists
// them); tekton.ts is what lets Tekton's own TaskRun pods run (its entrypoint binary, emulated).
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { CoreV1Api, Watch, type KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { startLogServer, type LogServer } from "./logs.ts";
import { findTools, registerNode, serviceEnv } from "./node.ts";
import { apiObjects, describeError, isConflict, isNotFound } from "./objects.ts";
import { behaviourAnnotation, PodRunner, type ContainerProcessInfo, type RunnerContext } from "./pod.ts";
import { ProcessGroups } from "./process.ts";

export { behaviourAnnotation, type ContainerProcessInfo };

export interface TestKubeletOptions {
  /** Default `test-node-<random>`. */
  nodeName?: string;
  /** Watch and bind pods of this namespace only; default all namespaces. */
  namespace?: string;
  /** How often a container waiting for a Secret, ConfigMap or volume tries again; default 500 ms. */
  retryIntervalMs?: number;
  /** Diagnostics (never secret values); default silent. */
  log?: (line: string) => void;
}

export interface TestKubelet {
  readonly nodeName: string;
  /** Captured stdout and stderr (last 1 MiB) of one container, or of all of the pod's in order. */
  output(namespace: string, podName: string, container?: string): string;
  /** Where a volume of the pod lives on the host (e.g. an emptyDir's results), until it is deleted. */
  volumePath(namespace: string, podName: string, volume: string): string | undefined;
  /** The processes started for the pod's containers. */
  processes(namespace: string, podName: string): ContainerProcessInfo[];
  /** Kills every process it started and stops watching; pods are left as they are. */
  stop(): Promise<void>;
}

export async function startTestKubelet(kc: KubeConfig, opts: TestKubeletOptions = {}): Promise<TestKubelet> {
  const tools = await findTools();
  const core = kc.makeApiClient(CoreV1Api);
  const nodeName = opts.nodeName ?? `test-node-${randomBytes(4).toString("hex")}`;
  // Pods' volumes and termination files; a kubelet's /var/lib/kubelet/pods.
  const baseDir = await mkdtemp(path.join(os.tmpdir(), "test-kubelet-"));
  // The server starts first, as the Node advertises its port; it answers once the kubelet is made.
  const made: { kubelet?: Kubelet } = {};
  const logs = await startLogServer(baseDir, (ns, pod, container) =>
    made.kubelet?.logsOf(ns, pod, container),
  );
  try {
    await registerNode(kc, core, nodeName, logs.port);
  } catch (err) {
    await logs.close();
    await rm(baseDir, { recursive: true, force: true });
    throw err;
  }
  const ctx: RunnerContext = {
    core,
    objects: apiObjects(core, kc),
    groups: new ProcessGroups(tools.sh, baseDir),
    tools,
    baseDir,
    retryIntervalMs: opts.retryIntervalMs ?? 500,
    serviceEnv: serviceEnv(kc),
    log: opts.log ?? (() => undefined),
  };
  const kubelet = new Kubelet(kc, ctx, nodeName, opts.namespace, logs);
  made.kubelet = kubelet;
  try {
    await kubelet.start();
  } catch (err) {
    await kubelet.stop();
    throw err;
  }
  return kubelet;
}

class Kubelet implements TestKubelet {
  readonly nodeName: string;
  private readonly ctx: RunnerContext;
  private readonly namespace: string | undefined;
  private readonly watch: Watch;
  private readonly runners = new Map<string, PodRunner>();
  private readonly byName = new Map<string, PodRunner>();
  private readonly handled = new Set<string>();
  private readonly pending = new Set<Promise<void>>();
  private readonly stopping = new AbortController();
  private abortWatch: AbortController | undefined;
  private loop: Promise<void> = Promise.resolve();
  private readonly logs: LogServer;

  constructor(
    kc: KubeConfig,
    ctx: RunnerContext,
    nodeName: string,
    namespace: string | undefined,
    logs: LogServer,
  ) {
    this.ctx = ctx;
    this.logs = logs;
    this.nodeName = nodeName;
    this.namespace = namespace;
    this.watch = new Watch(kc);
  }

  /** Lists once (so pods that exist now are handled), then watches in the background. */
  async start(): Promise<void> {
    const rv = await this.relist();
    this.loop = this.watchLoop(rv);
  }

  output(namespace: string, podName: string, container?: string): string {
    return this.byName.get(`${namespace}/${podName}`)?.output(container) ?? "";
  }

  /** One container's output, for the log endpoint; undefined when no such container ran here. */
  logsOf(namespace: string, podName: string, container: string): string | undefined {
    const runner = this.byName.get(`${namespace}/${podName}`);
    return runner?.hasContainer(container) ? runner.output(container) : undefined;
  }

  volumePath(namespace: string, podName: string, volume: string): string | undefined {
    return this.byName.get(`${namespace}/${podName}`)?.volumePath(volume);
  }

  processes(namespace: string, podName: string): ContainerProcessInfo[] {
    return this.byName.get(`${namespace}/${podName}`)?.processes() ?? [];
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.abortWatch?.abort();
    await Promise.all([...this.runners.values()].map((r) => r.shutdown()));
    await this.loop;
    await Promise.all(this.pending);
    await this.ctx.groups.close();
    await this.logs.close();
    await rm(this.ctx.baseDir, { recursive: true, force: true });
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  // List, then watch from the list's resourceVersion; after a watch ends, watch again from the
  // last version seen, or list again when the version expired (410) or the watch failed.
  private async watchLoop(rv: string): Promise<void> {
    let relist = false;
    while (!this.stopped) {
      if (relist) {
        try {
          rv = await this.relist();
        } catch (err) {
          this.ctx.log(`listing pods failed: ${describeError(err)}`);
          await delay(1000, undefined, { signal: this.stopping.signal }).catch(() => undefined);
          continue;
        }
      }
      ({ rv, relist } = await this.watchOnce(rv));
    }
  }

  private async relist(): Promise<string> {
    const { core } = this.ctx;
    const list = this.namespace
      ? await core.listNamespacedPod({ namespace: this.namespace })
      : await core.listPodForAllNamespaces();
    const present = new Set(list.items.map((p) => p.metadata?.uid));
    for (const [uid, runner] of this.runners) if (!present.has(uid)) runner.vanished(undefined);
    for (const pod of list.items) this.seen(pod);
    return list.metadata?.resourceVersion ?? "";
  }

  private watchOnce(rv: string): Promise<{ rv: string; relist: boolean }> {
    const url = this.namespace ? `/api/v1/namespaces/${this.namespace}/pods` : "/api/v1/pods";
    return new Promise((resolve) => {
      let last = rv;
      let expired = false;
      const started = this.watch.watch(
        url,
        { resourceVersion: rv, allowWatchBookmarks: true },
        (type: string, obj: V1Pod) => {
          if (type === "ERROR") {
            // Typically 410 Gone: the version is too old to watch from.
            expired = true;
            void started.then((c) => c.abort());
            return;
          }
          last = obj.metadata?.resourceVersion ?? last;
          if (type === "DELETED") this.runners.get(obj.metadata?.uid ?? "")?.vanished(obj);
          else if (type !== "BOOKMARK") this.seen(obj);
        },
        (err: unknown) => {
          // The client ends a watch that is silent for 30 s; that is no reason to list again.
          const timeout = err instanceof Error && err.name === "TimeoutError";
          if (err && !timeout && !this.stopped) this.ctx.log(`pod watch ended: ${describeError(err)}`);
          resolve({ rv: last, relist: expired || (Boolean(err) && !timeout) });
        },
      );
      void started.then((c) => {
        this.abortWatch = c;
        if (this.stopped) c.abort();
      });
    });
  }

  private seen(pod: V1Pod): void {
    const meta = pod.metadata;
    const uid = meta?.uid;
    if (!uid || this.stopped) return;
    const nodeName = pod.spec?.nodeName;
    if (!nodeName) {
      if (
        !meta.deletionTimestamp &&
        (pod.spec?.schedulerName ?? "default-scheduler") === "default-scheduler"
      ) {
        this.once(`bind/${uid}`, () => this.bind(pod));
      }
      return;
    }
    if (nodeName !== this.nodeName) return;
    let runner = this.runners.get(uid);
    if (!runner) {
      const phase = pod.status?.phase;
      if (phase === "Succeeded" || phase === "Failed") {
        // Finished before this kubelet saw it (a relist): only a deletion is left to complete.
        if (meta.deletionTimestamp) this.once(`delete/${uid}`, () => this.deleteNow(pod));
        return;
      }
      runner = new PodRunner(this.ctx, pod);
      this.runners.set(uid, runner);
      this.byName.set(`${runner.namespace}/${runner.name}`, runner);
      runner.observe(pod);
      runner.start();
      return;
    }
    runner.observe(pod);
  }

  /** What a scheduler does: bind the pod to this node. */
  private async bind(pod: V1Pod): Promise<void> {
    const { name = "", namespace = "default", uid } = pod.metadata ?? {};
    try {
      await this.ctx.core.createNamespacedPodBinding({
        name,
        namespace,
        body: {
          metadata: { name, namespace, uid },
          target: { apiVersion: "v1", kind: "Node", name: this.nodeName },
        },
      });
    } catch (err) {
      // Conflict: bound already, by another test kubelet watching the same namespace.
      if (isConflict(err) || isNotFound(err)) return;
      this.ctx.log(`binding ${namespace}/${name} failed: ${describeError(err)}`);
      this.handled.delete(`bind/${uid ?? ""}`);
    }
  }

  private async deleteNow(pod: V1Pod): Promise<void> {
    const { name = "", namespace = "default", uid } = pod.metadata ?? {};
    try {
      await this.ctx.core.deleteNamespacedPod({
        name,
        namespace,
        gracePeriodSeconds: 0,
        body: { gracePeriodSeconds: 0, preconditions: { uid } },
      });
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err))
        this.ctx.log(`deleting ${namespace}/${name}: ${describeError(err)}`);
    }
  }

  /** Runs an action once per key, tracked so that stop() waits for it. */
  private once(key: string, action: () => Promise<void>): void {
    if (this.handled.has(key)) return;
    this.handled.add(key);
    const p = action().finally(() => this.pending.delete(p));
    this.pending.add(p);
  }
}
