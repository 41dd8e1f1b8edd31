// What the controller keeps in memory: runs in progress and what they own, never what has settled.
// Read from the controller's own figure (scoped_step_cached_objects), on a real controller process.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { stepState } from "../../tasks/scoped-step/status.ts";
import {
  deployerApp,
  deployRole,
  startIdentityWorld,
  stepParams,
  type IdentityWorld,
} from "../support/identity-world.ts";
import { eventually } from "../support/wait.ts";
import { condition } from "../support/world.ts";

const policy = {
  aws: { allowedRoleArns: [deployRole], maxSessionDuration: 3600 },
  revocation: "deny-policy",
};

/** The controller's count of cached objects, by resource. */
async function cached(w: IdentityWorld): Promise<Record<string, number>> {
  const text = await (await fetch(`${w.issuer}/metrics`)).text();
  const counts: Record<string, number> = {};
  for (const m of text.matchAll(/^scoped_step_cached_objects\{resource="([^"]+)"\} (\S+)$/gm))
    counts[m[1] ?? ""] = Number(m[2]);
  return counts;
}

const settled = (w: IdentityWorld, want: Record<string, number>) =>
  eventually("the caches to hold only what is in progress", async () => {
    const now = await cached(w);
    // Until then, the error names what is still held.
    assert.deepEqual(now, want);
    return now;
  });

test("a settled run leaves the controller's memory with its pod; a restarted controller caches none of them; a run in progress stays", async () => {
  const w = await startIdentityWorld(policy);
  await w.createApplication("payments", deployerApp);
  const none = { customruns: 0, pods: 0, resolutionrequests: 0 };

  await w.createRun("held", {
    params: stepParams(w, "payments", "while [ ! -f /workspace/release ]; do sleep 0.1; done", []),
  });
  await w.waitForRun("held", "to run", (r) => condition(r)?.reason === "Running");
  for (const name of ["first", "second", "third"]) {
    await w.createRun(name, { params: stepParams(w, "payments", "true", []) });
    const done = await w.waitDone(name);
    assert.equal(condition(done)?.status, "True", name);
  }
  // The three finished runs are revoked, released and forgotten; the one still running is not.
  await settled(w, { customruns: 1, pods: 1, resolutionrequests: 0 });
  for (const name of ["first", "second", "third"]) {
    const run = await w.getRun(name);
    assert.equal(stepState(run.status ?? {}).credential?.state, "revoked", name);
    assert.deepEqual(run.metadata.finalizers ?? [], [], `${name}'s finalizer is released`);
  }

  await w.restartController();
  await settled(w, { customruns: 1, pods: 1, resolutionrequests: 0 });
  const workspace = w.kubelet?.volumePath(w.ns, "held-pod", "workspace");
  assert.ok(workspace, "the held step's workspace");
  await writeFile(`${workspace}/release`, "");
  const held = await w.waitDone("held");
  assert.equal(condition(held)?.status, "True");
  await settled(w, none);

  // A settled run is deleted at once: nothing of ours holds it.
  await w.deleteRun("first");
  await eventually("the settled run to be gone", async () =>
    (await w.getRun("first").catch(() => undefined)) === undefined ? true : undefined,
  );
  // A new run still goes through, and is forgotten in turn.
  await w.createRun("fourth", { params: stepParams(w, "payments", "true", []) });
  assert.equal(condition(await w.waitDone("fourth"))?.status, "True");
  await settled(w, none);
});
