// Runs every test file with node's test runner against one shared local control plane, started
// here and stopped afterwards whatever happens. Extra arguments are passed to `node --test`.
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { startControlPlane } from "../hack/cluster/control-plane.ts";
import { ownCrdFiles, type SharedCluster } from "./support/cluster.ts";

const started = Date.now();
const cp = await startControlPlane({
  extraCrdFiles: ownCrdFiles,
  log: (l) => console.log(`[control plane] ${l}`),
});
console.log(`[control plane] up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
const info: SharedCluster = { server: cp.server, etcdUrl: cp.etcdUrl, kubeconfig: cp.kubeconfigPath };
const infoPath = path.join(cp.dir, "cluster.json");
await writeFile(infoPath, JSON.stringify(info));

const args = process.argv.slice(2);
const files = args.some((a) => !a.startsWith("-")) ? [] : ["test/**/*.test.ts"];
const child = spawn(
  process.execPath,
  ["--test", "--test-reporter=spec", "--test-concurrency=2", "--test-timeout=600000", ...args, ...files],
  { stdio: "inherit", env: { ...process.env, SCOPED_STEP_TEST_CLUSTER: infoPath } },
);
const stop = () => child.kill("SIGTERM");
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
const code = await new Promise<number>((resolve) =>
  child.once("exit", (c, sig) => resolve(c ?? (sig ? 1 : 0))),
);
await cp.stop();
process.exit(code);
