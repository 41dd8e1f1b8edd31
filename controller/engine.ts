// The engine: while this replica leads, watch CustomRuns and the step pods they own, queue run
// keys, and reconcile each with the task type's lifecycle. It knows nothing of the domain beyond
// "a CustomRun key" and the reconcile function it is given.
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
  type V1Pod,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { labels, managedByValue } from "../tasks/scoped-step/pod.ts";
import { ConflictError, type Next } from "../tasks/scoped-step/ports.ts";
import { isScopedStepRun, type CustomRun } from "../tasks/scoped-step/types.ts";
import { Informer, objectKey, type ListResult } from "./informer.ts";
import { customRuns } from "./kube.ts";
import { LeaderElector } from "./leader.ts";
import { WorkQueue, type QueueStats } from "./queue.ts";

export interface EngineConfig {
  /** Namespaces to watch; empty means all. */
  namespaces: string[];
  concurrency: number;
  resyncMs: number;
  lease: {
    namespace: string;
    name: string;
    identity: string;
    durationSeconds: number;
    renewDeadlineMs: number;
    retryPeriodMs: number;
  };
}

export interface EngineHooks {
  reconcile: (namespace: string, name: string) => Promise<Next>;
  onStoppedLeading: () => void;
  onReconciled?: (seconds: number, outcome: "ok" | "error" | "conflict") => void;
  onQueue?: (queue: WorkQueue) => void;
}

export interface Engine {
  isLeader: () => boolean;
  /** The CustomRuns in the informer cache (only while leading). */
  runs: () => Iterable<CustomRun>;
  synced: () => boolean;
  queueStats: () => QueueStats;
  stop: (graceMs: number) => Promise<void>;
}

export function startEngine(kc: KubeConfig, config: EngineConfig, hooks: EngineHooks, log: Logger): Engine {
  const objects = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const informers: Informer<KubernetesObject>[] = [];
  const runInformers: Informer<CustomRun>[] = [];
  const queue = new WorkQueue({
    concurrency: config.concurrency,
    process: async (key) => {
      const [namespace = "", name = ""] = key.split("/");
      const started = process.hrtime.bigint();
      log.debug({ key }, "reconciling");
      try {
        const next = await hooks.reconcile(namespace, name);
        hooks.onReconciled?.(Number(process.hrtime.bigint() - started) / 1e9, "ok");
        return next;
      } catch (err) {
        hooks.onReconciled?.(
          Number(process.hrtime.bigint() - started) / 1e9,
          err instanceof ConflictError ? "conflict" : "error",
        );
        throw err;
      }
    },
    isRetryNow: (err) => err instanceof ConflictError,
    onError: (key, err, failures) =>
      log.error({ err, key, failures }, "reconcile failed; will retry with backoff"),
  });
  hooks.onQueue?.(queue);

  const scopes = config.namespaces.length > 0 ? config.namespaces : [undefined];
  const startWatching = () => {
    for (const ns of scopes) {
      const runs = new Informer<CustomRun>({
        kc,
        log,
        resyncMs: config.resyncMs,
        watchPath: ns
          ? `/apis/tekton.dev/v1beta1/namespaces/${ns}/customruns`
          : "/apis/tekton.dev/v1beta1/customruns",
        list: async (): Promise<ListResult<CustomRun>> => {
          const res = (
            ns
              ? await objects.listNamespacedCustomObject({ ...customRuns, namespace: ns })
              : await objects.listClusterCustomObject({ ...customRuns })
          ) as { items: CustomRun[]; metadata: { resourceVersion: string } };
          return { items: res.items, resourceVersion: res.metadata.resourceVersion };
        },
        onChange: (run) => {
          if (isScopedStepRun(run)) queue.add(objectKey(run));
        },
      });
      const selector = `${labels.managedBy}=${managedByValue}`;
      const pods = new Informer<V1Pod>({
        kc,
        log,
        resyncMs: config.resyncMs,
        labelSelector: selector,
        watchPath: ns ? `/api/v1/namespaces/${ns}/pods` : "/api/v1/pods",
        list: async () => {
          const res = ns
            ? await core.listNamespacedPod({ namespace: ns, labelSelector: selector })
            : await core.listPodForAllNamespaces({ labelSelector: selector });
          return { items: res.items, resourceVersion: res.metadata?.resourceVersion ?? "" };
        },
        onChange: (pod, kind) => {
          if (kind === "resync") return;
          const owner = pod.metadata?.ownerReferences?.find((o) => o.kind === "CustomRun" && o.controller);
          if (owner) queue.add(`${pod.metadata?.namespace ?? ""}/${owner.name}`);
        },
      });
      runInformers.push(runs);
      informers.push(runs as unknown as Informer<KubernetesObject>, pods);
      runs.start();
      pods.start();
    }
  };

  const leader = new LeaderElector({
    kc,
    namespace: config.lease.namespace,
    name: config.lease.name,
    identity: config.lease.identity,
    leaseDurationSeconds: config.lease.durationSeconds,
    renewDeadlineMs: config.lease.renewDeadlineMs,
    retryPeriodMs: config.lease.retryPeriodMs,
    log,
    onStartedLeading: startWatching,
    onStoppedLeading: () => {
      for (const i of informers) i.stop();
      void queue.shutdown(0);
      hooks.onStoppedLeading();
    },
  });
  leader.start();

  return {
    isLeader: () => leader.isLeader,
    *runs() {
      for (const informer of runInformers) yield* informer.cache.values();
    },
    synced: () => informers.length > 0 && informers.every((i) => i.synced),
    queueStats: () => queue.stats(),
    async stop(graceMs) {
      for (const i of informers) i.stop();
      await queue.shutdown(graceMs);
      await leader.release();
    },
  };
}
