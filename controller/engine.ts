// The engine: while this replica leads, watch a primary type and the types it owns, queue the
// primary objects' keys, and reconcile each with the function it is given, as controller-runtime's
// builder does with For(...).Owns(...). It knows nothing of any task type: what to watch, which
// objects are its own and how to reconcile them are all handed in.
import { KubernetesObjectApi, type KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { Informer, objectKey, type ListResult } from "./informer.ts";
import { LeaderElector } from "./leader.ts";
import { WorkQueue } from "./queue.ts";

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

/** A namespaced resource type, as the API server names it. */
export interface ResourceType {
  /** e.g. "tekton.dev/v1beta1", or "v1" for the core group. */
  apiVersion: string;
  kind: string;
  /** e.g. "customruns". */
  plural: string;
}

export interface ControllerSpec<T extends KubernetesObject> {
  /** The type reconciled, and which of its objects are this controller's (all when unset). */
  for: ResourceType & { filter?: (obj: T) => boolean };
  /**
   * Types whose objects a primary object owns (as controller owner): a change to one queues its
   * owner. Only objects matching `labelSelector` are watched and cached.
   */
  owns: (ResourceType & { labelSelector?: string })[];
  /** One level-triggered pass over a primary object; may ask to be called again after a delay. */
  reconcile: (namespace: string, name: string) => Promise<{ requeueAfterMs?: number }>;
  /** Errors that mean "re-read and go again now" (lost an optimistic-concurrency race). */
  isConflict?: (err: unknown) => boolean;
}

export interface Engine<T extends KubernetesObject> {
  isLeader: () => boolean;
  /** The primary objects in the informer cache, filtered (only while leading). */
  objects: () => Iterable<T>;
  synced: () => boolean;
  /** The work queue, for observers of its events and for changing its concurrency. */
  queue: WorkQueue;
  stop: (graceMs: number) => Promise<void>;
}

const groupOf = (apiVersion: string) => (apiVersion.includes("/") ? (apiVersion.split("/")[0] ?? "") : "");

const collectionPath = (type: ResourceType, namespace: string | undefined) =>
  [
    type.apiVersion.includes("/") ? `/apis/${type.apiVersion}` : `/api/${type.apiVersion}`,
    ...(namespace ? ["namespaces", namespace] : []),
    type.plural,
  ].join("/");

export function startEngine<T extends KubernetesObject>(
  kc: KubeConfig,
  config: EngineConfig,
  controller: ControllerSpec<T>,
  hooks: { onStoppedLeading: () => void },
  log: Logger,
): Engine<T> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  const informers: Informer<KubernetesObject>[] = [];
  const primaries: Informer<T>[] = [];
  const mine = (obj: T) => controller.for.filter?.(obj) ?? true;
  const queue = new WorkQueue({
    concurrency: config.concurrency,
    process: (key) => {
      const [namespace = "", name = ""] = key.split("/");
      log.debug({ key }, "reconciling");
      return controller.reconcile(namespace, name);
    },
    ...(controller.isConflict ? { isRetryNow: controller.isConflict } : {}),
  });
  queue.on("retry", (key, err, failures) =>
    log.error({ err, key, failures }, "reconcile failed; will retry with backoff"),
  );

  const informer = <O extends KubernetesObject>(
    type: ResourceType & { labelSelector?: string },
    namespace: string | undefined,
    onChange: (obj: O, kind: "added" | "modified" | "deleted" | "resync") => void,
  ) =>
    new Informer<O>({
      kc,
      log,
      resyncMs: config.resyncMs,
      watchPath: collectionPath(type, namespace),
      ...(type.labelSelector ? { labelSelector: type.labelSelector } : {}),
      list: async (): Promise<ListResult<O>> => {
        const res = await api.list<O>(
          type.apiVersion,
          type.kind,
          namespace,
          undefined,
          undefined,
          undefined,
          undefined,
          type.labelSelector,
        );
        return { items: res.items, resourceVersion: res.metadata?.resourceVersion ?? "" };
      },
      onChange,
    });

  // An owner reference names its owner's kind and group; any version of them is the same object.
  const primaryGroup = groupOf(controller.for.apiVersion);
  const scopes = config.namespaces.length > 0 ? config.namespaces : [undefined];
  const startWatching = () => {
    for (const ns of scopes) {
      const primary = informer<T>(controller.for, ns, (obj) => {
        if (mine(obj)) queue.add(objectKey(obj));
      });
      primaries.push(primary);
      informers.push(primary as unknown as Informer<KubernetesObject>);
      for (const owned of controller.owns) {
        informers.push(
          informer(owned, ns, (obj, kind) => {
            if (kind === "resync") return;
            const owner = obj.metadata?.ownerReferences?.find(
              (o) => o.controller && o.kind === controller.for.kind && groupOf(o.apiVersion) === primaryGroup,
            );
            if (owner) queue.add(`${obj.metadata?.namespace ?? ""}/${owner.name}`);
          }),
        );
      }
    }
    for (const i of informers) i.start();
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
    *objects() {
      for (const i of primaries) for (const obj of i.cache.values()) if (mine(obj)) yield obj;
    },
    synced: () => informers.length > 0 && informers.every((i) => i.synced),
    queue,
    async stop(graceMs) {
      for (const i of informers) i.stop();
      await queue.shutdown(graceMs);
      await leader.release();
    },
  };
}
