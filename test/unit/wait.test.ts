import { test } from "node:test";
import assert from "node:assert/strict";
import { eventually, slowdown, whileProgressing } from "../support/wait.ts";

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

test("a loaded machine stretches a deadline in proportion to its load per core, up to a limit", () => {
  assert.equal(slowdown(0.5, 2), 1);
  assert.equal(slowdown(8, 2), 4);
  assert.equal(slowdown(400, 2), 10);
});

test("a deadline counts wall time for less while the machine is loaded, and still ends", async () => {
  let polls = 0;
  const started = Date.now();
  // Four times loaded: a 40 ms deadline lasts about 160 ms of wall time, then fails.
  await assert.rejects(
    eventually("a stuck condition", () => Promise.resolve((polls++, undefined)), {
      timeoutMs: 40,
      intervalMs: 5,
      load: () => 4,
    }),
    /timed out after 40 ms \(\d+ ms of wall time, the machine up to 4\.0× loaded\) waiting for a stuck condition/,
  );
  assert.ok(Date.now() - started >= 160, "it waited four deadlines of wall time");
  assert.ok(polls > 1);
  await assert.rejects(
    eventually("an idle wait", () => Promise.resolve(undefined), {
      timeoutMs: 40,
      intervalMs: 5,
      load: () => 1,
    }),
    /timed out after 40 ms waiting for an idle wait$/,
  );
});
