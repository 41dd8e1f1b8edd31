// Gives a test a ready API server and clients: the shared control plane that test/run.ts started,
// or, when a test file runs alone, a private one for this process.
import { readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { startControlPlane } from "../../hack/cluster/control-plane.ts";
import { pooledConnections } from "../../controller/kubeconfig.ts";

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

let current: Promise<TestCluster> | undefined;

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
  const kc = new KubeConfig();
  kc.loadFromFile(info.kubeconfig);
  pooledConnections(kc);
  return { ...info, kc, core: kc.makeApiClient(CoreV1Api), objects: kc.makeApiClient(CustomObjectsApi) };
}

export function testCluster(): Promise<TestCluster> {
  current ??= connect();
  return current;
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
