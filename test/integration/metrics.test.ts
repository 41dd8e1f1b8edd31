// The credential gauges an operator alerts on, scraped from the real controller's /metrics while
// a step holds AWS credentials, while their revocation is blocked (IAM failing) after the run was
// cancelled, and once the revocation has gone through. Then Prometheus itself scrapes that
// controller: promtool lints its /metrics, Prometheus evaluates the release's alert rules on it,
// and every query of the Grafana dashboard runs against what was scraped.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { deployRole, startIdentityWorld, type IdentityWorld } from "../support/identity-world.ts";
import {
  monitoringDir,
  prometheusTools,
  promtool,
  startPrometheus,
  writeRuleFile,
} from "../support/prometheus.ts";
import { eventually } from "../support/wait.ts";
import { condition, paymentsApp } from "../support/world.ts";

const gauges = [
  "scoped_step_active_credentials",
  "scoped_step_credentials_pending_revocation",
  "scoped_step_oldest_unrevoked_credential_timestamp_seconds",
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

let w: IdentityWorld;
before(async () => {
  w = await startIdentityWorld({
    aws: { allowedRoleArns: [deployRole], maxSessionDuration: 3600 },
    revocation: "deny-policy",
  });
  await w.createApplication("payments", paymentsApp);
});

test("the credential gauges show a live credential, one pending revocation, and drop to 0 once it is revoked", async () => {
  const scrapeUntil = (what: string, ok: (g: Gauges) => boolean) =>
    eventually(what, async () => {
      const g = await scrape(w.issuer);
      return ok(g) ? g : undefined;
    });

  const idle = await scrape(w.issuer);
  assert.equal(idle.scoped_step_active_credentials, 0);
  assert.equal(idle.scoped_step_credentials_pending_revocation, 0);
  assert.equal(idle.scoped_step_oldest_unrevoked_credential_timestamp_seconds, 0);

  const created = Date.now() / 1000;
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
  const minted = live.scoped_step_oldest_unrevoked_credential_timestamp_seconds;
  // The API server stores times to the second, so the mint may read up to a second before `created`.
  assert.ok(minted >= Math.floor(created) - 1 && minted <= Date.now() / 1000, `minted at ${minted}`);

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
  assert.equal(
    pending.scoped_step_oldest_unrevoked_credential_timestamp_seconds,
    minted,
    "the same credential",
  );
  assert.notEqual(condition(await w.getRun("held"))?.status, "False", "the run waits for its revocation");

  w.peer.clearFailures();
  const run = await w.waitDone("held");
  assert.equal(condition(run)?.reason, "CustomRunCancelled");
  const after = await scrapeUntil("the gauges to drop to 0", (g) => g.scoped_step_active_credentials === 0);
  assert.equal(after.scoped_step_credentials_pending_revocation, 0);
  assert.equal(after.scoped_step_oldest_unrevoked_credential_timestamp_seconds, 0);
});

interface Dashboard {
  templating: { list: { name: string; query?: { query: string } | string }[] };
  panels: { title: string; type: string; targets?: { expr: string }[] }[];
}

test("Prometheus scrapes the controller: promtool passes its /metrics, the alert rules evaluate, and every dashboard query runs on what it scraped", async (t) => {
  const tools = await prometheusTools();
  const text = await (await fetch(`${w.issuer}/metrics`)).text();
  const lint = await promtool(tools, ["check", "metrics"], text);
  assert.equal(lint.code, 0, `promtool check metrics:\n${lint.output}`);

  // The families the controller exports, with each histogram's series.
  const exported = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name = "", type] = m;
    exported.add(name);
    if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) exported.add(name + s);
  }

  const dir = await mkdtemp(path.join(os.tmpdir(), "monitoring-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // The labels a ServiceMonitor's scrape adds to every series, which the dashboard filters on.
  const prometheus = await startPrometheus(tools, {
    targets: [
      {
        address: new URL(w.issuer).host,
        labels: { namespace: "scoped-step", pod: "scoped-step-controller-0" },
      },
    ],
    ruleFile: await writeRuleFile(dir),
  });
  t.after(() => prometheus.stop());

  const value = async (expr: string) => (await prometheus.query(expr)).result[0]?.value[1];
  await eventually("Prometheus to have scraped the controller", async () =>
    (await value('up{job="scoped-step"}')) === "1" && (await value("scoped_step_leader")) === "1"
      ? true
      : undefined,
  );
  // Rules evaluated before the first scrape saw no scoped_step_leader at all (ScopedStepNoLeader
  // pending): wait for an evaluation over scraped series.
  const rules = await eventually(
    "every alert rule to have been evaluated on the scraped series",
    async () => {
      const all = await prometheus.rules();
      const evaluated = all.length === 6 && all.every((r) => r.health !== "unknown");
      return evaluated && all.find((r) => r.name === "ScopedStepNoLeader")?.state === "inactive"
        ? all
        : undefined;
    },
    { timeoutMs: 60_000 },
  );
  for (const r of rules) {
    assert.equal(r.health, "ok", `${r.name}: ${r.lastError ?? ""}`);
    assert.notEqual(r.state, "firing", r.name);
  }
  // Every credential this controller minted is revoked: these are not even pending.
  const state = (name: string) => rules.find((r) => r.name === name)?.state;
  assert.equal(state("ScopedStepCredentialsNotRevoked"), "inactive");
  assert.equal(state("ScopedStepCredentialHeldTooLong"), "inactive");
  assert.equal(state("ScopedStepRevocationFellBackToExpiry"), "inactive");

  const dashboard = JSON.parse(
    await readFile(path.join(monitoringDir, "grafana-dashboard.json"), "utf8"),
  ) as Dashboard;
  const grafana = (expr: string) =>
    expr.replaceAll("$__rate_interval", "1m").replaceAll("$namespace", "scoped-step");
  let queries = 0;
  for (const panel of dashboard.panels.filter((p) => p.type !== "row")) {
    for (const { expr } of panel.targets ?? []) {
      for (const [name = ""] of expr.matchAll(/\b(?:scoped_step|process|nodejs)_[a-z0-9_]+\b/g))
        assert.ok(exported.has(name), `panel ${panel.title}: ${name} is not on the controller's /metrics`);
      await prometheus.query(grafana(expr)).catch((err: unknown) => {
        throw new Error(`panel ${panel.title}: ${expr}: ${String(err)}`);
      });
      queries++;
    }
  }
  assert.ok(queries >= 20, `${queries} dashboard queries ran`);
  // The dashboard's namespace variable lists the namespaces the scraped series carry.
  const variable = dashboard.templating.list.find((v) => v.name === "namespace");
  const labelValues = /^label_values\((\w+), (\w+)\)$/.exec(
    typeof variable?.query === "string" ? variable.query : (variable?.query?.query ?? ""),
  );
  assert.ok(labelValues, "the namespace variable is a label_values query");
  const [, metric = "", label = ""] = labelValues;
  assert.deepEqual(
    (await prometheus.query(metric)).result.map((r) => r.metric[label]),
    ["scoped-step"],
  );
});
