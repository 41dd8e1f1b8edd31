import { test } from "node:test";
import assert from "node:assert/strict";
import { failpoints } from "../../tasks/scoped-step/ports.ts";
import { stepState } from "../../tasks/scoped-step/status.ts";
import { startIdentityWorld, type IdentityWorld } from "../support/identity-world.ts";
import type { ControllerProcess } from "../support/controller.ts";
import {
  condition,
  identityParams,
  paymentsApp,
  resultsOf,
  startWorld,
  type World,
} from "../support/world.ts";

const world = startWorld({ controller: false }).then(async (w) => {
  await w.createApplication("payments", paymentsApp);
  return w;
});

const stepParams = [
  { name: "image", value: "alpine" },
  { name: "script", value: "echo done > $(results.out.path)" },
  { name: "results", value: ["out"] },
  ...identityParams,
];

/** Waits for the run to succeed and let go of its finalizer, then checks what it left behind. */
async function converged(w: World, name: string) {
  const run = await w.waitDone(name);
  assert.equal(condition(run)?.status, "True", condition(run)?.message);
  assert.equal(resultsOf(run).out, "done");
  const cleaned = await w.waitForRun(
    name,
    "to drop its finalizer",
    (r) => (r.metadata.finalizers ?? []).length === 0,
  );
  const credential = stepState(cleaned.status ?? {}).credential;
  assert.equal(credential?.state, "revoked");
  const pods = (await w.pods()).filter((p) => p.metadata?.labels?.["tekton.dev/customRun"] === name);
  assert.equal(pods.length, 1, `exactly one pod: ${pods.map((p) => p.metadata?.name).join(", ")}`);
  return { run: cleaned, credential };
}

// Every failpoint a succeeding step passes (after-failure is on the failing path: see leaks.test.ts).
const successPath = failpoints.filter((p) => p !== "after-failure");

for (const point of successPath) {
  test(`a controller killed ${point} converges on restart: one pod, the right result, nothing left behind`, async () => {
    const w = await world;
    const name = `crash-${point}`;
    const doomed = await w.startController([], { SCOPED_STEP_FAILPOINT: point });
    await w.createRun(name, { params: stepParams });
    const code = await doomed.exited;
    assert.equal(doomed.child.signalCode ?? code, "SIGKILL", `the controller died at ${point}`);

    const restarted = await w.startController();
    await converged(w, name);
    await restarted.kill("SIGTERM");
  });
}

/** The controller's exit; fails with what the run says if the failpoint is never reached. */
async function diesWithin(
  c: ControllerProcess | undefined,
  ms: number,
  explain: () => Promise<string>,
): Promise<number | null | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), ms)));
  const outcome = await Promise.race([c?.exited, late]);
  clearTimeout(timer);
  if (outcome === "late")
    throw new Error(`the controller never reached its failpoint; the run: ${await explain()}`);
  return outcome;
}

// The same crashes with real AWS credentials: a crash after the Secret is stored makes the next
// controller adopt it rather than mint again, and every session minted is denied on the role.
const awsWorld: Promise<IdentityWorld> = startIdentityWorld({
  aws: { allowedRoleArns: ["arn:aws:iam::111122223333:role/payments-*"], maxSessionDuration: 3600 },
  revocation: "deny-policy",
}).then(async (w) => {
  await w.createApplication("payments", paymentsApp);
  return w;
});

for (const point of successPath) {
  test(`with AWS credentials, a controller killed ${point} converges and revokes every session it minted`, async () => {
    const w = await awsWorld;
    const name = `aws-crash-${point}`;
    await w.restartController({ SCOPED_STEP_FAILPOINT: point });
    const doomed = w.controller;
    await w.createRun(name, { params: stepParams });
    const code = await diesWithin(doomed, 180_000, async () => JSON.stringify((await w.getRun(name)).status));
    assert.equal(doomed?.child.signalCode ?? code, "SIGKILL", `the controller died at ${point}`);

    await w.restartController();
    const { run, credential } = await converged(w, name);
    const results = resultsOf(run);
    assert.ok(results["identity-subject"], "the identity is published, adopted from the Secret if need be");
    assert.equal(results.revocation, "deny-policy");
    assert.equal(credential?.revocation?.method, "deny-policy");
    const sessions = w.peer.sessions().filter((s) => s.roleSessionName === results["aws-session-name"]);
    // Only a crash between minting and storing can mint twice; the one deny covers both sessions.
    assert.equal(sessions.length, point === "after-mint" ? 2 : 1, `sessions minted for ${name}`);
    const deny = w.peer.rolePolicies("payments-deployer")["scoped-step-revocations"] ?? "";
    assert.ok(deny.includes(results["aws-source-identity"] ?? "missing"), "the run's sessions are denied");
    assert.equal(await w.secretData(`${name}-credentials-0`), undefined, "the credential Secret is gone");
  });
}
