// The release's alert rules, checked and unit-tested by Prometheus's own promtool: every alert
// has series on which it fires and series on which it stays quiet
// (catalog/controller/0.1/monitoring/prometheusrule_test.yaml).
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { parse } from "yaml";
import { monitoringDir, prometheusTools, promtool, writeRuleFile } from "../support/prometheus.ts";

interface RuleTests {
  tests: { name: string; alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
}

/** The rule file and the test file side by side in a folder of their own. */
async function prepare(t: TestContext) {
  const tools = await prometheusTools();
  const dir = await mkdtemp(path.join(os.tmpdir(), "alerts-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const rules = await writeRuleFile(dir);
  const testFile = path.join(dir, "prometheusrule_test.yaml");
  await copyFile(path.join(monitoringDir, "prometheusrule_test.yaml"), testFile);
  return { tools, rules, testFile };
}

test("promtool accepts the PrometheusRule's rules and every alert's unit tests pass", async (t) => {
  const { tools, rules, testFile } = await prepare(t);

  const checked = await promtool(tools, ["check", "rules", rules]);
  assert.equal(checked.code, 0, checked.output);
  assert.match(checked.output, /SUCCESS: 6 rules found/);

  const tested = await promtool(tools, ["test", "rules", testFile]);
  assert.equal(tested.code, 0, tested.output);
  assert.match(tested.output, /SUCCESS/);

  // Each alert is seen firing in some test and checked quiet in another.
  const alerts = (parse(await readFile(rules, "utf8")) as { groups: { rules: { alert: string }[] }[] }).groups
    .flatMap((g) => g.rules)
    .map((r) => r.alert);
  const cases = (parse(await readFile(testFile, "utf8")) as RuleTests).tests.flatMap(
    (c) => c.alert_rule_test ?? [],
  );
  for (const alert of alerts) {
    const mine = cases.filter((c) => c.alertname === alert);
    assert.ok(
      mine.some((c) => (c.exp_alerts ?? []).length > 0),
      `${alert} has a case where it fires`,
    );
    assert.ok(
      mine.some((c) => (c.exp_alerts ?? []).length === 0),
      `${alert} has a case where it stays quiet`,
    );
  }
});

test("promtool's unit tests fail when an alert's threshold is wrong", async (t) => {
  // The tests above can fail: the same tests against a rule file whose pending-revocation alert
  // waits for 3 credentials instead of 1 report that alert.
  const { tools, rules, testFile } = await prepare(t);
  const text = await readFile(rules, "utf8");
  const broken = text.replace(
    "max(scoped_step_credentials_pending_revocation) > 0",
    "max(scoped_step_credentials_pending_revocation) > 2",
  );
  assert.notEqual(broken, text);
  await writeFile(rules, broken);
  const tested = await promtool(tools, ["test", "rules", testFile]);
  assert.notEqual(tested.code, 0);
  assert.match(tested.output, /alertname: ScopedStepCredentialsNotRevoked/);
});
