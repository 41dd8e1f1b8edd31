import { test } from "node:test";
import assert from "node:assert/strict";
import { WorkQueue } from "../../controller/queue.ts";

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

test("repeated adds of a waiting key collapse into one pass", async () => {
  const seen: string[] = [];
  const gate = deferred();
  const done = deferred();
  const q = new WorkQueue({
    concurrency: 1,
    process: async (key) => {
      if (key === "blocker") await gate.promise;
      seen.push(key);
      if (key === "b") done.resolve();
      return {};
    },
  });
  q.add("blocker");
  q.add("a");
  q.add("a");
  q.add("a");
  q.add("b");
  gate.resolve();
  await done.promise;
  assert.deepEqual(seen, ["blocker", "a", "b"]);
});

test("a key is never processed by two workers at once; an add during a pass runs it once more after", async () => {
  let active = 0;
  let maxActive = 0;
  let passes = 0;
  const first = deferred();
  const finished = deferred();
  const q = new WorkQueue({
    concurrency: 4,
    process: async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      passes++;
      if (passes === 1) await first.promise;
      active--;
      if (passes === 2) finished.resolve();
      return {};
    },
  });
  q.add("k");
  await new Promise((r) => setImmediate(r));
  q.add("k");
  q.add("k");
  first.resolve();
  await finished.promise;
  assert.equal(maxActive, 1);
  assert.equal(passes, 2);
});

test("failures come back with growing backoff until a pass succeeds", async () => {
  const attempts: number[] = [];
  const done = deferred();
  const errors: number[] = [];
  const q = new WorkQueue({
    concurrency: 1,
    baseBackoffMs: 5,
    maxBackoffMs: 40,
    process: () => {
      attempts.push(Date.now());
      if (attempts.length < 4) return Promise.reject(new Error("boom"));
      return Promise.resolve({});
    },
  });
  const results: string[] = [];
  q.on("retry", (_key, _err, failures) => errors.push(failures));
  q.on("processed", (_key, _seconds, result) => {
    results.push(result);
    if (result === "ok") done.resolve();
  });
  q.add("k");
  await done.promise;
  assert.deepEqual(errors, [1, 2, 3]);
  assert.deepEqual(results, ["error", "error", "error", "ok"]);
  await q.shutdown(100);
});

test("a pass that loses an optimistic-concurrency race goes again at once, reported as a conflict", async () => {
  const done = deferred();
  let passes = 0;
  const q = new WorkQueue({
    concurrency: 1,
    baseBackoffMs: 60_000,
    isConflict: (err) => err instanceof RangeError,
    process: () => {
      passes++;
      if (passes === 1) return Promise.reject(new RangeError("conflict"));
      return Promise.resolve({});
    },
  });
  const seen: string[] = [];
  q.on("taken", (key) => seen.push(`taken ${key}`));
  q.on("processed", (key, _seconds, result) => {
    seen.push(`${result} ${key}`);
    if (result === "ok") done.resolve();
  });
  q.on("retry", () => seen.push("retry"));
  q.add("k");
  await done.promise;
  assert.deepEqual(seen, ["taken k", "conflict k", "taken k", "ok k"]);
  await q.shutdown(100);
});

test("requeueAfter brings a key back by itself", async () => {
  let passes = 0;
  const done = deferred();
  const q = new WorkQueue({
    concurrency: 1,
    process: () => {
      passes++;
      if (passes === 2) done.resolve();
      return Promise.resolve(passes === 1 ? { requeueAfterMs: 10 } : {});
    },
  });
  q.add("k");
  await done.promise;
  assert.equal(passes, 2);
});
