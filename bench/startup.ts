// Cold start -> ready, alone: starts the controller K times against one local control plane (its
// signing keys, a ScopedStepPolicy and an Application in place, as after an install) and prints
// spawn -> /readyz percentiles and the idle RSS once ready.
//   node bench/startup.ts [K]     (default 10)
// Each start is a new process, as a rolling update or a crash restart makes one; the one before it
// releases the Lease on SIGTERM, so every start leads at once.
import { CustomObjectsApi } from "@kubernetes/client-node";
import { readFile } from "node:fs/promises";
import {
  awsFor,
  benchControlPlane,
  benchTenant,
  controllerMain,
  ms,
  namespaces,
  percentile,
  startControllerProcess,
  waitForReady,
} from "./support.ts";

const starts = Number(process.argv[2] ?? 10);
const ns = "bench-startup";
const ctl = "bench-startup-ctl";
const account = "111122223333";
const roleArn = `arn:aws:iam::${account}:role/bench-startup`;

const cp = await benchControlPlane();
const stops: (() => Promise<unknown>)[] = [() => cp.stop()];
try {
  const kc = cp.kubeConfig;
  await namespaces(kc, ns, ctl);
  const objects = kc.makeApiClient(CustomObjectsApi);
  await benchTenant(objects, ns, roleArn);
  const aws = await awsFor(ns, roleArn);
  stops.push(() => aws.peer.stop());
  const main = await controllerMain();
  // The issuer URL names the controller's own port: AWS fetches the JWKS there.
  const port = /^--http-port=(\d+)$/.exec(aws.flags.find((f) => f.startsWith("--http-port=")) ?? "")?.[1];

  const readyMs: number[] = [];
  const rssMiB: number[] = [];
  // The first start also writes the signing keys; every later one finds them.
  for (let i = 0; i <= starts; i++) {
    const spawnedAt = performance.now();
    const controller = startControllerProcess(
      cp.kubeconfigPath,
      [`--namespace=${ctl}`, `--watch-namespaces=${ns}`, "--aws-region=eu-west-1", ...aws.flags],
      aws.env,
      main,
    );
    const exited = new Promise((r) => controller.once("exit", r));
    try {
      await waitForReady(`http://127.0.0.1:${port}`, () => controller.exitCode !== null);
      const took = performance.now() - spawnedAt;
      const status = await readFile(`/proc/${controller.pid ?? -1}/status`, "utf8");
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
      if (i === 0)
        console.log(`first start (writes the signing keys): ${ms(took)}, RSS ${rss.toFixed(0)} MiB`);
      else {
        readyMs.push(took);
        rssMiB.push(rss);
      }
    } finally {
      controller.kill("SIGTERM");
      await exited;
    }
  }
  const row = (what: string, values: number[], unit: (n: number) => string) =>
    console.log(
      `  ${what.padEnd(34)} p50 ${unit(percentile(values, 50))}  min ${unit(Math.min(...values))}  max ${unit(Math.max(...values))}`,
    );
  console.log(`\n${starts} starts with the keys in place:`);
  row("cold start -> ready (spawn to /readyz)", readyMs, ms);
  row("RSS when ready", rssMiB, (n) => `${n.toFixed(0)} MiB`);
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
}
