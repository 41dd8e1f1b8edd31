// Polling with a deadline, for conditions no watch reports directly.
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  { timeoutMs = 30_000, intervalMs = 100 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const cause = last instanceof Error ? `: ${last.message}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
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
