// Polling with a deadline, for conditions no watch reports directly.
import { availableParallelism, loadavg } from "node:os";

/** A loaded machine stretches a deadline at most this much: beyond it a wait is stuck, not slow. */
const maxSlowdown = 10;

/**
 * How much slower than when idle the machine runs now: runnable processes per core over the last
 * minute, at least 1. Two test runs side by side on two cores have shown 20 and more.
 */
export function slowdown(load = loadavg()[0] ?? 0, cores = availableParallelism()): number {
  return Math.min(maxSlowdown, Math.max(1, load / cores));
}

/**
 * Polls `probe` until it gives a value. `timeoutMs` is time as an idle machine would spend it:
 * wall time counts for less while the machine is loaded (see slowdown), so a deadline that holds
 * alone also holds beside a second test run, and a stuck wait still fails.
 */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  { timeoutMs = 30_000, intervalMs = 100, load = () => slowdown() } = {},
): Promise<T> {
  const started = Date.now();
  let spent = 0;
  let tick = started;
  let worst = 1;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    const now = Date.now();
    const factor = load();
    worst = Math.max(worst, factor);
    spent += (now - tick) / factor;
    tick = now;
    if (spent > timeoutMs) {
      const cause = last instanceof Error ? `: ${last.message}` : "";
      const wall =
        worst > 1 ? ` (${now - started} ms of wall time, the machine up to ${worst.toFixed(1)}× loaded)` : "";
      throw new Error(`timed out after ${timeoutMs} ms${wall} waiting for ${what}${cause}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Polls `probe` until it gives a value, for as long as what `probe` reports as its progress keeps
 * changing: it fails only once `stallMs` pass with no change. A run slowed down by a loaded
 * machine keeps going; a stuck one still fails, and says how long it stood still.
 */
export async function whileProgressing<T>(
  what: string,
  probe: () => Promise<{ value?: T; progress: string }>,
  { stallMs, intervalMs = 500 }: { stallMs: number; intervalMs?: number },
): Promise<T> {
  let progress: string | undefined;
  let changedAt = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const seen = await probe();
      if (seen.value !== undefined) return seen.value;
      if (seen.progress !== progress) {
        progress = seen.progress;
        changedAt = Date.now();
      }
    } catch (err) {
      last = err;
    }
    if (Date.now() - changedAt > stallMs) {
      const cause = last instanceof Error ? `: ${last.message}` : "";
      throw new Error(`no progress for ${stallMs} ms while waiting for ${what}${cause}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
