// List, then watch from the list's resourceVersion; on a watch error or 410 Gone, list again;
// resync every key periodically. Keeps a cache by namespace/name and reports each change.
import { Watch, type KubeConfig, type KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

export interface InformerOptions<T extends KubernetesObject> {
  kc: KubeConfig;
  /** API path to watch, e.g. /apis/tekton.dev/v1beta1/customruns. */
  watchPath: string;
  list: () => Promise<ListResult<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  resyncMs: number;
  log: Logger;
  onChange: (obj: T, kind: "added" | "modified" | "deleted" | "resync") => void;
}

export const objectKey = (o: KubernetesObject): string =>
  `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;

export class Informer<T extends KubernetesObject> {
  readonly cache = new Map<string, T>();
  synced = false;
  private abort?: AbortController;
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

  /** Watches that ended in an error in a row; spaces out relists so a refused watch cannot spin. */
  private watchFailures = 0;

  private async relist(attempt = 0): Promise<void> {
    if (this.stopped) return;
    let listed: ListResult<T>;
    try {
      listed = await this.opts.list();
    } catch (err) {
      const delay = Math.min(30_000, 250 * 2 ** attempt);
      this.opts.log.warn({ err, path: this.opts.watchPath, retryInMs: delay }, "list failed");
      setTimeout(() => void this.relist(attempt + 1), delay).unref();
      return;
    }
    const seen = new Set<string>();
    for (const obj of listed.items) {
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
    this.synced = true;
    await this.watch(listed.resourceVersion);
  }

  private async watch(resourceVersion: string): Promise<void> {
    if (this.stopped) return;
    let lastVersion = resourceVersion;
    let gone = false;
    const ended = (err: unknown) => {
      if (this.stopped) return;
      // A plain end (server timeout) resumes from the last version; anything else lists again.
      if (!err && !gone) {
        this.watchFailures = 0;
        void this.watch(lastVersion);
        return;
      }
      this.watchFailures = gone ? 0 : this.watchFailures + 1;
      const delay = Math.min(30_000, 200 * 2 ** Math.max(0, this.watchFailures - 1));
      if (err && !gone) {
        this.opts.log.warn(
          { err, path: this.opts.watchPath, retryInMs: delay },
          "watch failed; listing again",
        );
      }
      setTimeout(() => void this.relist(), delay).unref();
    };
    try {
      this.abort = await new Watch(this.opts.kc).watch(
        this.opts.watchPath,
        {
          resourceVersion,
          allowWatchBookmarks: true,
          ...(this.opts.labelSelector ? { labelSelector: this.opts.labelSelector } : {}),
          ...(this.opts.fieldSelector ? { fieldSelector: this.opts.fieldSelector } : {}),
        },
        (type: string, obj: T) => {
          if (type === "ERROR") {
            gone = true;
            this.abort?.abort();
            return;
          }
          const version = obj.metadata?.resourceVersion;
          if (version) lastVersion = version;
          if (type === "BOOKMARK") return;
          const key = objectKey(obj);
          if (type === "DELETED") {
            this.cache.delete(key);
            this.opts.onChange(obj, "deleted");
          } else {
            this.cache.set(key, obj);
            this.opts.onChange(obj, type === "ADDED" ? "added" : "modified");
          }
        },
        ended,
      );
    } catch (err) {
      ended(err ?? new Error("watch failed"));
    }
  }
}
