// Our overhead against plain Tekton, end to end: on a cluster with a real node (containerd and a
// kubelet, inside namespaces of its own, as `make demo` runs) with Tekton's own controller and our
// controller (minting against the loopback AWS peer, deny-policy revocation), alternating batches of PipelineRuns with one Tekton TaskRun (one step, a taskSpec
// script) and PipelineRuns with one scoped-step task running the same script. Prints latency
// percentiles, each controller's CPU and peak RSS per kind, where the time goes, and the figures
// of a lean controller side by side with Tekton's as ratios: CPU per run, creation -> step pod,
// peak RSS; and our own idle RSS, RSS after the runs, API requests per run by verb (counted by the
// controller's scoped_step_kube_requests_total) and cold start -> ready. Both kinds run the same
// busybox image built here. With --test-kubelet the pods run on the test kubelet (host processes,
// no images) instead: no kubelet or container start-up in the figures, only the controllers.
//
//   node bench/pipelines.ts [N] [batch] [--test-kubelet]    (default: N = 100 of each kind, in batches of 25)

import { createWriteStream } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { CoreV1Api, CustomObjectsApi, Watch, type KubeConfig } from "@kubernetes/client-node";
import { startCluster } from "../hack/cluster/cluster.ts";
import type { ControlPlane } from "../hack/cluster/control-plane.ts";
import { inOwnNamespaces } from "../hack/cluster/enter.ts";
import type { NodeImages } from "../hack/cluster/images.ts";
import { waitFor } from "../hack/cluster/processes.ts";
import { startTektonController } from "../hack/cluster/tekton.ts";
import { startAwsPeer } from "../simulators/aws/server.ts";
import { createTrustingRole, registerIssuer } from "../test/support/aws/trust.ts";
import { startTestKubelet } from "../simulators/kubelet/index.ts";
import {
  benchControlPlane,
  benchTenant,
  controllerMain,
  waitForReady,
  controllerNodeArgs,
  spawnLimited,
  ms,
  namespaces,
  percentile,
  processUsage,
  waitForLease,
} from "./support.ts";
import { ownCrdFiles } from "../test/support/cluster.ts";

type Kind = "taskrun" | "scoped";
const testKubelet = process.argv.includes("--test-kubelet");
const [n = 100, batchSize = 25] = process.argv
  .slice(2)
  .filter((a) => !a.startsWith("--"))
  .map(Number);
/** The real node's images; undefined on the test kubelet, which runs any image name. */
const images: NodeImages | undefined = testKubelet
  ? undefined
  : await inOwnNamespaces({ node: true, log: (l) => console.log(l) });
const stepImage = () => images?.busybox ?? "alpine:3";
const ns = "bench";
const account = "111122223333";
const roleArn = `arn:aws:iam::${account}:role/bench-deployer`;
const script = "echo ok";

/** When each thing was first seen, per PipelineRun, in ms since the epoch (this host's clock). */
type Marks = Map<string, number>;
const marks = new Map<string, Marks>();
const mark = (pipelineRun: string | undefined, what: string, at = Date.now()) => {
  if (!pipelineRun) return;
  const m = marks.get(pipelineRun) ?? new Map<string, number>();
  if (!m.has(what)) m.set(what, at);
  marks.set(pipelineRun, m);
};

const stops: (() => Promise<unknown>)[] = [];

async function main(cp: ControlPlane, nodeIp?: string): Promise<void> {
  const kc = cp.kubeConfig;
  const ctl = "bench-ctl";
  await namespaces(kc, ns, ctl);
  const core = kc.makeApiClient(CoreV1Api);
  const objects = kc.makeApiClient(CustomObjectsApi);
  if (nodeIp) {
    // The controller-manager gives the namespace its default ServiceAccount.
    await waitFor(
      "the bench namespace's default ServiceAccount",
      () => core.readNamespacedServiceAccount({ namespace: ns, name: "default" }).then(() => true),
      { timeoutMs: 120_000 },
    );
  } else {
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: "default" } } });
  }

  // The loopback AWS peer trusts our controller's issuer for this namespace's subjects. On the
  // node's address, where pods reach it. It keeps the issuer's keys as long as their Cache-Control
  // allows, as STS does, rather than fetching them from our controller for every mint.
  const peer = await startAwsPeer({ accountId: account, host: nodeIp, cacheKeys: true });
  stops.push(() => peer.stop());
  const trusted = await registerIssuer(peer);
  const { issuer, port } = trusted;
  createTrustingRole(peer, trusted, { arn: roleArn, subjectLike: `system:scoped-step:${ns}:*` });
  await benchTenant(objects, ns, roleArn);

  if (!nodeIp) {
    const kubelet = await startTestKubelet(kc, { namespace: ns });
    stops.push(() => kubelet.stop());
  }
  const tekton = await startTektonController(cp, {
    ...(images ? { images: { ...images.tekton, shell: images.busybox } } : {}),
    watchNamespace: ns,
    logDir: cp.dir,
  });
  stops.push(() => tekton.stop());

  // Our controller at info level, as it runs in production (Tekton's runs at its default too).
  const logFile = path.join(cp.dir, "scoped-step.log");
  const out = createWriteStream(logFile);
  const nodeArgs = controllerNodeArgs();
  const main = await controllerMain();
  const spawnedAt = performance.now();
  const controller = spawnLimited(
    [
      ...nodeArgs,
      main,
      `--namespace=${ctl}`,
      `--watch-namespaces=${ns}`,
      `--http-port=${port}`,
      "--http-host=127.0.0.1",
      "--log-level=info",
      "--credentials=aws",
      `--issuer-url=${issuer}`,
      "--allow-insecure-issuer=true",
      `--sts-endpoint=${peer.endpoint}`,
      `--iam-endpoint=${peer.endpoint}`,
      "--aws-region=eu-west-1",
    ],
    {
      env: {
        ...process.env,
        KUBECONFIG: cp.kubeconfigPath,
        AWS_ACCESS_KEY_ID: peer.adminCredentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: peer.adminCredentials.secretAccessKey,
        AWS_EC2_METADATA_DISABLED: "true",
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  controller.stdout?.pipe(out);
  stops.push(async () => {
    const exited = new Promise((r) => controller.once("exit", r));
    controller.kill("SIGTERM");
    await exited;
  });
  await waitForLease(kc, ctl);
  const base = `http://127.0.0.1:${port}`;
  await waitForReady(base);
  const coldStartMs = performance.now() - spawnedAt;
  const idleRssMiB = await rssMiB(controller.pid ?? -1);

  const watches = startWatches(kc);
  stops.push(() => Promise.resolve(watches.abort()));
  const pids = { tekton: tekton.pid, scoped: controller.pid ?? -1 };

  console.log(
    `on ${nodeIp ? `a real node (${nodeIp})` : "the test kubelet"}: warming up (5 PipelineRuns of each kind), ` +
      `then ${n} of each in batches of ${batchSize}`,
  );
  await runBatch(objects, "taskrun", "warm-t", 5);
  await runBatch(objects, "scoped", "warm-s", 5);
  const usage: Record<Kind, { tekton: Usage; scoped: Usage }> = {
    taskrun: { tekton: zero(), scoped: zero() },
    scoped: { tekton: zero(), scoped: zero() },
  };
  const names: Record<Kind, string[]> = { taskrun: [], scoped: [] };
  const requests = new Map<string, number>();
  // VmRSS counts the pages of each program's own binary it has touched (node's, and the Go
  // binary's), which the kernel can drop and reload; anonymous memory (heap, stacks) is what each
  // holds. Sampled, as the kernel keeps no peak of it.
  const anonPeak = { tekton: 0, scoped: 0 };
  const anonIdle = await anonMiB(pids.scoped);
  const anonSampler = setInterval(() => {
    for (const who of ["tekton", "scoped"] as const)
      void anonMiB(pids[who]).then((m) => (anonPeak[who] = Math.max(anonPeak[who], m)));
  }, 100);
  stops.push(() => Promise.resolve(clearInterval(anonSampler)));
  for (let b = 0; b * batchSize < n; b++) {
    const size = Math.min(batchSize, n - b * batchSize);
    for (const kind of ["taskrun", "scoped"] as const) {
      const before = { tekton: await sample(pids.tekton), scoped: await sample(pids.scoped) };
      const requestsBefore = kind === "scoped" ? await kubeRequests(base) : undefined;
      names[kind].push(...(await runBatch(objects, kind, `${kind[0] ?? ""}${b}`, size)));
      if (requestsBefore) {
        for (const [k, v] of await kubeRequests(base))
          requests.set(k, (requests.get(k) ?? 0) + v - (requestsBefore.get(k) ?? 0));
      }
      for (const who of ["tekton", "scoped"] as const) {
        const after = await processUsage(pids[who]);
        usage[kind][who].cpuSeconds += after.cpuSeconds - before[who].cpuSeconds;
        usage[kind][who].peakRssMiB = Math.max(usage[kind][who].peakRssMiB, after.peakRssMiB);
      }
    }
  }
  report(names, usage, peer.calls());
  clearInterval(anonSampler);
  lean({
    names,
    usage,
    idleRssMiB,
    anonPeak,
    anonIdle,
    afterRssMiB: await rssMiB(pids.scoped),
    coldStartMs,
    requests,
  });
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/** Anonymous resident memory (RssAnon): what the process holds, not its mapped binary. */
async function anonMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  return Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/**
 * scoped_step_kube_requests_total by "VERB resource", and reconcile passes by result as "PASS
 * result", from the controller's /metrics.
 */
async function kubeRequests(base: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(
    /^scoped_step_kube_requests_total\{verb="(\w+)",resource="([^"]*)"\} (\d+)/gm,
  ))
    out.set(`${m[1] ?? ""} ${m[2] ?? ""}`, Number(m[3]));
  for (const m of text.matchAll(/^scoped_step_reconcile_duration_seconds_count\{result="(\w+)"\} (\d+)/gm))
    out.set(`PASS ${m[1] ?? ""}`, Number(m[2]));
  return out;
}

/** The issue's table: each figure of ours beside Tekton's, as a ratio, with its target. */
function lean(f: {
  names: Record<Kind, string[]>;
  usage: Record<Kind, { tekton: Usage; scoped: Usage }>;
  idleRssMiB: number;
  anonPeak: { tekton: number; scoped: number };
  anonIdle: number;
  afterRssMiB: number;
  coldStartMs: number;
  requests: Map<string, number>;
}): void {
  const runs = f.names.scoped.length;
  const ourCpu = (f.usage.scoped.scoped.cpuSeconds / runs) * 1000;
  const tektonCpu = (f.usage.taskrun.tekton.cpuSeconds / f.names.taskrun.length) * 1000;
  const ourPeak = Math.max(f.usage.taskrun.scoped.peakRssMiB, f.usage.scoped.scoped.peakRssMiB);
  const tektonPeak = Math.max(f.usage.taskrun.tekton.peakRssMiB, f.usage.scoped.tekton.peakRssMiB);
  const toPod = (kind: Kind) =>
    percentile(
      f.names[kind].map(
        (name) => (marks.get(name)?.get("pod created") ?? NaN) - (marks.get(name)?.get("created") ?? NaN),
      ),
      50,
    );
  const row = (figure: string, value: string, target: string) =>
    console.log(`  ${figure.padEnd(66)} ${value.padStart(22)}   target ${target}`);
  console.log(`\nThe lean controller, N = ${runs} of each kind:`);
  row(
    "our CPU per scoped-step run / Tekton's CPU per TaskRun run",
    `${(ourCpu / tektonCpu).toFixed(2)} (${ourCpu.toFixed(0)}/${tektonCpu.toFixed(0)} ms)`,
    "<= 0.5",
  );
  row(
    "creation -> step pod p50, scoped-step / TaskRun",
    `${(toPod("scoped") / toPod("taskrun")).toFixed(2)} (${ms(toPod("scoped"))}/${ms(toPod("taskrun"))})`,
    "<= 0.3",
  );
  row(
    "peak RSS, ours / Tekton's",
    `${(ourPeak / tektonPeak).toFixed(2)} (${ourPeak.toFixed(0)}/${tektonPeak.toFixed(0)} MiB)`,
    "<= 1.0",
  );
  const { tekton: tektonAnon, scoped: ourAnon } = f.anonPeak;
  console.log(
    `    of which anonymous (heap, stacks; not the program's own mapped binary): ${(ourAnon / tektonAnon).toFixed(2)} ` +
      `(${ourAnon.toFixed(0)}/${tektonAnon.toFixed(0)} MiB)`,
  );
  row("idle RSS after start-up (keys loaded, caches synced)", `${f.idleRssMiB.toFixed(0)} MiB`, "<= 80 MiB");
  console.log(`    of which anonymous: ${f.anonIdle.toFixed(0)} MiB`);
  row(`RSS after ${runs + 5} runs have finished`, `${f.afterRssMiB.toFixed(0)} MiB`, "<= 150 MiB");
  row("cold start -> ready (spawn to /readyz, leading)", ms(f.coldStartMs), "<= 1000 ms");
  const byVerb = new Map<string, number>();
  // On a timer, not per run: the lease's renewal, and the lists of the ledger's sweep and of the
  // configuration's watches.
  const periodic = (key: string) =>
    key.endsWith(" leases") || key === "LIST configmaps" || key.startsWith("PASS ");
  for (const [key, count] of f.requests) {
    if (periodic(key) || count === 0) continue;
    const verb = key.split(" ")[0] ?? "";
    byVerb.set(verb, (byVerb.get(verb) ?? 0) + count);
  }
  const total = [...byVerb.values()].reduce((a, b) => a + b, 0);
  const perRun = (c: number) => (c / runs).toFixed(2);
  row("API requests per run (ours), by verb", perRun(total), "the minimum the design allows (README)");
  for (const [verb, count] of [...byVerb].sort()) console.log(`    ${verb.padEnd(8)} ${perRun(count)}`);
  console.log("  by verb and resource, per run:");
  for (const [key, count] of [...f.requests].filter(([k, c]) => c > 0 && !periodic(k)).sort())
    console.log(`    ${key.padEnd(28)} ${perRun(count)}`);
  const passes = [...f.requests].filter(([k]) => k.startsWith("PASS "));
  const allPasses = passes.reduce((n, [, c]) => n + c, 0);
  console.log(
    `  reconcile passes per run: ${perRun(allPasses)} (${passes.map(([k, c]) => `${k.slice(5)} ${perRun(c)}`).join(", ")})`,
  );
}

interface Usage {
  cpuSeconds: number;
  peakRssMiB: number;
}
const zero = (): Usage => ({ cpuSeconds: 0, peakRssMiB: 0 });

/** CPU so far; resets the peak RSS (VmHWM) so the next reading is this batch's peak. */
async function sample(pid: number): Promise<Usage> {
  await writeFile(`/proc/${pid}/clear_refs`, "5").catch(() => undefined);
  return processUsage(pid);
}

const pipelineSpec = (kind: Kind) =>
  kind === "taskrun"
    ? { tasks: [{ name: "step", taskSpec: { steps: [{ name: "run", image: stepImage(), script }] } }] }
    : {
        tasks: [
          {
            name: "step",
            taskRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" },
            params: [
              { name: "image", value: stepImage() },
              { name: "script", value: script },
              { name: "application", value: "payments" },
              { name: "component", value: "api" },
            ],
          },
        ],
      };

/** Creates `size` PipelineRuns at once (8 writers) and waits until every one has finished. */
async function runBatch(objects: CustomObjectsApi, kind: Kind, prefix: string, size: number) {
  const names = Array.from({ length: size }, (_, i) => `${prefix}-${i}`);
  const queue = [...names];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let name = queue.shift(); name; name = queue.shift()) {
        mark(name, "created");
        await objects.createNamespacedCustomObject({
          group: "tekton.dev",
          version: "v1",
          namespace: ns,
          plural: "pipelineruns",
          body: {
            apiVersion: "tekton.dev/v1",
            kind: "PipelineRun",
            metadata: { name },
            spec: { pipelineSpec: pipelineSpec(kind) },
          },
        });
      }
    }),
  );
  const deadline = Date.now() + 600_000;
  while (!names.every((name) => marks.get(name)?.has("done"))) {
    if (Date.now() > deadline) throw new Error(`batch ${prefix} did not finish in 10 minutes`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return names;
}

interface Obj {
  metadata: {
    name: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    resourceVersion?: string;
  };
  status?: {
    phase?: string;
    startTime?: string;
    conditions?: { type: string; status: string; reason?: string }[];
    extraFields?: { scopedStep?: { credential?: unknown } };
    containerStatuses?: { state?: { terminated?: { exitCode: number } } }[];
  };
}
const succeeded = (o: Obj) => o.status?.conditions?.find((c) => c.type === "Succeeded");
const ofRun = (o: Obj) => o.metadata.labels?.["tekton.dev/pipelineRun"];

/** Watches everything a PipelineRun leads to and marks the first sighting of each step of it. */
function startWatches(kc: KubeConfig): { abort: () => void } {
  const customRunOwner = new Map<string, string>();
  const follow = (url: string, handle: (type: string, o: Obj) => void) => followWatch(kc, url, handle);
  const aborts = [
    follow(`/apis/tekton.dev/v1/namespaces/${ns}/pipelineruns`, (_t, pr) => {
      const c = succeeded(pr);
      if (c?.status === "False") mark(pr.metadata.name, "done-failed");
      if (c?.status === "True" || c?.status === "False") mark(pr.metadata.name, "done");
    }),
    follow(`/apis/tekton.dev/v1/namespaces/${ns}/taskruns`, (_t, tr) => {
      mark(ofRun(tr), "child created");
      if (succeeded(tr)?.status === "True") mark(ofRun(tr), "child succeeded");
    }),
    follow(`/apis/tekton.dev/v1beta1/namespaces/${ns}/customruns`, (_t, run) => {
      const pr = ofRun(run);
      if (pr) customRunOwner.set(run.metadata.name, pr);
      mark(pr, "child created");
      if (run.status?.startTime) mark(pr, "started written");
      if (run.status?.extraFields?.scopedStep?.credential) mark(pr, "intent written");
      if (succeeded(run)?.status === "True") mark(pr, "child succeeded");
    }),
    follow(`/api/v1/namespaces/${ns}/pods`, (_t, pod) => {
      mark(ofRun(pod), "pod created");
      if (pod.status?.phase === "Running") mark(ofRun(pod), "pod running");
      if (pod.metadata.annotations?.["tekton.dev/ready"] === "READY") mark(ofRun(pod), "ready annotation");
      // A real kubelet reports the containers terminated before the pod's phase: the task
      // controllers act on the former.
      const containers = pod.status?.containerStatuses ?? [];
      const stepsDone = containers.length > 0 && containers.every((c) => c.state?.terminated?.exitCode === 0);
      if (stepsDone || pod.status?.phase === "Succeeded") mark(ofRun(pod), "pod succeeded");
    }),
    follow(`/api/v1/namespaces/${ns}/secrets`, (type, secret) => {
      const run = secret.metadata.labels?.["tekton.dev/customRun"];
      if (type === "ADDED" && run) mark(customRunOwner.get(run), "secret created");
    }),
  ];
  return { abort: () => aborts.forEach((a) => a()) };
}

/** A watch that resumes from the last version seen whenever the server or the client ends it. */
function followWatch(kc: KubeConfig, url: string, handle: (type: string, o: Obj) => void): () => void {
  const watch = new Watch(kc);
  let stopped = false;
  let current: AbortController | undefined;
  let rv: string | undefined;
  const loop = async () => {
    while (!stopped) {
      await new Promise<void>((resolve) => {
        void watch
          .watch(
            url,
            { allowWatchBookmarks: true, ...(rv ? { resourceVersion: rv } : {}) },
            (type: string, o: Obj) => {
              if (type === "ERROR") rv = undefined;
              else rv = o.metadata.resourceVersion ?? rv;
              if (type !== "BOOKMARK" && type !== "ERROR") handle(type, o);
            },
            () => resolve(),
          )
          .then((c) => (current = c), resolve);
      });
    }
  };
  void loop();
  return () => {
    stopped = true;
    current?.abort();
  };
}

// The steps of each kind, in order; each phase is the time from one to the next.
const phases: Record<Kind, [string, string][]> = {
  taskrun: [
    ["created", "PipelineRun created -> TaskRun created (Tekton)"],
    ["child created", "-> pod created (Tekton's TaskRun reconciler)"],
    ["pod created", "-> pod Running (kubelet: init containers)"],
    ["pod running", "-> ready annotation set (Tekton sees the pod Running)"],
    ["ready annotation", "-> step container terminated (downward volume, 1 s entrypoint poll, step)"],
    ["pod succeeded", "-> TaskRun Succeeded (Tekton)"],
    ["child succeeded", "-> PipelineRun Succeeded (Tekton)"],
    ["done", ""],
  ],
  scoped: [
    ["created", "PipelineRun created -> CustomRun created (Tekton)"],
    [
      "child created",
      "-> startTime and credential intent written (intent pass: finalizer, trait, policy; Secret read beside)",
    ],
    [
      "intent written",
      "-> STS request received (mint pass, same reconcile: ledger, namespace read beside it, token)",
    ],
    ["sts called", "-> credential Secret created (STS answer, Secret)"],
    ["secret created", "-> pod created (pod, status)"],
    ["pod created", "-> pod Running (kubelet)"],
    ["pod running", "-> step container terminated (step)"],
    ["pod succeeded", "-> CustomRun Succeeded (deny-policy revocation, status)"],
    ["child succeeded", "-> PipelineRun Succeeded (Tekton)"],
    ["done", ""],
  ],
};

function report(
  names: Record<Kind, string[]>,
  usage: Record<Kind, { tekton: Usage; scoped: Usage }>,
  calls: { at: Date; action: string; roleSessionName?: string }[],
): void {
  // The STS call per session.
  const runToPipelineRun = (run: string) => run.replace(/-step$/, "");
  for (const call of calls.filter((c) => c.action === "AssumeRoleWithWebIdentity")) {
    const run = /^[^.]+\.(.*)-[0-9a-f]{8}-\d+$/.exec(call.roleSessionName ?? "")?.[1] ?? "";
    mark(runToPipelineRun(run), "sts called", call.at.getTime());
  }

  const between = (kind: Kind, from: string, to: string) =>
    names[kind].map((name) => {
      const m = marks.get(name);
      return (m?.get(to) ?? Number.NaN) - (m?.get(from) ?? Number.NaN);
    });
  const failed = (kind: Kind) => names[kind].filter((name) => marks.get(name)?.has("done-failed")).length;
  const figures = (kind: Kind) => ({
    pod50: percentile(between(kind, "created", "pod created"), 50),
    pod99: percentile(between(kind, "created", "pod created"), 99),
    done50: percentile(between(kind, "created", "done"), 50),
    done99: percentile(between(kind, "created", "done"), 99),
    cpuMs: ((usage[kind].tekton.cpuSeconds + usage[kind].scoped.cpuSeconds) / names[kind].length) * 1000,
  });
  const t = figures("taskrun");
  const s = figures("scoped");
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;

  for (const kind of ["taskrun", "scoped"] as const) {
    const f = kind === "taskrun" ? t : s;
    const u = usage[kind];
    console.log(
      `\n${kind === "taskrun" ? "Tekton TaskRun" : "scoped-step task"}: ${names[kind].length} PipelineRuns, failed ${failed(kind)}`,
    );
    console.log(`  creation -> step pod created      p50 ${ms(f.pod50)}  p99 ${ms(f.pod99)}`);
    console.log(`  creation -> PipelineRun Succeeded p50 ${ms(f.done50)}  p99 ${ms(f.done99)}`);
    console.log(
      `  Tekton's controller: ${u.tekton.cpuSeconds.toFixed(1)} CPU s, peak RSS ${u.tekton.peakRssMiB.toFixed(0)} MiB`,
    );
    console.log(
      `  our controller:      ${u.scoped.cpuSeconds.toFixed(1)} CPU s, peak RSS ${u.scoped.peakRssMiB.toFixed(0)} MiB`,
    );
    console.log(`  both, per PipelineRun: ${f.cpuMs.toFixed(1)} CPU ms`);
  }
  console.log("\nscoped-step / TaskRun");
  console.log(`  creation -> pod created p50 ${ratio(s.pod50, t.pod50)}  p99 ${ratio(s.pod99, t.pod99)}`);
  console.log(`  creation -> Succeeded   p50 ${ratio(s.done50, t.done50)}  p99 ${ratio(s.done99, t.done99)}`);
  console.log(`  controller CPU per PipelineRun (both controllers) ${ratio(s.cpuMs, t.cpuMs)}`);

  console.log("\nThe task controller's own share (Tekton's TaskRun reconciler; ours for scoped-step):");
  for (const [from, to, label] of [
    ["child created", "pod created", "run created -> step pod created"],
    ["pod succeeded", "child succeeded", "step ended -> run Succeeded"],
  ] as const) {
    const [a, b] = [between("taskrun", from, to), between("scoped", from, to)];
    console.log(
      `  ${label.padEnd(32)} TaskRun p50 ${ms(percentile(a, 50))} p99 ${ms(percentile(a, 99))}; ` +
        `scoped-step p50 ${ms(percentile(b, 50))} p99 ${ms(percentile(b, 99))}`,
    );
  }

  for (const kind of ["taskrun", "scoped"] as const) {
    console.log(
      `\nWhere the time goes, ${kind === "taskrun" ? "TaskRun" : "scoped-step"} (p50 of each phase):`,
    );
    const steps = phases[kind];
    for (let i = 0; i + 1 < steps.length; i++) {
      const [from, label] = steps[i] as [string, string];
      const to = (steps[i + 1] as [string, string])[0];
      const d = between(kind, from, to);
      console.log(
        `  ${label.padEnd(84)} ${ms(percentile(d, 50)).padStart(8)}  (p99 ${ms(percentile(d, 99))})`,
      );
    }
  }
}

// Last, so that every declaration above is initialized when it runs.
const cluster = images
  ? await startCluster({ extraCrdFiles: ownCrdFiles, images, log: (l) => console.log(l) })
  : undefined;
const cp = cluster ?? (await benchControlPlane());
try {
  await main(cp, cluster?.node.ip);
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  await cp.stop();
}
