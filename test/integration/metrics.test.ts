// The credential gauges an operator alerts on, scraped from the real controller's /metrics while
// a step holds AWS credentials, while their revocation is blocked (IAM failing) after the run was
// cancelled, and once the revocation has gone through.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deployRole, startIdentityWorld } from "../support/identity-world.ts";
import { eventually } from "../support/wait.ts";
import { condition, paymentsApp } from "../support/world.ts";

const gauges = [
  "scoped_step_active_credentials",
  "scoped_step_credentials_pending_revocation",
  "scoped_step_oldest_unrevoked_credential_age_seconds",
] as const;
type Gauges = Record<(typeof gauges)[number], number>;

async function scrape(issuer: string): Promise<Gauges> {
  const text = await (await fetch(`${issuer}/metrics`)).text();
  const value = (name: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    assert.ok(line, `${name} is exported`);
    return Number(line.split(" ").pop());
  };
  return Object.fromEntries(gauges.map((g) => [g, value(g)])) as Gauges;
}

test("the credential gauges show a live credential, one pending revocation, and drop to 0 once it is revoked", async () => {
  const w = await startIdentityWorld({
    aws: { allowedRoleArns: [deployRole], maxSessionDuration: 3600 },
    revocation: "deny-policy",
  });
  await w.createApplication("payments", paymentsApp);
  const scrapeUntil = (what: string, ok: (g: Gauges) => boolean) =>
    eventually(what, async () => {
      const g = await scrape(w.issuer);
      return ok(g) ? g : undefined;
    });

  const idle = await scrape(w.issuer);
  assert.equal(idle.scoped_step_active_credentials, 0);
  assert.equal(idle.scoped_step_credentials_pending_revocation, 0);
  assert.equal(idle.scoped_step_oldest_unrevoked_credential_age_seconds, 0);

  await w.createRun("held", {
    params: [
      { name: "image", value: "alpine:3" },
      { name: "script", value: "while [ ! -f /workspace/release ]; do sleep 0.1; done" },
      { name: "application", value: "payments" },
      { name: "component", value: "api" },
    ],
  });
  await w.waitForRun("held", "to run", (r) => condition(r)?.reason === "Running");
  const live = await scrapeUntil(
    "the live credential to show",
    (g) => g.scoped_step_active_credentials === 1,
  );
  assert.equal(live.scoped_step_credentials_pending_revocation, 0, "a running step's credential is not due");
  assert.ok(live.scoped_step_oldest_unrevoked_credential_age_seconds > 0);

  // IAM fails every call from here on: the cancelled run's session cannot be denied.
  w.peer.failNext("GetRolePolicy", "ServiceUnavailable", "Service unavailable", 1_000_000);
  await w.patchRunSpec("held", { status: "RunCancelled", statusMessage: "stopped by the test" });
  await eventually("the controller to try the revocation", () =>
    Promise.resolve(w.peer.calls().some((c) => c.action === "GetRolePolicy" && c.injected) || undefined),
  );
  const pending = await scrapeUntil(
    "the credential to be pending revocation",
    (g) => g.scoped_step_credentials_pending_revocation === 1,
  );
  assert.equal(pending.scoped_step_active_credentials, 1);
  assert.ok(
    pending.scoped_step_oldest_unrevoked_credential_age_seconds >=
      live.scoped_step_oldest_unrevoked_credential_age_seconds,
  );
  assert.notEqual(condition(await w.getRun("held"))?.status, "False", "the run waits for its revocation");

  w.peer.clearFailures();
  const run = await w.waitDone("held");
  assert.equal(condition(run)?.reason, "CustomRunCancelled");
  const after = await scrapeUntil("the gauges to drop to 0", (g) => g.scoped_step_active_credentials === 0);
  assert.equal(after.scoped_step_credentials_pending_revocation, 0);
  assert.equal(after.scoped_step_oldest_unrevoked_credential_age_seconds, 0);
});
