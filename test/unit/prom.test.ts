import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { Metrics } from "../../controller/metrics.ts";

const loaded = () => Object.keys(createRequire(import.meta.url).cache);

test("the controller's metrics load none of prom-client's index, push gateway, summaries or OpenTelemetry", async () => {
  const metrics = new Metrics({
    credentials: () => ({ active: 0, pendingRevocation: 0, oldestUnrevokedSince: 0 }),
    isLeader: () => true,
  });
  const text = await metrics.registry.metrics();
  assert.ok(
    loaded().some((f) => f.includes("prom-client/lib/registry")),
    "prom-client's registry is what serves them",
  );
  const unwanted = loaded().filter((f) =>
    /prom-client\/index\.js|pushgateway|tdigest|@opentelemetry|prom-client\/lib\/cluster/.test(f),
  );
  assert.deepEqual(unwanted, []);
  // The process and Node.js metrics every Node.js exporter has, by their usual names and types.
  const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
  for (const [name, type] of [
    ["process_cpu_seconds_total", "counter"],
    ["process_cpu_user_seconds_total", "counter"],
    ["process_cpu_system_seconds_total", "counter"],
    ["process_resident_memory_bytes", "gauge"],
    ["process_start_time_seconds", "gauge"],
    ["process_open_fds", "gauge"],
    ["nodejs_heap_size_used_bytes", "gauge"],
    ["nodejs_eventloop_lag_p99_seconds", "gauge"],
    ["nodejs_active_handles", "gauge"],
  ])
    assert.equal(types.get(name), type, name);
  for (const refused of ["nodejs_active_handles_total", "nodejs_active_requests_total"])
    assert.equal(types.get(refused), undefined, `${refused} is a gauge named like a counter`);
  assert.equal(types.get("nodejs_gc_duration_seconds"), undefined, "every collection would cost CPU");
});

test("the process CPU counters count the CPU time this process has spent since it started", async () => {
  const metrics = new Metrics({
    credentials: () => ({ active: 0, pendingRevocation: 0, oldestUnrevokedSince: 0 }),
    isLeader: () => true,
  });
  const cpu = async () => {
    const text = await metrics.registry.metrics();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
    return {
      user: value("process_cpu_user_seconds_total"),
      system: value("process_cpu_system_seconds_total"),
      total: value("process_cpu_seconds_total"),
    };
  };
  for (let scrape = 0; scrape < 3; scrape++) {
    const before = process.cpuUsage();
    // Spend some CPU before each scrape.
    let x = 0;
    while ((process.cpuUsage().user - before.user) / 1e6 < 0.02) x += Math.sqrt(x + 1);
    const seen = await cpu();
    const after = process.cpuUsage();
    // Within a float sum's rounding of the process's own figures, in microseconds.
    const within = (v: number, from: number, to: number) => v >= from / 1e6 - 1e-9 && v <= to / 1e6 + 1e-9;
    assert.ok(within(seen.user, before.user, after.user), `user ${seen.user} s`);
    assert.ok(within(seen.system, before.system, after.system), `system ${seen.system} s`);
    assert.ok(Math.abs(seen.total - (seen.user + seen.system)) < 1e-6, "the total is user + system");
  }
});
