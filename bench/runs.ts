// Creates N scoped-step CustomRuns at once against a local control plane, with the test kubelet
// completing their pods, and prints latency percentiles, throughput and the controller's CPU and
// peak memory.
//   node bench/runs.ts [N ...]              no-op credentials (default N: 100 1000)
//   node bench/runs.ts --compare [N ...]    each N twice: no-op credentials, then real minting and
//                                           deny-policy revocation against the loopback AWS peer
import { CoreV1Api, CustomObjectsApi, Watch } from "@kubernetes/client-node";
import { startTestKubelet } from "../simulators/kubelet/index.ts";
import {
  awsFor,
  benchControlPlane,
  controllerMain,
  follow,
  ms,
  namespaces,
  percentile,
  processUsage,
  scopedRun,
  type Seen,
  startControllerProcess,
  waitForLease,
} from "./support.ts";
import { createScopedStepPolicy } from "../test/support/policy.ts";
import { createApplication, identityComponent } from "../test/support/application.ts";

const compare = process.argv.includes("--compare");
const sizes = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n > 0);
const runs = { group: "tekton.dev", version: "v1beta1", plural: "customruns" } as const;

const cp = await benchControlPlane();
try {
  for (const n of sizes.length ? sizes : [100, 1000]) {
    const base = await benchmark(n, false);
    if (compare) {
      const minted = await benchmark(n, true);
      console.log(`\nAdded by minting + revoking at N = ${n}:`);
      console.log(
        `  creation -> pod created p50 +${ms(minted.podP50 - base.podP50)}, creation -> Succeeded p50 +${ms(minted.doneP50 - base.doneP50)}`,
      );
      console.log(`  controller CPU per run +${(minted.cpuMsPerRun - base.cpuMsPerRun).toFixed(1)} ms`);
    }
  }
} finally {
  await cp.stop();
}

interface Figures {
  podP50: number;
  doneP50: number;
  cpuMsPerRun: number;
}

async function benchmark(n: number, withCredentials: boolean): Promise<Figures> {
  const kc = cp.kubeConfig;
  const ns = `bench-${n}${withCredentials ? "-aws" : ""}`;
  const ctl = `bench-ctl-${n}${withCredentials ? "-aws" : ""}`;
  await namespaces(kc, ns, ctl);
  const core = kc.makeApiClient(CoreV1Api);
  const objects = kc.makeApiClient(CustomObjectsApi);
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: "default" } } });
  await createApplication(objects, ns, "payments", [
    identityComponent({ aws: { roleArn: "arn:aws:iam::111122223333:role/bench" } }),
  ]);
  const kubelet = await startTestKubelet(kc, { namespace: ns });
  await createScopedStepPolicy(objects, ns, {
    namespaces: [ns],
    aws: { allowedRoleArns: ["arn:aws:iam::111122223333:role/*"] },
    revocation: withCredentials ? "deny-policy" : "secret",
  });
  const aws = withCredentials ? await awsFor(ns, "arn:aws:iam::111122223333:role/bench") : undefined;
  const controller = startControllerProcess(
    cp.kubeconfigPath,
    [
      `--namespace=${ctl}`,
      `--watch-namespaces=${ns}`,
      "--concurrency=16",
      ...(aws?.flags ?? ["--credentials=none"]),
    ],
    aws?.env ?? {},
    await controllerMain(),
  );

  const created = new Map<string, number>();
  const podSeen = new Map<string, number>();
  const doneAt = new Map<string, number>();
  let finish!: () => void;
  const allDone = new Promise<void>((r) => (finish = r));
  const watch = new Watch(kc);
  const podWatch = follow(watch, `/api/v1/namespaces/${ns}/pods`, (type, pod: Seen) => {
    const run = pod.metadata.labels?.["tekton.dev/customRun"];
    if (type === "ADDED" && run && !podSeen.has(run)) podSeen.set(run, performance.now());
  });
  const runWatch = follow(watch, `/apis/tekton.dev/v1beta1/namespaces/${ns}/customruns`, (_t, run: Seen) => {
    const status = run.status?.conditions?.[0]?.status;
    if ((status === "True" || status === "False") && !doneAt.has(run.metadata.name)) {
      doneAt.set(run.metadata.name, performance.now());
      if (doneAt.size === n) finish();
    }
  });

  // The clock starts once the controller leads.
  await waitForLease(kc, ctl);
  const start = performance.now();
  const body = (i: number) => scopedRun(`run-${i}`, "echo ok > $(results.out.path)", ["out"]);
  const creators = Array.from({ length: 16 }, async (_, w) => {
    for (let i = w; i < n; i += 16) {
      const t = performance.now();
      await objects.createNamespacedCustomObject({ ...runs, namespace: ns, body: body(i) });
      created.set(`run-${i}`, t);
    }
  });
  await Promise.all(creators);
  await allDone;
  const elapsed = (performance.now() - start) / 1000;
  const usage = await processUsage(controller.pid ?? 0);
  podWatch.stop();
  runWatch.stop();
  controller.kill("SIGTERM");
  await kubelet.stop();
  await aws?.peer.stop();

  const toPod = [...created].map(([k, t]) => (podSeen.get(k) ?? Number.NaN) - t);
  const toDone = [...created].map(([k, t]) => (doneAt.get(k) ?? Number.NaN) - t);
  const failed = n - [...doneAt.keys()].length;
  const unseen = toPod.filter((v) => !Number.isFinite(v)).length;
  console.log(
    `\nN = ${n} CustomRuns created at once (16 writers); unfinished: ${failed}; pod ADDED events missed: ${unseen}`,
  );
  console.log(
    `  creation -> pod created : p50 ${ms(percentile(toPod, 50))}  p99 ${ms(percentile(toPod, 99))}`,
  );
  console.log(
    `  creation -> Succeeded   : p50 ${ms(percentile(toDone, 50))}  p99 ${ms(percentile(toDone, 99))}`,
  );
  console.log(
    `  throughput              : ${(n / elapsed).toFixed(1)} runs/s (${elapsed.toFixed(1)} s for all)`,
  );
  console.log(
    `  controller              : ${usage.cpuSeconds.toFixed(1)} CPU s (${((usage.cpuSeconds / n) * 1000).toFixed(1)} ms/run), peak RSS ${usage.peakRssMiB.toFixed(0)} MiB`,
  );
  return {
    podP50: percentile(toPod, 50),
    doneP50: percentile(toDone, 50),
    cpuMsPerRun: (usage.cpuSeconds / n) * 1000,
  };
}
