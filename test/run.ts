// Runs every test file with node's test runner against one shared local control plane, started
// here and stopped afterwards whatever happens. Extra arguments are passed to `node --test`.
//
// All of it runs inside network, mount and PID namespaces of its own (hack/cluster/netns.sh): this
// script first builds what the cluster needs (packages, Go programs, images; the only steps that
// reach outside), then starts itself again in there. When a selected file uses the real cluster
// (`realCluster()`), that cluster, with a node running real containers, starts too.
import { globSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { startCluster } from "../hack/cluster/cluster.ts";
import { startControlPlane } from "../hack/cluster/control-plane.ts";
import { inOwnNamespaces, runChild } from "../hack/cluster/enter.ts";
import { ownCrdFiles, type SharedCluster, type SharedNodeCluster } from "./support/cluster.ts";

const args = process.argv.slice(2);
const named = args.filter((a) => !a.startsWith("-"));
const files = named.length ? [] : ["test/**/*.test.ts"];
const selected = named.length ? named : globSync(files[0] ?? "");
const needsNode = selected.some((f) => readFileSync(f, "utf8").includes("realCluster("));

const nodeImages = await inOwnNamespaces({ node: needsNode, log: (l) => console.log(`[node] ${l}`) });

const started = Date.now();
const cp = await startControlPlane({
  extraCrdFiles: ownCrdFiles,
  log: (l) => console.log(`[control plane] ${l}`),
});
console.log(`[control plane] up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
const info: SharedCluster = { server: cp.server, etcdUrl: cp.etcdUrl, kubeconfig: cp.kubeconfigPath };
const infoPath = path.join(cp.dir, "cluster.json");
await writeFile(infoPath, JSON.stringify(info));

const env: NodeJS.ProcessEnv = { ...process.env, SCOPED_STEP_TEST_CLUSTER: infoPath };
const cluster = nodeImages
  ? await startCluster({
      extraCrdFiles: ownCrdFiles,
      images: nodeImages,
      log: (l) => console.log(`[cluster] ${l}`),
    })
  : undefined;
if (cluster) {
  console.log(`[cluster] node Ready ${((Date.now() - started) / 1000).toFixed(1)} s after start`);
  const nodeInfo: SharedNodeCluster = {
    server: cluster.server,
    etcdUrl: cluster.etcdUrl,
    kubeconfig: cluster.kubeconfigPath,
    nodeIp: cluster.node.ip,
    containerdSocket: cluster.node.containerdSocket,
    images: cluster.node.images,
    dir: cluster.dir,
  };
  env.SCOPED_STEP_TEST_NODE_CLUSTER = path.join(cluster.dir, "cluster.json");
  await writeFile(env.SCOPED_STEP_TEST_NODE_CLUSTER, JSON.stringify(nodeInfo));
}

// The per-test timeout is only a backstop for a test that hangs outside any wait: the waits fail
// first when what they wait for stops making progress (whileProgressing), and on a loaded machine
// a catalog entry's two pipelines alone have taken over five minutes.
const code = await runChild(
  process.execPath,
  ["--test", "--test-reporter=spec", "--test-concurrency=2", "--test-timeout=1200000", ...args, ...files],
  env,
);
await cluster?.stop();
await cp.stop();
process.exit(code);
