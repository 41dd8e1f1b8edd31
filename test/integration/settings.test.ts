import { test } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api } from "@kubernetes/client-node";
import { eventually } from "../support/wait.ts";
import { condition, identityParams, paymentsApp, startWorld } from "../support/world.ts";

test("the configuration ConfigMap reloads while running; an invalid change is refused and logged", async () => {
  const w = await startWorld({ controller: false });
  await w.createApplication("payments", paymentsApp);
  const core = w.cluster.kc.makeApiClient(CoreV1Api);
  await core.createNamespacedConfigMap({
    namespace: w.controllerNs,
    body: { metadata: { name: "scoped-step-config" }, data: { "default-timeout": "60m" } },
  });
  const c = await w.startController();

  // A bad value is refused and the controller goes on with what it had.
  await core.replaceNamespacedConfigMap({
    name: "scoped-step-config",
    namespace: w.controllerNs,
    body: {
      metadata: { name: "scoped-step-config" },
      data: { "default-timeout": "60m", concurrency: "zero" },
    },
  });
  await eventually("the invalid ConfigMap to be reported", () =>
    Promise.resolve(
      c.logLines().some((l) => l.msg === "ignoring invalid configuration ConfigMap") ? true : undefined,
    ),
  );

  // A valid change applies to runs from then on: the default timeout becomes 2 s.
  await core.replaceNamespacedConfigMap({
    name: "scoped-step-config",
    namespace: w.controllerNs,
    body: { metadata: { name: "scoped-step-config" }, data: { "default-timeout": "2s", concurrency: "4" } },
  });
  await eventually("the reload to be logged", () =>
    Promise.resolve(c.logLines().some((l) => l.msg === "configuration reloaded") ? true : undefined),
  );
  await w.createRun("unbounded", {
    params: [{ name: "image", value: "alpine" }, { name: "script", value: "sleep 300" }, ...identityParams],
  });
  const run = await w.waitDone("unbounded");
  assert.equal(condition(run)?.reason, "CustomRunTimedOut");
  assert.match(condition(run)?.message ?? "", /timed out after 2s/);
  assert.equal(c.child.exitCode, null, "the controller kept running");
});
