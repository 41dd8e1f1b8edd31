// The tenant the attack tests play is exactly the namespace `edit` user: it can write what a
// pipeline author writes in its own namespace, and nothing outside it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { testCluster, testNamespace } from "../support/cluster.ts";
import { statusOf as status, tenantConfig } from "../support/tenant.ts";

test("the tenant writes runs, Applications, ScopedSteps, Secrets and Pods in its own namespace only", async () => {
  const cluster = await testCluster();
  const own = await testNamespace(cluster, "tenant");
  const other = await testNamespace(cluster, "other");
  // No controller-manager creates the namespace's default ServiceAccount; a pod needs it.
  await cluster.core.createNamespacedServiceAccount({
    namespace: own,
    body: { metadata: { name: "default" } },
  });
  const kc = await tenantConfig(cluster, own);
  const core = kc.makeApiClient(CoreV1Api);
  const objects = kc.makeApiClient(CustomObjectsApi);

  const secret = { metadata: { name: "s" }, stringData: { k: "v" } };
  assert.equal(await status(core.createNamespacedSecret({ namespace: own, body: secret })), 200);
  const pod = { metadata: { name: "p" }, spec: { containers: [{ name: "c", image: "x" }] } };
  assert.equal(await status(core.createNamespacedPod({ namespace: own, body: pod })), 200);
  const writes: [string, string, string, string, object][] = [
    [
      "tekton.dev",
      "v1beta1",
      "customruns",
      "CustomRun",
      { spec: { customRef: { apiVersion: "x/v1", kind: "X" } } },
    ],
    ["core.oam.dev", "v1beta1", "applications", "Application", { spec: { components: [] } }],
    [
      "scopedstep.dev",
      "v1alpha1",
      "scopedsteps",
      "ScopedStep",
      { spec: { application: "a", component: "c" } },
    ],
  ];
  for (const [group, version, plural, kind, body] of writes) {
    const created = objects.createNamespacedCustomObject({
      group,
      version,
      namespace: own,
      plural,
      body: { apiVersion: `${group}/${version}`, kind, metadata: { name: "n" }, ...body },
    });
    assert.equal(await status(created), 200, `${plural} in its own namespace`);
  }

  assert.equal(await status(core.listNamespacedSecret({ namespace: other })), 403);
  assert.equal(await status(core.createNamespacedSecret({ namespace: other, body: secret })), 403);
  assert.equal(await status(core.listSecretForAllNamespaces()), 403);
  const policy = objects.createClusterCustomObject({
    group: "scopedstep.dev",
    version: "v1alpha1",
    plural: "scopedsteppolicies",
    body: {
      apiVersion: "scopedstep.dev/v1alpha1",
      kind: "ScopedStepPolicy",
      metadata: { name: own },
      spec: {},
    },
  });
  assert.equal(await status(policy), 403);
  const status_ = objects.patchNamespacedCustomObjectStatus({
    group: "tekton.dev",
    version: "v1beta1",
    namespace: own,
    plural: "customruns",
    name: "n",
    body: [{ op: "add", path: "/status", value: {} }],
  });
  assert.equal(await status(status_), 403, "the run's status is the controller's alone");
});
