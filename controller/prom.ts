// prom-client, loaded from the files the controller uses. Its index loads every module it has: the
// push gateway's HTTP client, cluster aggregation, summaries' t-digest and, for exemplars on its
// CPU counters, @opentelemetry/api: about 14 MiB resident loaded alone, 1 to 3 MiB of the running
// controller's (which loads much of the same through other modules). So the metric classes come
// from their own files, the process and Node.js metrics from prom-client's own collectors, and
// the three process CPU counters from here.
import { createRequire } from "node:module";
import type * as Prom from "prom-client";

const load = createRequire(import.meta.url);

export const Registry = load("prom-client/lib/registry") as typeof Prom.Registry;
export type Registry = Prom.Registry;
export const Counter = load("prom-client/lib/counter") as typeof Prom.Counter;
export type Counter<L extends string = string> = Prom.Counter<L>;
export const Gauge = load("prom-client/lib/gauge") as typeof Prom.Gauge;
export type Gauge<L extends string = string> = Prom.Gauge<L>;
export const Histogram = load("prom-client/lib/histogram") as typeof Prom.Histogram;
export type Histogram<L extends string = string> = Prom.Histogram<L>;

type Collector = (registry: Registry, config: { eventLoopMonitoringPrecision: number }) => void;

/**
 * prom-client's default collectors but its CPU one, as collectDefaultMetrics registers them. Left
 * out: the three gauges named like counters (`nodejs_active_*_total`), which Prometheus's naming
 * rules refuse (the same figures by type stay: `nodejs_active_handles`…), and the garbage
 * collection histogram (`nodejs_gc_duration_seconds`): Node builds a performance entry for every
 * collection it reports, and with the image's small young generation that cost about 2 ms of CPU
 * per run (bench/runs.ts, profiled). The heap gauges show memory pressure instead.
 */
const collectors = [
  "processStartTime",
  "osMemoryHeap",
  "processOpenFileDescriptors",
  "processMaxFileDescriptors",
  "eventLoopLag",
  "processResources",
  "processHandles",
  "processRequests",
  "heapSizeAndUsed",
  "heapSpacesSizeAndUsed",
  "version",
];
const refused = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

/** The process and Node.js metrics every Node.js exporter has, under their usual names. */
export function collectProcessMetrics(registry: Registry): void {
  for (const name of collectors) {
    (load(`prom-client/lib/metrics/${name}`) as Collector)(registry, { eventLoopMonitoringPrecision: 10 });
  }
  for (const name of refused) registry.removeSingleMetric(name);
  // From the process's start, as Prometheus expects of process_cpu_seconds_total.
  let last = { user: 0, system: 0 };
  const registers = [registry];
  const user = new Counter({
    name: "process_cpu_user_seconds_total",
    help: "Total user CPU time spent in seconds.",
    registers,
    // One collect sets all three, as prom-client's own does.
    collect() {
      const now = process.cpuUsage();
      const userSeconds = (now.user - last.user) / 1e6;
      const systemSeconds = (now.system - last.system) / 1e6;
      last = now;
      user.inc(userSeconds);
      system.inc(systemSeconds);
      total.inc(userSeconds + systemSeconds);
    },
  });
  const system = new Counter({
    name: "process_cpu_system_seconds_total",
    help: "Total system CPU time spent in seconds.",
    registers,
  });
  const total = new Counter({
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
    registers,
  });
}
