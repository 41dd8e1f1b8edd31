import { test } from "node:test";
import assert from "node:assert/strict";
import type { V1Pod } from "@kubernetes/client-node";
import { podOutcome } from "../../tasks/scoped-step/outcome.ts";
import { annotations } from "../../tasks/scoped-step/pod.ts";

const pod = (state: Record<string, unknown>, declared = "greeting,list", arrays = "list"): V1Pod => ({
  metadata: {
    name: "r-pod",
    annotations: { [annotations.results]: declared, [annotations.arrayResults]: arrays },
  },
  spec: { containers: [{ name: "step", image: "alpine:3" }] },
  status: {
    phase: "Running",
    containerStatuses: [{ name: "step", state, ready: true, restartCount: 0, image: "", imageID: "" }],
  },
});
const terminated = (exitCode: number, message: string) => pod({ terminated: { exitCode, message } });

test("a completed step's results come from its termination message", () => {
  const out = podOutcome(
    terminated(0, '[{"key":"greeting","value":"hi","type":1},{"key":"list","value":"[\\"a\\"]","type":1}]'),
  );
  assert.deepEqual(out, {
    phase: "succeeded",
    results: [
      { name: "greeting", value: "hi" },
      { name: "list", value: '["a"]' },
    ],
  });
});

const startedAt = '{"key":"StartedAt","value":"2026-01-01T00:00:00.000Z","type":3}';
const thirtyLines = Array.from({ length: 30 }, (_, i) => `line ${i}`).join("\n");

test("a failed step reports its exit code and the last lines of its log", () => {
  const out = podOutcome(terminated(3, `[${startedAt}]`), undefined, thirtyLines);
  assert.equal(out.phase, "failed");
  assert.ok(out.phase === "failed" && out.message.startsWith("step exited with code 3"));
  assert.ok(out.phase === "failed" && out.message.includes("line 29") && !out.message.includes("line 19\n"));
  assert.ok(out.phase === "failed" && !out.message.includes("StartedAt"));
});

test("a step whose entrypoint could not run reports the log tail the kubelet put in the message", () => {
  const out = podOutcome(terminated(128, thirtyLines));
  assert.ok(out.phase === "failed" && out.message.includes("line 29"));
});

test("Tekton's own entries are not results, and a trailing newline is dropped", () => {
  const out = podOutcome(terminated(0, `[{"key":"greeting","value":"hi\\n","type":1},${startedAt}]`));
  assert.deepEqual(out, { phase: "succeeded", results: [{ name: "greeting", value: "hi" }] });
});

test("an entry forged before the entrypoint's own is overridden by the file's value", () => {
  const forged = '{"key":"greeting","value":"forged","type":1}';
  const out = podOutcome(
    terminated(0, `[${forged},{"key":"greeting","value":"real","type":1},${startedAt}]`),
  );
  assert.deepEqual(out, { phase: "succeeded", results: [{ name: "greeting", value: "real" }] });
});

test("results over the size limit: Tekton's entrypoint says so in the log and exits 1", () => {
  const log =
    "2026/01/01 00:00:00 Termination message is above max allowed size 4096, caused by large task result.";
  const out = podOutcome(terminated(1, `[${startedAt}]`), undefined, log);
  assert.ok(out.phase === "failed" && out.reason === "ResultsTooLarge");
  assert.ok(out.phase === "failed" && /at most 4096 bytes/.test(out.message));
});

const bad: [string, V1Pod, string][] = [
  ["an undeclared result", terminated(0, '[{"key":"other","value":"x","type":1}]'), "UndeclaredResult"],
  [
    "a message truncated by the kubelet",
    terminated(0, `[{"key":"greeting","value":"${"x".repeat(5000)}`.slice(0, 4096)),
    "ResultsTooLarge",
  ],
  [
    "a string result that looks like an array",
    terminated(0, '[{"key":"greeting","value":"[\\"a\\",\\"b\\"]","type":1}]'),
    "ResultTypeMismatch",
  ],
  [
    "an array result that is not an array",
    terminated(0, '[{"key":"list","value":"a,b","type":1}]'),
    "ResultTypeMismatch",
  ],
  ["garbage in the message", terminated(0, "not json"), "InvalidResults"],
  [
    "an image that cannot be pulled",
    pod({ waiting: { reason: "ErrImagePull", message: "not found" } }),
    "StepImagePullFailed",
  ],
];
for (const [what, p, reason] of bad) {
  test(`fails the step on ${what} with ${reason}`, () => {
    const out = podOutcome(p);
    assert.equal(out.phase, "failed");
    assert.equal(out.phase === "failed" ? out.reason : "", reason);
  });
}

test("a pod still creating its container is pending, a running one running", () => {
  assert.equal(podOutcome(pod({ waiting: { reason: "ContainerCreating" } })).phase, "pending");
  assert.equal(podOutcome(pod({ running: {} })).phase, "running");
});

test("an object result must be a JSON object of strings holding every declared key", () => {
  const withObject = (value: string): V1Pod => {
    const p = terminated(0, JSON.stringify([{ key: "target", value, type: 1 }]));
    p.metadata = {
      name: "r-pod",
      annotations: {
        [annotations.results]: "target",
        [annotations.objectResults]: JSON.stringify({ target: ["bucket", "key"] }),
      },
    };
    return p;
  };
  const ok = '{"bucket":"artifacts","key":"site/index.html","extra":"kept"}';
  assert.deepEqual(podOutcome(withObject(ok)), {
    phase: "succeeded",
    results: [{ name: "target", value: ok }],
  });
  for (const [value, message] of [
    ['{"bucket":"artifacts"}', /declared as an object .* with keys key$/],
    ['{"bucket":"a","key":1}', /not a JSON object of strings/],
    ['["a","b"]', /not a JSON object of strings/],
    ["plain text", /not a JSON object of strings/],
  ] as const) {
    const out = podOutcome(withObject(value));
    assert.equal(out.phase, "failed", value);
    assert.equal(out.phase === "failed" && out.reason, "ResultTypeMismatch", value);
    assert.match(out.phase === "failed" ? out.message : "", message, value);
  }
});
