// The controller's memory against the number of runs it has finished. Drives the real controller
// process against the local control plane, without Tekton: CustomRuns are created directly, at
// most `inFlight` at a time, and the step pods are completed by this benchmark (it writes each
// pod's status as a kubelet would: the step container terminated with exit code 0), so that
// 10,000 runs fit in minutes on two cores. Finished runs and their pods stay in the API server, as
// they do on a CI cluster until something prunes them. Prints the controller's resident memory
// (VmRSS) every `every` runs finished, and its peak.
//
//   node bench/memory.ts [N] [every] [inFlight]   (default: 10000 runs, a line every 1000, 100 at once)
//   node bench/memory.ts --aws [...]              minting against the loopback AWS peer
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type V1Pod,
} from "@kubernetes/client-node";
import { readFile } from "node:fs/promises";
import { createApplication, identityComponent } from "../test/support/application.ts";
import { createScopedStepPolicy } from "../test/support/policy.ts";
import {
  awsFor,
  benchControlPlane,
  controllerMain,
  follow,
  namespaces,
  processUsage,
  scopedRun,
  startControllerProcess,
  waitForLease,
} from "./support.ts";

const aws = process.argv.includes("--aws");
const [n = 10_000, every = 1000, inFlight = 100] = process.argv
  .slice(2)
  .filter((a) => !a.startsWith("--"))
  .map(Number);
const ns = "memory";
const ctl = "memory-ctl";
const runs = { group: "tekton.dev", version: "v1beta1", plural: "customruns" } as const;
const roleArn = "arn:aws:iam::111122223333:role/bench";

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

const cp = await benchControlPlane();
const stops: (() => Promise<unknown>)[] = [];
try {
  const kc = cp.kubeConfig;
  await namespaces(kc, ns, ctl);
  const core = kc.makeApiClient(CoreV1Api);
  const objects = kc.makeApiClient(CustomObjectsApi);
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: "default" } } });
  await createApplication(objects, ns, "payments", [
    identityComponent({ aws: { roleArn, region: "eu-west-1" } }),
  ]);
  await createScopedStepPolicy(objects, ns, {
    namespaces: [ns],
    aws: { allowedRoleArns: ["arn:aws:iam::111122223333:role/*"] },
    revocation: "secret",
  });
  let flags = ["--credentials=none"];
  let env: Record<string, string> = {};
  if (aws) {
    const peer = await awsFor(ns, roleArn);
    stops.push(() => peer.peer.stop());
    flags = [...peer.flags, "--aws-region=eu-west-1"];
    env = peer.env;
  }
  const controller = startControllerProcess(
    cp.kubeconfigPath,
    [`--namespace=${ctl}`, `--watch-namespaces=${ns}`, "--concurrency=16", ...flags],
    env,
    await controllerMain(),
  );
  stops.push(async () => {
    const exited = new Promise((r) => controller.once("exit", r));
    controller.kill("SIGTERM");
    await exited;
  });
  const pid = controller.pid ?? 0;
  await waitForLease(kc, ctl);

  // The kubelet's part: every step pod that appears ends at once, successfully, with no results.
  const completed = new Set<string>();
  const watch = new Watch(kc);
  const complete = async (pod: V1Pod) => {
    const name = pod.metadata?.name ?? "";
    const now = new Date().toISOString();
    const status = {
      phase: "Succeeded",
      containerStatuses: [
        {
          name: "step",
          image: "alpine",
          imageID: "",
          ready: false,
          restartCount: 0,
          state: {
            terminated: { exitCode: 0, reason: "Completed", message: "[]", startedAt: now, finishedAt: now },
          },
        },
      ],
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await core.patchNamespacedPodStatus(
          { namespace: ns, name, body: { status } },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        );
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  const pods = follow(watch, `/api/v1/namespaces/${ns}/pods`, (type, pod) => {
    const name = pod.metadata.name;
    if (type !== "ADDED" || completed.has(name)) return;
    completed.add(name);
    void complete(pod as unknown as V1Pod);
  });
  stops.push(() => Promise.resolve(pods.stop()));

  let finished = 0;
  const done = new Set<string>();
  let wake: (() => void) | undefined;
  const runWatch = follow(watch, `/apis/tekton.dev/v1beta1/namespaces/${ns}/customruns`, (_t, run) => {
    const status = run.status?.conditions?.[0]?.status;
    if ((status === "True" || status === "False") && !done.has(run.metadata.name)) {
      done.add(run.metadata.name);
      finished++;
      wake?.();
    }
  });
  stops.push(() => Promise.resolve(runWatch.stop()));

  const idle = await rssMiB(pid);
  console.log(
    `driving ${n} CustomRuns (${aws ? "AWS credentials" : "no-op credentials"}), ${inFlight} at a time`,
  );
  console.log(`  runs finished   RSS MiB   (idle before the first run: ${idle.toFixed(0)} MiB)`);
  const started = performance.now();
  let created = 0;
  let nextReport = every;
  while (finished < n) {
    while (created < n && created - finished < inFlight) {
      const i = created++;
      void objects
        .createNamespacedCustomObject({ ...runs, namespace: ns, body: scopedRun(`run-${i}`, "true") })
        .catch((err: unknown) => console.error(`could not create run-${i}:`, err));
    }
    await new Promise<void>((r) => {
      wake = r;
      setTimeout(r, 1000);
    });
    while (finished >= nextReport) {
      console.log(`  ${String(nextReport).padStart(13)}   ${(await rssMiB(pid)).toFixed(0).padStart(7)}`);
      nextReport += every;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const usage = await processUsage(pid);
  console.log(
    `${n} runs in ${seconds.toFixed(0)} s (${(n / seconds).toFixed(1)} runs/s); controller: ` +
      `${usage.cpuSeconds.toFixed(1)} CPU s (${((usage.cpuSeconds / n) * 1000).toFixed(1)} ms/run), ` +
      `peak RSS ${usage.peakRssMiB.toFixed(0)} MiB, RSS now ${(await rssMiB(pid)).toFixed(0)} MiB`,
  );
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  await cp.stop();
}
