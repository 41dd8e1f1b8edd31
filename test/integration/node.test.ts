// The cluster with a real node (hack/cluster/cluster.ts): pods are containers that containerd and
// runc start from the locally built images, on a CNI bridge, with kube-proxy's Service rules and a
// controller-manager, all inside the test run's own network namespace.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { RbacAuthorizationV1Api, type V1Container, type V1Pod, type V1Volume } from "@kubernetes/client-node";
import { realCluster, testNamespace, type NodeTestCluster } from "../support/cluster.ts";
import { eventually } from "../support/wait.ts";

const sa = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Runs a one-container pod to completion; returns it and its log. */
async function runPod(
  c: NodeTestCluster,
  ns: string,
  name: string,
  container: Omit<V1Container, "name">,
  volumes: V1Volume[] = [],
): Promise<{ pod: V1Pod; log: string }> {
  await c.core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name },
      spec: { restartPolicy: "Never", containers: [{ name: "main", ...container }], volumes },
    },
  });
  const pod = await eventually(
    `pod ${name} to finish`,
    async () => {
      const p = await c.core.readNamespacedPod({ namespace: ns, name });
      return ["Succeeded", "Failed"].includes(p.status?.phase ?? "") ? p : undefined;
    },
    { timeoutMs: 120_000 },
  );
  const log = await c.core.readNamespacedPodLog({ namespace: ns, name, container: "main" });
  return { pod, log };
}

test("a pod reaches the API server through the kubernetes Service with its ServiceAccount token", async () => {
  const c = await realCluster();
  const ns = await testNamespace(c, "node");
  await c.kc.makeApiClient(RbacAuthorizationV1Api).createNamespacedRoleBinding({
    namespace: ns,
    body: {
      metadata: { name: "default-view" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "view" },
      subjects: [{ kind: "ServiceAccount", name: "default", namespace: ns }],
    },
  });
  // The ServiceAccount and the namespace's CA ConfigMap come from the controller-manager.
  const script = [
    "set -e",
    'echo "service $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"',
    `curl -sS --fail --cacert ${sa}/ca.crt -H "Authorization: Bearer $(cat ${sa}/token)" \\`,
    `  "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat ${sa}/namespace)/configmaps/kube-root-ca.crt"`,
  ].join("\n");
  const { pod, log } = await runPod(c, ns, "in-cluster", {
    image: c.images.awscli,
    command: ["/bin/sh", "-c", script],
  });
  assert.equal(pod.status?.phase, "Succeeded", log);
  assert.match(pod.status?.podIP ?? "", /^10\.244\.0\.\d+$/, "the pod has an address on the CNI bridge");
  assert.match(log, /^service 10\.0\.0\.1:443$/m, "in-cluster config points at the Service's ClusterIP");
  assert.match(log, /"name": "kube-root-ca.crt"/);
  assert.match(log, /BEGIN CERTIFICATE/);
});

test("an image without a shell runs its one static program", async () => {
  const c = await realCluster();
  const ns = await testNamespace(c, "node");
  const { pod, log } = await runPod(c, ns, "static", {
    image: c.images.static,
    command: ["/report", "hello"],
  });
  assert.equal(pod.status?.phase, "Succeeded", log);
  assert.match(log, /^args: hello$/m);
  const broken = await runPod(c, ns, "no-shell", {
    image: c.images.static,
    command: ["/bin/sh", "-c", "true"],
  });
  assert.equal(broken.pod.status?.phase, "Failed", "there is no /bin/sh to run");
});

test("the garbage collector deletes what an object owned once it is gone", async () => {
  const c = await realCluster();
  const ns = await testNamespace(c, "node");
  const owner = await c.core.createNamespacedConfigMap({
    namespace: ns,
    body: { metadata: { name: "owner" } },
  });
  await c.core.createNamespacedConfigMap({
    namespace: ns,
    body: {
      metadata: {
        name: "owned",
        ownerReferences: [
          { apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata?.uid ?? "" },
        ],
      },
    },
  });
  await c.core.deleteNamespacedConfigMap({ namespace: ns, name: "owner" });
  await eventually("the owned ConfigMap to be collected", async () =>
    (await c.core.listNamespacedConfigMap({ namespace: ns })).items.some((m) => m.metadata?.name === "owned")
      ? undefined
      : true,
  );
});

test("a claim binds to a hostPath volume and a pod writes to it", async () => {
  const c = await realCluster();
  const ns = await testNamespace(c, "node");
  const dir = path.join(c.dir, "volumes", ns);
  await mkdir(dir, { recursive: true });
  await c.core.createPersistentVolume({
    body: {
      metadata: { name: `pv-${ns}` },
      spec: {
        capacity: { storage: "1Gi" },
        accessModes: ["ReadWriteOnce"],
        storageClassName: "host",
        hostPath: { path: dir, type: "Directory" },
        claimRef: { namespace: ns, name: "data" },
      },
    },
  });
  await c.core.createNamespacedPersistentVolumeClaim({
    namespace: ns,
    body: {
      metadata: { name: "data" },
      spec: {
        accessModes: ["ReadWriteOnce"],
        storageClassName: "host",
        resources: { requests: { storage: "1Gi" } },
      },
    },
  });
  await eventually("the claim to be Bound", async () => {
    const pvc = await c.core.readNamespacedPersistentVolumeClaim({ namespace: ns, name: "data" });
    return pvc.status?.phase === "Bound" ? true : undefined;
  });
  const { pod, log } = await runPod(
    c,
    ns,
    "writer",
    {
      image: c.images.busybox,
      command: ["/bin/sh", "-c", "echo written by a pod > /data/out.txt"],
      volumeMounts: [{ name: "data", mountPath: "/data" }],
    },
    [{ name: "data", persistentVolumeClaim: { claimName: "data" } }],
  );
  assert.equal(pod.status?.phase, "Succeeded", log);
  assert.ok(existsSync(path.join(dir, "out.txt")));
  assert.equal(await readFile(path.join(dir, "out.txt"), "utf8"), "written by a pod\n");
});
