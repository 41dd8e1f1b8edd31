import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import https from "node:https";
import {
  ApiextensionsV1Api,
  CoreV1Api,
  PatchStrategy,
  VersionApi,
  Watch,
  setHeaderOptions,
  type KubernetesObject,
} from "@kubernetes/client-node";
import { testCluster, testNamespace } from "../support/cluster.ts";
import { startControlPlane } from "../../hack/cluster/control-plane.ts";

const pinnedKubeVersion = async () => {
  const gomod = await readFile(new URL("../../hack/kubernetes/go.mod", import.meta.url), "utf8");
  const m = /^\s*(?:require\s+)?k8s\.io\/kubernetes (v\S+)/m.exec(gomod);
  assert.ok(m?.[1], "hack/kubernetes/go.mod pins k8s.io/kubernetes");
  return m[1];
};

test("the API server reports the pinned Kubernetes version", async () => {
  const cluster = await testCluster();
  const version = await cluster.kc.makeApiClient(VersionApi).getCode();
  assert.equal(version.gitVersion, await pinnedKubeVersion());
});

test("objects are stored in the real etcd behind the API server", async () => {
  const cluster = await testCluster();
  const ns = await testNamespace(cluster, "etcd");
  const key = Buffer.from(`/registry/namespaces/${ns}`).toString("base64");
  const res = await fetch(`${cluster.etcdUrl}/v3/kv/range`, {
    method: "POST",
    body: JSON.stringify({ key }),
  });
  const body = (await res.json()) as { kvs?: { key: string }[] };
  assert.equal(body.kvs?.length, 1, "etcd holds the namespace under /registry/namespaces");
});

test("Tekton and KubeVela CRDs are installed without conversion webhooks", async () => {
  const cluster = await testCluster();
  const ext = cluster.kc.makeApiClient(ApiextensionsV1Api);
  const expect: Record<string, string> = {
    "customruns.tekton.dev": "v1beta1",
    "pipelines.tekton.dev": "v1",
    "pipelineruns.tekton.dev": "v1",
    "taskruns.tekton.dev": "v1",
    "applications.core.oam.dev": "v1beta1",
    "traitdefinitions.core.oam.dev": "v1beta1",
  };
  for (const [name, version] of Object.entries(expect)) {
    const crd = await ext.readCustomResourceDefinition({ name });
    assert.deepEqual(
      crd.spec.versions.map((v) => v.name),
      [version],
      `${name} serves only its storage version`,
    );
    assert.equal(crd.spec.conversion?.strategy ?? "None", "None", `${name} has no conversion webhook`);
  }
});

interface CustomRun extends KubernetesObject {
  spec: Record<string, unknown>;
  status?: { conditions?: { type: string; status: string; reason?: string }[] };
}

test("an Application with a trait and a CustomRun round-trip, and a status patch arrives by watch", async () => {
  const cluster = await testCluster();
  const ns = await testNamespace(cluster, "roundtrip");
  const { objects } = cluster;

  await objects.createNamespacedCustomObject({
    group: "core.oam.dev",
    version: "v1beta1",
    namespace: ns,
    plural: "applications",
    body: {
      apiVersion: "core.oam.dev/v1beta1",
      kind: "Application",
      metadata: { name: "payments" },
      spec: {
        components: [
          {
            name: "api",
            type: "webservice",
            properties: { image: "example/api:1" },
            traits: [
              {
                type: "scoped-identity",
                properties: {
                  audience: "sts.amazonaws.com",
                  aws: { roleArn: "arn:aws:iam::111122223333:role/x" },
                },
              },
            ],
          },
        ],
      },
    },
  });
  const app = (await objects.getNamespacedCustomObject({
    group: "core.oam.dev",
    version: "v1beta1",
    namespace: ns,
    plural: "applications",
    name: "payments",
  })) as { spec: { components: { traits: { type: string; properties: { audience: string } }[] }[] } };
  assert.equal(app.spec.components[0]?.traits[0]?.type, "scoped-identity");
  assert.equal(app.spec.components[0]?.traits[0]?.properties.audience, "sts.amazonaws.com");

  const run = { group: "tekton.dev", version: "v1beta1", namespace: ns, plural: "customruns" };
  await objects.createNamespacedCustomObject({
    ...run,
    body: {
      apiVersion: "tekton.dev/v1beta1",
      kind: "CustomRun",
      metadata: { name: "deploy" },
      spec: {
        customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" },
        params: [{ name: "application", value: "payments" }],
      },
    },
  });
  const created = (await objects.getNamespacedCustomObject({ ...run, name: "deploy" })) as CustomRun;
  assert.deepEqual(created.spec.customRef, { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" });

  const seen = new Promise<CustomRun>((resolve, reject) => {
    const watch = new Watch(cluster.kc);
    const req = watch.watch(
      `/apis/tekton.dev/v1beta1/namespaces/${ns}/customruns`,
      { resourceVersion: created.metadata?.resourceVersion ?? "" },
      (_type, obj: CustomRun) => {
        if (obj.status?.conditions?.[0]?.reason === "Started") {
          void req.then((r) => r.abort());
          resolve(obj);
        }
      },
      (err: unknown) => {
        if (err) reject(err instanceof Error ? err : new Error("watch ended with an error"));
      },
    );
  });

  await objects.patchNamespacedCustomObjectStatus(
    {
      ...run,
      name: "deploy",
      body: { status: { conditions: [{ type: "Succeeded", status: "Unknown", reason: "Started" }] } },
    },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
  const changed = await seen;
  assert.equal(changed.status?.conditions?.[0]?.status, "Unknown");
  // The status subresource is enabled: a status change through the main resource is ignored.
  await objects.patchNamespacedCustomObject(
    { ...run, name: "deploy", body: { status: { conditions: [] } } },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
  const after = (await objects.getNamespacedCustomObject({ ...run, name: "deploy" })) as CustomRun;
  assert.equal(after.status?.conditions?.[0]?.reason, "Started");
});

/** Processes whose command line mentions the given text (the control plane's own directory). */
async function processesMentioning(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(text)) found.push(`${pid}: ${cmdline.replaceAll("\0", " ").slice(0, 120)}`);
  }
  return found;
}

test("a second control plane runs isolated on its own ports and stops without leftovers", async () => {
  const shared = await testCluster();
  const ns = await testNamespace(shared, "isolation");
  const second = await startControlPlane();
  assert.ok(
    (await processesMentioning(second.dir)).length >= 2,
    "etcd and kube-apiserver run from its directory",
  );
  try {
    assert.notEqual(second.server, shared.server);
    assert.notEqual(second.etcdUrl, shared.etcdUrl);
    const core = second.kubeConfig.makeApiClient(CoreV1Api);
    await assert.rejects(core.readNamespace({ name: ns }), /404|not found/i);
  } finally {
    await second.stop();
  }
  const port = Number(new URL(second.server).port);
  await assert.rejects(
    new Promise((resolve, reject) => {
      https
        .get({ host: "127.0.0.1", port, path: "/healthz", rejectUnauthorized: false }, resolve)
        .on("error", reject);
    }),
    /ECONNREFUSED/,
  );
  assert.deepEqual(await processesMentioning(second.dir), []);
});
