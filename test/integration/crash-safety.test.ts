import { test } from "node:test";
import assert from "node:assert/strict";
import { failpoints } from "../../tasks/scoped-step/ports.ts";
import { stepState } from "../../tasks/scoped-step/status.ts";
import { condition, identityParams, paymentsApp, resultsOf, startWorld } from "../support/world.ts";

const world = startWorld({ controller: false }).then(async (w) => {
  await w.createApplication("payments", paymentsApp);
  return w;
});

for (const point of failpoints) {
  test(`a controller killed ${point} converges on restart: one pod, the right result, nothing left behind`, async () => {
    const w = await world;
    const name = `crash-${point}`;
    const doomed = await w.startController([], { SCOPED_STEP_FAILPOINT: point });
    await w.createRun(name, {
      params: [
        { name: "image", value: "alpine" },
        { name: "script", value: "echo done > $(results.out.path)" },
        { name: "results", value: ["out"] },
        ...identityParams,
      ],
    });
    const code = await doomed.exited;
    assert.equal(doomed.child.signalCode ?? code, "SIGKILL", `the controller died at ${point}`);

    const restarted = await w.startController();
    const run = await w.waitDone(name);
    assert.equal(condition(run)?.status, "True", condition(run)?.message);
    assert.equal(resultsOf(run).out, "done");
    const cleaned = await w.waitForRun(
      name,
      "to drop its finalizer",
      (r) => (r.metadata.finalizers ?? []).length === 0,
    );
    assert.equal(stepState(cleaned.status ?? {}).credential?.state, "revoked");
    const pods = (await w.pods()).filter((p) => p.metadata?.labels?.["tekton.dev/customRun"] === name);
    assert.equal(pods.length, 1, `exactly one pod: ${pods.map((p) => p.metadata?.name).join(", ")}`);
    await restarted.kill("SIGTERM");
  });
}
