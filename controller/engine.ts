// The engine: while this replica leads, watch a primary type and the types it owns, queue the
// primary objects' keys, and reconcile each with the function it is given, as controller-runtime's
// builder does with For(...).Owns(...). It knows nothing of any task type: what to watch, which
// objects are its own and how to reconcile them are all handed in.
import type { Logger } from "pino";
import { Informer, objectKey, type KubernetesObject } from "./informer.ts";
import { resourcePath, type Kube } from "./kube-client.ts";
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

/** Which objects of a type to watch, and what of each to cache (undefined: not ours, not cached). */
export interface Watched<T> extends ResourceType {
  labelSelector?: string;
  keep?: (obj: T) => T | undefined;
  /**
   * Objects that need no more passes (a finished run, cleaned up): they leave the cache quietly,
   * and so do the owned objects of theirs. Only for the primary type.
   */
  forget?: (obj: T) => boolean;
}

export interface ControllerSpec<T extends KubernetesObject> {
  /** The type reconciled; `keep` says which of its objects are this controller's. */
  for: Watched<T>;
  /**
   * Types whose objects a primary object owns (as controller owner): a change to one queues its
   * owner. Only objects matching `labelSelector` are watched, and only what `keep` returns cached.
   */
  owns: Watched<KubernetesObject>[];
  /** One level-triggered pass over a primary object; may ask to be called again after a delay. */
  reconcile: (namespace: string, name: string) => Promise<{ requeueAfterMs?: number }>;
  /** Errors that mean "re-read and go again now" (lost an optimistic-concurrency race). */
  isConflict?: (err: unknown) => boolean;
}

/** Reads of an informer cache that see this process's own writes at once. */
export interface Store<T> {
  get: (namespace: string, name: string) => T | undefined;
  /** Records an object this process wrote, before its watch event comes back. */
  wrote: (obj: T) => void;
}

export interface Engine<T extends KubernetesObject> {
  isLeader: () => boolean;
  /** The primary objects in the informer cache (only while leading). */
  objects: () => Iterable<T>;
  primary: Store<T>;
  /** The cache of each owned type, by plural. */
  owned: (plural: string) => Store<KubernetesObject>;
  synced: () => boolean;
  /** How many objects each cache holds, by plural (only while leading). */
  cached: () => Record<string, number>;
  /** The work queue, for observers of its events and for changing its concurrency. */
  queue: WorkQueue;
  stop: (graceMs: number) => Promise<void>;
}

const groupOf = (apiVersion: string) => (apiVersion.includes("/") ? (apiVersion.split("/")[0] ?? "") : "");

/** After a conflict the cache is behind; the newer version's watch event queues the key, this is a backstop. */
const conflictRetryMs = 1000;

function storeOf<T extends KubernetesObject>(informers: Informer<T>[]): Store<T> {
  return {
    get: (namespace, name) => {
      for (const i of informers) {
        const obj = i.get(`${namespace}/${name}`);
        if (obj) return obj;
      }
      return undefined;
    },
    wrote: (obj) => {
      const namespace = obj.metadata?.namespace;
      // Each informer covers one namespace (or all): the first that knows the object takes it.
      const informer = informers.find((i) => i.covers(namespace)) ?? informers[0];
      informer?.wrote(obj);
    },
  };
}

export function startEngine<T extends KubernetesObject>(
  kube: Kube,
  config: EngineConfig,
  controller: ControllerSpec<T>,
  hooks: { onStoppedLeading: () => void },
  log: Logger,
): Engine<T> {
  const informers: Informer<KubernetesObject>[] = [];
  const primaries: Informer<T>[] = [];
  const ownedInformers = new Map<string, Informer<KubernetesObject>[]>(
    controller.owns.map((o) => [o.plural, []]),
  );
  // A pass reads the caches, so none runs before every cache holds its first list.
  let synced: Promise<void> | undefined;
  const queue = new WorkQueue({
    concurrency: config.concurrency,
    process: async (key) => {
      await synced;
      const [namespace = "", name = ""] = key.split("/");
      log.debug({ key }, "reconciling");
      return controller.reconcile(namespace, name);
    },
    ...(controller.isConflict ? { isConflict: controller.isConflict, conflictRetryMs } : {}),
  });
  queue.on("retry", (key, err, failures) =>
    log.error({ err, key, failures }, "reconcile failed; will retry with backoff"),
  );

  // An owner reference names its owner's kind and group; any version of them is the same object.
  const primaryGroup = groupOf(controller.for.apiVersion);
  const informer = <O extends KubernetesObject>(
    type: Watched<O>,
    namespace: string | undefined,
    onChange: (obj: O, kind: "added" | "modified" | "deleted" | "resync", echo?: boolean) => void,
  ) =>
    new Informer<O>({
      kube,
      log,
      resyncMs: config.resyncMs,
      path: resourcePath(type, namespace),
      ...(namespace ? { namespace } : {}),
      ...(type.labelSelector ? { labelSelector: type.labelSelector } : {}),
      ...(type.keep ? { keep: type.keep } : {}),
      ...(type.forget ? { forget: type.forget, onForget: pruneOwned } : {}),
      onChange,
    });

  // The owner an owned object names as its controller, as a primary cache key.
  const ownerKey = (obj: KubernetesObject) => {
    const owner = obj.metadata?.ownerReferences?.find(
      (o) => o.controller && o.kind === controller.for.kind && groupOf(o.apiVersion) === primaryGroup,
    );
    return owner ? `${obj.metadata?.namespace ?? ""}/${owner.name}` : undefined;
  };
  // Owned objects whose owner is not cached (forgotten, or gone) need no pass either. Only once
  // every cache holds its first list: before that, an owner may just not have arrived yet.
  function pruneOwned(): void {
    if (!informers.every((i) => i.synced)) return;
    const cached = (key: string) => primaries.some((p) => p.cache.has(key));
    for (const owned of ownedInformers.values())
      for (const i of owned)
        i.forgetWhere((obj) => {
          const key = ownerKey(obj);
          return key !== undefined && !cached(key);
        });
  }

  const scopes = config.namespaces.length > 0 ? config.namespaces : [undefined];
  const startWatching = () => {
    for (const ns of scopes) {
      // The echo of an object this process wrote needs no pass: the pass that wrote it said what
      // comes next (a requeue, or nothing until something else changes).
      const primary = informer<T>(controller.for, ns, (obj, _kind, echo) => {
        if (!echo) queue.add(objectKey(obj));
      });
      primaries.push(primary);
      informers.push(primary as unknown as Informer<KubernetesObject>);
      for (const owned of controller.owns) {
        // An owned object's echo (the pod a pass just created) needs no pass either.
        const i = informer(owned, ns, (obj, kind, echo) => {
          if (kind === "resync" || echo) return;
          const owner = ownerKey(obj);
          if (owner) queue.add(owner);
        });
        informers.push(i);
        ownedInformers.get(owned.plural)?.push(i);
      }
    }
    synced = Promise.all(informers.map((i) => i.whenSynced())).then(pruneOwned);
    for (const i of informers) i.start();
  };

  const leader = new LeaderElector({
    kube,
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
      for (const i of primaries) yield* i.cache.values();
    },
    primary: storeOf(primaries),
    owned: (plural) => storeOf(ownedInformers.get(plural) ?? []),
    synced: () => informers.length > 0 && informers.every((i) => i.synced),
    cached: () => {
      const size = (list: { cache: Map<string, unknown> }[]) => list.reduce((n, i) => n + i.cache.size, 0);
      const sizes: Record<string, number> = { [controller.for.plural]: size(primaries) };
      for (const [plural, list] of ownedInformers) sizes[plural] = size(list);
      return sizes;
    },
    queue,
    async stop(graceMs) {
      for (const i of informers) i.stop();
      await queue.shutdown(graceMs);
      await leader.release();
    },
  };
}
