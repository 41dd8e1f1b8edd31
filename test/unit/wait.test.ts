import { test } from "node:test";
import assert from "node:assert/strict";
import { whileProgressing } from "../support/wait.ts";

test("a wait that sees progress outlasts its stall limit, and one that sees none fails saying so", async () => {
  let polls = 0;
  const started = Date.now();
  // Progress on every poll, and the answer only after several stall limits have passed.
  const value = await whileProgressing(
    "a slow run",
    () => {
      polls++;
      return Promise.resolve(
        Date.now() - started > 200 ? { value: polls, progress: "" } : { progress: String(polls) },
      );
    },
    { stallMs: 40, intervalMs: 5 },
  );
  assert.ok(value > 1);
  await assert.rejects(
    whileProgressing("a stuck run", () => Promise.resolve({ progress: "same" }), {
      stallMs: 40,
      intervalMs: 5,
    }),
    /no progress for 40 ms while waiting for a stuck run/,
  );
});
