import { test } from "node:test";
import assert from "node:assert/strict";
import { parseGoDuration } from "../../tasks/scoped-step/duration.ts";

test("parses Go durations as Tekton writes spec.timeout", () => {
  assert.equal(parseGoDuration("0s"), 0);
  assert.equal(parseGoDuration("90s"), 90_000);
  assert.equal(parseGoDuration("1h30m"), 5_400_000);
  assert.equal(parseGoDuration("1.5h"), 5_400_000);
  assert.equal(parseGoDuration("300ms"), 300);
  assert.equal(parseGoDuration("2h45m10s"), 9_910_000);
});

test("rejects strings that are not Go durations with InvalidTimeout", () => {
  for (const bad of ["", "10", "1d", "abc", "-5s", "5 s", "1h-30m"]) {
    assert.throws(() => parseGoDuration(bad), { reason: "InvalidTimeout" }, bad);
  }
});
