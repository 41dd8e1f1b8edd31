// Prometheus's own tools for the monitoring tests: promtool, and a Prometheus server that scrapes a
// running controller and evaluates the release's alert rules. Both come from Debian's package,
// unpacked under the cache folder by hack/prometheus.sh (`make tools`).
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parse, stringify } from "yaml";
import { freePorts } from "../../hack/cluster/processes.ts";
import { repoRoot } from "./catalog.ts";
import { eventually } from "./wait.ts";

const run = promisify(execFile);
export const monitoringDir = path.join(repoRoot, "catalog", "controller", "0.1", "monitoring");

export interface PrometheusTools {
  promtool: string;
  prometheus: string;
}

export async function prometheusTools(): Promise<PrometheusTools> {
  const { stdout } = await run(path.join(repoRoot, "hack", "prometheus.sh"));
  const dir = stdout.trim();
  return { promtool: path.join(dir, "promtool"), prometheus: path.join(dir, "prometheus") };
}

/** Runs promtool; resolves to its exit code and output, whatever the code. */
export function promtool(
  tools: PrometheusTools,
  args: string[],
  input?: string,
): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(tools.promtool, args, { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, output }));
    child.stdin.end(input ?? "");
  });
}

/**
 * The release's PrometheusRule as a Prometheus rule file (`spec` is one), written as rules.yaml in
 * `dir`, where prometheusrule_test.yaml expects it.
 */
export async function writeRuleFile(dir: string): Promise<string> {
  const rule = parse(await readFile(path.join(monitoringDir, "prometheusrule.yaml"), "utf8")) as {
    spec: unknown;
  };
  const file = path.join(dir, "rules.yaml");
  await writeFile(file, stringify(rule.spec));
  return file;
}

export interface PrometheusServer {
  url: string;
  /** An instant query; throws with Prometheus's error when the expression does not evaluate. */
  query(
    expr: string,
  ): Promise<{ resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] }>;
  rules(): Promise<{ name: string; health: string; lastError?: string; state?: string }[]>;
  stop(): Promise<void>;
}

/**
 * A Prometheus server that scrapes each target (host:port, with the labels a ServiceMonitor's
 * scrape would add) every second as job `scoped-step`, and evaluates `ruleFile` every second.
 */
export async function startPrometheus(
  tools: PrometheusTools,
  opts: {
    targets: { address: string; labels: Record<string, string> }[];
    metricsPath?: string;
    ruleFile: string;
  },
): Promise<PrometheusServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "prometheus-"));
  const [port] = (await freePorts(1)) as [number];
  await writeFile(
    path.join(dir, "prometheus.yml"),
    stringify({
      global: { scrape_interval: "1s", evaluation_interval: "1s" },
      rule_files: [opts.ruleFile],
      scrape_configs: [
        {
          job_name: "scoped-step",
          metrics_path: opts.metricsPath ?? "/metrics",
          static_configs: opts.targets.map((t) => ({ targets: [t.address], labels: t.labels })),
        },
      ],
    }),
  );
  let log = "";
  const child: ChildProcess = spawn(
    tools.prometheus,
    [
      `--config.file=${path.join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${path.join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--web.enable-lifecycle",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  child.stdout?.on("data", (d: Buffer) => (log += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const api = async <T>(p: string): Promise<T> => {
    const res = await fetch(`${url}${p}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`${p}: ${body.error ?? res.status}`);
    return body.data;
  };
  try {
    await eventually(
      "Prometheus to be ready",
      async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited: ${log}`);
        return (await fetch(`${url}/-/ready`)).ok || undefined;
      },
      { timeoutMs: 60_000 },
    );
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  return {
    url,
    query: (expr) => api(`/api/v1/query?query=${encodeURIComponent(expr)}`),
    rules: async () =>
      (
        await api<{
          groups: { rules: { name: string; health: string; lastError?: string; state?: string }[] }[];
        }>("/api/v1/rules")
      ).groups.flatMap((g) => g.rules),
    async stop() {
      child.kill("SIGTERM");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
