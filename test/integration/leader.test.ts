import { test } from "node:test";
import assert from "node:assert/strict";
import { CoordinationV1Api } from "@kubernetes/client-node";
import { startController, waitForLeader } from "../support/controller.ts";
import { eventually } from "../support/wait.ts";
import { condition, identityParams, paymentsApp, startWorld } from "../support/world.ts";

test("with two replicas only the leader acts; when it is killed the other takes over within the lease", async () => {
  const w = await startWorld({ controller: false });
  await w.createApplication("payments", paymentsApp);
  const replica = (identity: string) =>
    startController({
      kubeconfig: w.cluster.kubeconfig,
      namespace: w.controllerNs,
      watchNamespaces: [w.ns],
      identity,
    });
  const a = replica("replica-a");
  await waitForLeader(a);
  const b = replica("replica-b");
  // b is up and campaigning (it logs its start) but must not lead while a renews.
  await eventually("replica b to start", () =>
    Promise.resolve(b.output().includes("controller started") ? true : undefined),
  );

  const step = [{ name: "image", value: "alpine" }, { name: "script", value: "true" }, ...identityParams];
  await w.createRun("first", { params: step });
  assert.equal(condition(await w.waitDone("first"))?.status, "True");
  const acted = (c: typeof a) =>
    c.logLines().some((l) => l.key === `${w.ns}/first` || l.msg === "became leader");
  assert.ok(acted(a), "the leader reconciled");
  assert.ok(!acted(b), "the standby neither led nor reconciled");

  const killedAt = Date.now();
  await a.kill("SIGKILL");
  await waitForLeader(b, 30_000);
  const takeover = Date.now() - killedAt;
  const lease = await w.cluster.kc
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ name: "scoped-step-controller", namespace: w.controllerNs });
  assert.equal(lease.spec?.holderIdentity, "replica-b");
  assert.ok((lease.spec?.leaseTransitions ?? 0) >= 1);
  await w.createRun("second", { params: step });
  assert.equal(condition(await w.waitDone("second"))?.status, "True");
  // Logged, not asserted: timing on these machines is noise. The lease duration is 4 s.
  console.log(`takeover after ${takeover} ms`);
  await b.kill("SIGTERM");
});

test("SIGTERM releases the lease so a standby takes over at once, and the process exits cleanly", async () => {
  const w = await startWorld({ controller: false });
  const a = startController({
    kubeconfig: w.cluster.kubeconfig,
    namespace: w.controllerNs,
    watchNamespaces: [w.ns],
    identity: "a",
  });
  await waitForLeader(a);
  const code = await a.kill("SIGTERM");
  assert.equal(code, 0);
  const lease = await w.cluster.kc
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ name: "scoped-step-controller", namespace: w.controllerNs });
  assert.equal(lease.spec?.holderIdentity, undefined, "the lease was released");
});
