// A work queue of object keys on p-queue: a key waits at most once, is never processed by two
// workers at once (an event during processing marks it to run again after), failures come back
// with capped exponential backoff and jitter, and timers ask for a key again after a delay. It
// reports what happens as events, for whoever observes it (metrics, logs).
import { EventEmitter } from "node:events";
import PQueue from "p-queue";

export interface QueueOptions {
  concurrency: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Returns how long to wait before the key should be processed again, if at all. */
  process: (key: string) => Promise<{ requeueAfterMs?: number }>;
  /** True for errors of optimistic concurrency: someone wrote the object first. */
  isConflict?: (err: unknown) => boolean;
  /**
   * When a conflicted key comes back: 0 (the default) re-reads at once; readers of a cache wait
   * for the newer version's event to queue the key, and keep this as a backstop.
   */
  conflictRetryMs?: number;
}

export interface QueueStats {
  depth: number;
  inFlight: number;
  delayed: number;
}

/** How a pass ended: done, lost an optimistic-concurrency race (retried at once), or failed. */
export type PassResult = "ok" | "conflict" | "error";

export interface QueueEvents {
  /** A worker took the key after it waited this long. */
  taken: [key: string, waitMs: number];
  /** A pass over the key ended. */
  processed: [key: string, seconds: number, result: PassResult];
  /** A pass failed; the key comes back after a backoff that grows with `failures`. */
  retry: [key: string, err: unknown, failures: number];
}

export class WorkQueue extends EventEmitter<QueueEvents> {
  private readonly pq: PQueue;
  private readonly waiting = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private readonly enqueuedAt = new Map<string, number>();
  private stopped = false;
  private readonly opts: Required<Omit<QueueOptions, "isConflict">> & QueueOptions;

  constructor(opts: QueueOptions) {
    super();
    this.opts = { baseBackoffMs: 200, maxBackoffMs: 60_000, conflictRetryMs: 0, ...opts };
    this.pq = new PQueue({ concurrency: opts.concurrency });
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.waiting.has(key)) return;
    this.waiting.add(key);
    this.enqueuedAt.set(key, Date.now());
    void this.pq.add(() => this.work(key));
  }

  /** Adds the key after delayMs; an earlier pending timer for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    if (delayMs <= 0) return this.add(key);
    const at = Date.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Changes how many keys are processed at once, for passes started from now on. */
  setConcurrency(concurrency: number): void {
    this.pq.concurrency = concurrency;
  }

  stats(): QueueStats {
    return { depth: this.waiting.size, inFlight: this.processing.size, delayed: this.timers.size };
  }

  /** Stops taking work; resolves when in-flight passes end or after graceMs, whichever is first. */
  async shutdown(graceMs: number): Promise<void> {
    this.stopped = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.pq.clear();
    this.waiting.clear();
    await Promise.race([this.pq.onIdle(), new Promise((r) => setTimeout(r, graceMs).unref())]);
  }

  private backoffMs(failures: number): number {
    const exp = Math.min(this.opts.maxBackoffMs, this.opts.baseBackoffMs * 2 ** Math.min(failures - 1, 20));
    return Math.round(exp * (0.5 + Math.random() * 0.5));
  }

  private async work(key: string): Promise<void> {
    if (this.stopped) return;
    this.waiting.delete(key);
    this.processing.add(key);
    this.emit("taken", key, Date.now() - (this.enqueuedAt.get(key) ?? Date.now()));
    this.enqueuedAt.delete(key);
    const started = performance.now();
    const processed = (result: PassResult) =>
      this.emit("processed", key, (performance.now() - started) / 1000, result);
    let requeueAfterMs: number | undefined;
    try {
      ({ requeueAfterMs } = await this.opts.process(key));
      this.failures.delete(key);
      processed("ok");
    } catch (err) {
      if (this.opts.isConflict?.(err)) {
        requeueAfterMs = this.opts.conflictRetryMs;
        processed("conflict");
      } else {
        const n = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, n);
        requeueAfterMs = this.backoffMs(n);
        processed("error");
        this.emit("retry", key, err, n);
      }
    } finally {
      this.processing.delete(key);
    }
    if (this.dirty.delete(key) || requeueAfterMs === 0) this.add(key);
    else if (requeueAfterMs !== undefined) this.addAfter(key, requeueAfterMs);
  }
}
