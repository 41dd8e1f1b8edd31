// Gives a test a ready API server and clients: the shared control plane that test/run.ts started,
// or, when a test file runs alone, a private one for this process.
import { readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { startControlPlane } from "../../hack/cluster/control-plane.ts";
import { pooledConnections } from "../../controller/kubeconfig.ts";
import type { NodeImages } from "../../hack/cluster/images.ts";

/** This project's own CRDs, installed with the upstream ones. */
export const ownCrdFiles = ["scopedstep.yaml", "scopedsteppolicy.yaml"].map((file) =>
  fileURLToPath(new URL(`../../catalog/crds/${file}`, import.meta.url)),
);

export interface SharedCluster {
  server: string;
  etcdUrl: string;
  kubeconfig: string;
}

export interface TestCluster extends SharedCluster {
  kc: KubeConfig;
  core: CoreV1Api;
  objects: CustomObjectsApi;
}

/** The cluster with a real node (hack/cluster/cluster.ts) that test/run.ts starts on demand. */
export interface SharedNodeCluster extends SharedCluster {
  nodeIp: string;
  /** The node's containerd, for `ctr --address`. */
  containerdSocket: string;
  images: NodeImages;
  dir: string;
}

export type NodeTestCluster = TestCluster & SharedNodeCluster;

let current: Promise<TestCluster> | undefined;
let currentNode: Promise<NodeTestCluster> | undefined;

function clients(kubeconfig: string) {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  pooledConnections(kc);
  return { kc, core: kc.makeApiClient(CoreV1Api), objects: kc.makeApiClient(CustomObjectsApi) };
}

async function connect(): Promise<TestCluster> {
  let info: SharedCluster;
  const shared = process.env.SCOPED_STEP_TEST_CLUSTER;
  if (shared) {
    info = JSON.parse(await readFile(shared, "utf8")) as SharedCluster;
  } else {
    const cp = await startControlPlane({ extraCrdFiles: ownCrdFiles });
    after(() => cp.stop());
    info = { server: cp.server, etcdUrl: cp.etcdUrl, kubeconfig: cp.kubeconfigPath };
  }
  return { ...info, ...clients(info.kubeconfig) };
}

export function testCluster(): Promise<TestCluster> {
  current ??= connect();
  return current;
}

/**
 * The cluster whose pods are real containers from locally built images, on a node inside the
 * test run's own network namespace. test/run.ts starts it when a selected file calls this (it
 * looks for the call in the file's text), so run such files through test/run.ts.
 */
export function realCluster(): Promise<NodeTestCluster> {
  currentNode ??= (async () => {
    const shared = process.env.SCOPED_STEP_TEST_NODE_CLUSTER;
    if (!shared) throw new Error("no cluster with a node: run this file through test/run.ts");
    const info = JSON.parse(await readFile(shared, "utf8")) as SharedNodeCluster;
    return { ...info, ...clients(info.kubeconfig) };
  })();
  return currentNode;
}

/**
 * A fresh namespace for one test. Nothing deletes it: no namespace controller runs to finalize a
 * deletion, and the control plane is thrown away after the run.
 */
export async function testNamespace(cluster: TestCluster, prefix = "t"): Promise<string> {
  const name = `${prefix}-${randomBytes(4).toString("hex")}`;
  await cluster.core.createNamespace({ body: { metadata: { name } } });
  return name;
}
