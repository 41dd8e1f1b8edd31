// Shared parts of the benchmarks: a control plane, the test kubelet, the controller as a child
// process, and figures (percentiles, CPU and peak memory of a process from /proc).
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { mkdtemp, readFile, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import {
  CoordinationV1Api,
  CoreV1Api,
  type CustomObjectsApi,
  type KubeConfig,
  type Watch,
} from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../hack/cluster/control-plane.ts";
import { stripTypes } from "../hack/strip-types.ts";
import { startAwsPeer } from "../simulators/aws/server.ts";
import { controllerAwsSettings, createTrustingRole, registerIssuer } from "../test/support/aws/trust.ts";
import { createApplication, identityComponent } from "../test/support/application.ts";
import { createScopedStepPolicy } from "../test/support/policy.ts";
import { ownCrdFiles } from "../test/support/cluster.ts";

export function percentile(values: number[], p: number): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

export const ms = (n: number) => `${n.toFixed(0)} ms`;

/**
 * Calls `work(i)` for every i below `n`, `concurrency` calls at a time: each call's latency in
 * milliseconds, and the wall time of the whole in seconds.
 */
export async function runConcurrently(
  n: number,
  concurrency: number,
  work: (i: number) => Promise<unknown>,
): Promise<{ latencies: number[]; seconds: number }> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const t = performance.now();
        await work(i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { latencies, seconds: (performance.now() - started) / 1000 };
}

/** CPU seconds (user + system) and peak resident memory of a live process. */
export async function processUsage(pid: number): Promise<{ cpuSeconds: number; peakRssMiB: number }> {
  const stat = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]?.split(" ") ?? [];
  const ticks = Number(stat[11]) + Number(stat[12]);
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpuSeconds: ticks / 100, peakRssMiB: hwm / 1024 };
}

export async function benchControlPlane(): Promise<ControlPlane> {
  return startControlPlane({ extraCrdFiles: ownCrdFiles });
}

export async function namespaces(kc: KubeConfig, ...names: string[]): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  for (const name of names) await core.createNamespace({ body: { metadata: { name } } });
}

const repo = fileURLToPath(new URL("..", import.meta.url));

/**
 * Node's flags for the controller: the image's (between node and the script in the Dockerfile's
 * ENTRYPOINT) unless BENCH_NODE_ARGS says otherwise, e.g. BENCH_NODE_ARGS="--cpu-prof
 * --cpu-prof-dir=/tmp/prof" to profile it.
 */
export function controllerNodeArgs(): string[] {
  if (process.env.BENCH_NODE_ARGS !== undefined)
    return process.env.BENCH_NODE_ARGS.split(" ").filter(Boolean);
  const dockerfile = readFileSync(path.join(repo, "Dockerfile"), "utf8");
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
  const words = entrypoint ? (JSON.parse(entrypoint) as string[]) : [];
  return words.slice(1, -1);
}

/** The controller container's memory limit in the release, in bytes. */
function releaseMemoryLimit(): number {
  const release = readFileSync(path.join(repo, "catalog", "release.yaml"), "utf8");
  const deployment = parseAllDocuments(release)
    .map((d) => d.toJS() as { kind?: string; spec?: { template?: { spec?: { containers?: unknown[] } } } })
    .find((d) => d.kind === "Deployment");
  const container = deployment?.spec?.template?.spec?.containers?.[0] as
    { resources?: { limits?: { memory?: string } } } | undefined;
  const limit = /^(\d+)Mi$/.exec(container?.resources?.limits?.memory ?? "");
  if (!limit) throw new Error("catalog/release.yaml: the controller's memory limit is not in Mi");
  return Number(limit[1]) * 1024 * 1024;
}

/**
 * Spawns the controller as its Pod runs: Node sizes its heap from the container's memory limit, so
 * it runs inside a memory cgroup with the release's limit (cgroup v2 or v1's memory controller,
 * which a benchmark run as root can make). Where none can be made, it runs without a limit, and
 * says so.
 */
export function spawnLimited(args: string[], options: SpawnOptions): ChildProcess {
  const name = `scoped-step-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const limit = releaseMemoryLimit();
  const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
  const dir = v2 ? path.join("/sys/fs/cgroup", name) : path.join("/sys/fs/cgroup/memory", name);
  try {
    mkdirSync(dir);
    writeFileSync(path.join(dir, v2 ? "memory.max" : "memory.limit_in_bytes"), String(limit));
  } catch (err) {
    console.log(`the controller runs without a memory limit (no cgroup: ${String(err)})`);
    return spawn(process.execPath, args, options);
  }
  console.log(`the controller runs under the release's memory limit, ${limit / 1024 / 1024} MiB (${dir})`);
  // prettier-ignore
  const child = spawn("/bin/sh", ["-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', dir, process.execPath, ...args], options);
  child.once("exit", () => {
    try {
      rmdirSync(dir);
    } catch {
      // A process of it may still be ending; the directory holds no memory.
    }
  });
  return child;
}

let built: Promise<string> | undefined;

/**
 * The controller's entry point as the image runs it: JavaScript with the types stripped
 * (hack/strip-types.ts), built once per benchmark. BENCH_SOURCES=1 runs the TypeScript sources.
 */
export function controllerMain(): Promise<string> {
  const sources = fileURLToPath(new URL("../controller/main.ts", import.meta.url));
  if (process.env.BENCH_SOURCES === "1") return Promise.resolve(sources);
  built ??= (async () => {
    const out = await mkdtemp(path.join(os.tmpdir(), "scoped-step-js-"));
    await symlink(fileURLToPath(new URL("../node_modules", import.meta.url)), path.join(out, "node_modules"));
    return stripTypes(out);
  })();
  return built;
}

/** Starts the controller; `main` is the TypeScript entry point unless given (see controllerMain). */
export function startControllerProcess(
  kubeconfig: string,
  args: string[],
  env: Record<string, string> = {},
  main = fileURLToPath(new URL("../controller/main.ts", import.meta.url)),
): ChildProcess {
  const nodeArgs = controllerNodeArgs();
  const child = spawnLimited([...nodeArgs, main, "--http-port=0", "--log-level=warn", ...args], {
    env: { ...process.env, KUBECONFIG: kubeconfig, ...env },
    stdio: ["ignore", "inherit", "inherit"],
  });
  return child;
}

/** Resolves once some replica holds the controller's Lease in the given namespace. */
export async function waitForLease(
  kc: KubeConfig,
  namespace: string,
  name = "scoped-step-controller",
): Promise<void> {
  const api = kc.makeApiClient(CoordinationV1Api);
  for (let i = 0; i < 300; i++) {
    const lease = await api.readNamespacedLease({ name, namespace }).catch(() => undefined);
    if (lease?.spec?.holderIdentity) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no controller took the lease in ${namespace}`);
}

/** What the benchmark reads of pods and runs from its watches. */
export interface Seen {
  metadata: { name: string; uid?: string; resourceVersion?: string; labels?: Record<string, string> };
  status?: { conditions?: { status: string }[] };
}

/** A watch that resumes from the last resourceVersion it saw whenever the server ends it. */
export function follow(
  watch: Watch,
  path: string,
  onEvent: (type: string, obj: Seen) => void,
): { stop: () => void } {
  let stopped = false;
  let version = "";
  let current: AbortController | undefined;
  const start = () => {
    if (stopped) return;
    void watch
      .watch(
        path,
        version ? { resourceVersion: version } : {},
        (type: string, obj: Seen) => {
          if (obj.metadata.resourceVersion) version = obj.metadata.resourceVersion;
          onEvent(type, obj);
        },
        () => setTimeout(start, 50),
      )
      .then((c) => (current = c));
  };
  start();
  return {
    stop: () => {
      stopped = true;
      current?.abort();
    },
  };
}

/** A scoped-step CustomRun carrying its step as params, for the Application payments/api. */
export function scopedRun(name: string, script: string, results: string[] = []) {
  return {
    apiVersion: "tekton.dev/v1beta1",
    kind: "CustomRun",
    metadata: { name },
    spec: {
      customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" },
      params: [
        { name: "image", value: "alpine" },
        { name: "script", value: script },
        ...(results.length ? [{ name: "results", value: results }] : []),
        { name: "application", value: "payments" },
        { name: "component", value: "api" },
      ],
    },
  };
}

/**
 * What a tenant namespace holds before its runs: the Application payments, whose component api
 * names `roleArn`, and a policy granting the roles `bench-*` of that role's account.
 */
export async function benchTenant(objects: CustomObjectsApi, ns: string, roleArn: string): Promise<void> {
  const account = roleArn.split(":")[4] ?? "";
  await createApplication(objects, ns, "payments", [
    identityComponent({ audience: "sts.amazonaws.com", aws: { roleArn, region: "eu-west-1" } }),
  ]);
  await createScopedStepPolicy(objects, ns, {
    namespaces: [ns],
    aws: { allowedRoleArns: [`arn:aws:iam::${account}:role/bench-*`], maxSessionDuration: 3600 },
    deliveryModes: ["env"],
    revocation: "deny-policy",
  });
}

/** The loopback AWS peer trusting a controller issuer on a free port, and the controller's flags. */
export async function awsFor(ns: string, roleArn: string) {
  const peer = await startAwsPeer({ cacheKeys: true });
  const trusted = await registerIssuer(peer);
  createTrustingRole(peer, trusted, {
    arn: roleArn,
    subjectLike: `system:scoped-step:${ns}:*`,
  });
  return { peer, ...controllerAwsSettings(peer, trusted) };
}

/**
 * Polls /readyz until the controller says it is ready (keys loaded, policies and, leading,
 * informers synced); fails at once if `gone` says its process has exited.
 */
export async function waitForReady(base: string, gone: () => boolean = () => false): Promise<void> {
  for (const deadline = Date.now() + 120_000; Date.now() < deadline;) {
    if (gone()) throw new Error("the controller exited before it was ready");
    const ok = await fetch(`${base}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("the controller did not become ready in 2 minutes");
}
