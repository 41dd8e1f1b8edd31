// List, then watch from the list's resourceVersion; on a watch error or 410 Gone, list again;
// resync every key periodically. Keeps a cache by namespace/name and reports each change.
// Objects pass through `keep` on arrival: it returns what to cache (a trimmed copy), or undefined
// for objects that are none of the owner's business, which are then neither cached nor reported.
// Objects `forget` matches need nothing more (a finished run, cleaned up): they leave the cache
// without a report, so memory holds what is in progress, not everything that ever ran.
import type { Logger } from "pino";
import type { Kube, WatchEvent } from "./kube-client.ts";

/** The least every cached object has. */
export interface KubernetesObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
  };
}

export interface InformerOptions<T extends KubernetesObject> {
  kube: Kube;
  /** API path of the collection, e.g. /apis/tekton.dev/v1beta1/customruns. */
  path: string;
  /** The one namespace the path covers; unset for all namespaces. */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** What to cache of an object that arrives; undefined to ignore it. Default: the object. */
  keep?: (obj: T) => T | undefined;
  /** Objects that need nothing more: dropped from the cache, not reported. Default: none. */
  forget?: (obj: T) => boolean;
  /** Called with each object `forget` dropped from the cache. */
  onForget?: (obj: T) => void;
  resyncMs: number;
  log: Logger;
  /**
   * Each change. `echo`: the event brings back exactly the version this process wrote (`wrote`),
   * which the writer has already acted on.
   */
  onChange: (obj: T, kind: "added" | "modified" | "deleted" | "resync", echo?: boolean) => void;
}

export const objectKey = (o: KubernetesObject): string =>
  `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;

/**
 * Whether resourceVersion `a` is older than `b`. Kubernetes calls resourceVersions opaque; every
 * API server stores them as etcd revisions, which are integers, and only a comparison of two
 * versions of the same object the same server returned is made here.
 */
function olderThan(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return false;
  return BigInt(a) < BigInt(b);
}

/** Whether two kept forms of an object differ in nothing but their resourceVersion. */
function sameKept(a: KubernetesObject, b: KubernetesObject): boolean {
  const unversioned = (o: KubernetesObject) =>
    JSON.stringify({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } });
  return unversioned(a) === unversioned(b);
}

export class Informer<T extends KubernetesObject> {
  readonly cache = new Map<string, T>();
  /** Objects this process wrote whose watch event has not arrived yet: read your own writes. */
  private readonly written = new Map<string, T>();
  synced = false;
  private readonly syncWaiters: (() => void)[] = [];
  private abort?: { abort: () => void };
  private stopped = false;
  private resyncTimer?: NodeJS.Timeout;
  private readonly opts: InformerOptions<T>;

  constructor(opts: InformerOptions<T>) {
    this.opts = opts;
  }

  start(): void {
    void this.relist();
    this.resyncTimer = setInterval(() => {
      for (const obj of this.cache.values()) this.opts.onChange(obj, "resync");
    }, this.opts.resyncMs);
    this.resyncTimer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    this.abort?.abort();
  }

  /** Resolves once the first list is in the cache. */
  whenSynced(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  /** Whether objects of this namespace come through this informer. */
  covers(namespace: string | undefined): boolean {
    return this.opts.namespace === undefined || this.opts.namespace === namespace;
  }

  /** The cached object, or the newer one this process wrote if its event has not arrived yet. */
  get(key: string): T | undefined {
    return this.written.get(key) ?? this.cache.get(key);
  }

  /** Records an object this process just wrote, so the next read sees it before its watch event. */
  wrote(obj: T): void {
    if (this.forgotten(objectKey(obj), obj)) return;
    const kept = this.keep(obj);
    if (!kept) return;
    const key = objectKey(kept);
    const cached = this.cache.get(key);
    const version = kept.metadata?.resourceVersion;
    if (cached?.metadata?.resourceVersion === version) return;
    if (olderThan(version, cached?.metadata?.resourceVersion)) return;
    this.written.set(key, kept);
  }

  private keep(obj: T): T | undefined {
    return this.opts.keep ? this.opts.keep(obj) : obj;
  }

  /** Whether `forget` matches the object; if so, it is no longer cached (and was not reported). */
  private forgotten(key: string, obj: T): boolean {
    if (!this.opts.forget?.(obj)) return false;
    const cached = this.cache.get(key) ?? this.written.get(key);
    this.cache.delete(key);
    this.written.delete(key);
    if (cached) this.opts.onForget?.(cached);
    return true;
  }

  /** Drops every cached object `match` selects, without a report. */
  forgetWhere(match: (obj: T) => boolean): void {
    for (const [key, obj] of this.cache) if (match(obj)) this.cache.delete(key);
    for (const [key, obj] of this.written) if (match(obj)) this.written.delete(key);
  }

  /** A newer version arrived from the API server: what this process wrote is no longer newer. */
  private caughtUp(key: string, version: string | undefined): void {
    const mine = this.written.get(key)?.metadata?.resourceVersion;
    if (mine === undefined) return;
    if (mine === version || olderThan(mine, version)) this.written.delete(key);
  }

  /** Watches that ended in an error in a row; spaces out relists so a refused watch cannot spin. */
  private watchFailures = 0;

  private async relist(attempt = 0): Promise<void> {
    if (this.stopped) return;
    let listed: { items: T[]; metadata?: { resourceVersion?: string } };
    try {
      listed = await this.opts.kube.request("GET", this.opts.path, {
        query: { labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector },
      });
    } catch (err) {
      const delay = Math.min(30_000, 250 * 2 ** attempt);
      this.opts.log.warn({ err, path: this.opts.path, retryInMs: delay }, "list failed");
      setTimeout(() => void this.relist(attempt + 1), delay).unref();
      return;
    }
    // A list is current: nothing written before it can be newer than what it holds.
    this.written.clear();
    const seen = new Set<string>();
    for (const item of listed.items) {
      if (this.forgotten(objectKey(item), item)) continue;
      const obj = this.keep(item);
      if (!obj) continue;
      const key = objectKey(obj);
      seen.add(key);
      this.cache.set(key, obj);
      this.opts.onChange(obj, "resync");
    }
    for (const [key, obj] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.opts.onChange(obj, "deleted");
      }
    }
    if (!this.synced) {
      this.synced = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
    }
    this.watch(listed.metadata?.resourceVersion ?? "");
  }

  /** The last resourceVersion seen on the watch: where the next watch resumes. */
  private lastVersion = "";

  private watch(resourceVersion: string): void {
    if (this.stopped) return;
    this.lastVersion = resourceVersion;
    let gone = false;
    const ended = (err?: unknown) => {
      if (this.stopped) return;
      // A plain end (server timeout) resumes from the last version; anything else lists again.
      if (!err && !gone) {
        this.watchFailures = 0;
        this.watch(this.lastVersion);
        return;
      }
      this.watchFailures = gone ? 0 : this.watchFailures + 1;
      const delay = Math.min(30_000, 200 * 2 ** Math.max(0, this.watchFailures - 1));
      if (err && !gone) {
        this.opts.log.warn({ err, path: this.opts.path, retryInMs: delay }, "watch failed; listing again");
      }
      setTimeout(() => void this.relist(), delay).unref();
    };
    this.abort = this.opts.kube.watch<T>(
      this.opts.path,
      {
        resourceVersion,
        allowWatchBookmarks: true,
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
      },
      (event: WatchEvent<T>) => this.apply(event, () => (gone = true)),
      ended,
    );
  }

  private apply({ type, object }: WatchEvent<T>, onGone: () => void): void {
    if (type === "ERROR") {
      onGone();
      this.abort?.abort();
      return;
    }
    const version = object.metadata?.resourceVersion;
    if (version) this.lastVersion = version;
    if (type === "BOOKMARK") return;
    const key = objectKey(object);
    const echo = version !== undefined && this.written.get(key)?.metadata?.resourceVersion === version;
    this.caughtUp(key, version);
    if (type === "DELETED") {
      this.written.delete(key);
      const cached = this.cache.get(key);
      if (!cached) return;
      this.cache.delete(key);
      this.opts.onChange(this.keep(object) ?? cached, "deleted");
      return;
    }
    if (this.forgotten(key, object)) return;
    const obj = this.keep(object);
    if (!obj) {
      // No longer ours (or never was): forget it.
      const cached = this.cache.get(key);
      if (cached) {
        this.cache.delete(key);
        this.opts.onChange(cached, "deleted");
      }
      return;
    }
    const before = this.cache.get(key);
    this.cache.set(key, obj);
    // What the owner keeps of it is unchanged (a pod's Ready condition flipped, say): its passes
    // read only what is kept, so none would decide anything new.
    if (before && sameKept(before, obj)) return;
    this.opts.onChange(obj, type === "ADDED" ? "added" : "modified", echo);
  }
}
