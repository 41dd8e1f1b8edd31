// KubeVela's own controller (vela-core v1.10.6, built from its module: hack/vela-core) against the
// test control plane: it accepts the demo's Application with the scoped-identity trait and renders
// it into a Deployment, and refuses a trait the schema refuses, saying why in the Application's
// status. It shares the control plane with every other test file, so it only touches Applications
// and definitions that ask for its version (app.oam.dev/controller-version-require), in a namespace
// of its own, where namespaced definitions take precedence over vela-system's.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { ApiextensionsV1Api, AppsV1Api, type KubeConfig } from "@kubernetes/client-node";
import { parse } from "yaml";
import { installCrds, readCrds } from "../../hack/cluster/crds.ts";
import { buildTool, kubevela, moduleDir } from "../../hack/cluster/upstream.ts";
import { traitDefinition } from "../../hack/release.ts";
import { createApplication as createApp, demoComponent } from "../support/application.ts";
import { testCluster, testNamespace } from "../support/cluster.ts";
import { eventually } from "../support/wait.ts";

const cluster = testCluster();
const roleArn = "arn:aws:iam::111122223333:role/payments-deployer";
const requirement = { "app.oam.dev/controller-version-require": kubevela.version };
let namespace = "";
let output = "";

/** KubeVela's CRDs the control plane does not install for the other tests. */
async function installVelaCrds(kc: KubeConfig): Promise<void> {
  const dir = path.join(await moduleDir(kubevela), "charts/vela-core/crds");
  const crds = await readCrds(
    (await readdir(dir)).filter((f) => f.endsWith(".yaml")).map((f) => path.join(dir, f)),
  );
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  const existing = new Set((await ext.listCustomResourceDefinition()).items.map((c) => c.metadata?.name));
  await installCrds(
    kc,
    crds.filter((c) => !existing.has(c.metadata?.name)),
  );
}

before(async () => {
  const c = await cluster;
  await installVelaCrds(c.kc);
  namespace = await testNamespace(c, "vela");
  await c.core.createNamespace({ body: { metadata: { name: "vela-system" } } }).catch(() => undefined);
  const webservice = parse(
    (
      await readFile(
        path.join(await moduleDir(kubevela), "charts/vela-core/templates/defwithtemplate/webservice.yaml"),
        "utf8",
      )
    ).replace(/\{\{ include "systemDefinitionNamespace" \. \}\}/g, namespace),
  ) as { metadata: { annotations?: Record<string, string> } };
  const trait = traitDefinition() as {
    metadata: { namespace: string; annotations?: Record<string, string> };
  };
  trait.metadata.namespace = namespace;
  for (const def of [webservice, trait]) {
    def.metadata.annotations = { ...def.metadata.annotations, ...requirement };
    await c.objects.createNamespacedCustomObject({
      group: "core.oam.dev",
      version: "v1beta1",
      namespace,
      plural:
        (def as { kind?: string }).kind === "TraitDefinition" ? "traitdefinitions" : "componentdefinitions",
      body: def,
    });
  }
  const binary = await buildTool("vela-core");
  const child = spawn(
    binary,
    [
      "--metrics-addr=0",
      "--health-addr=0",
      "--ignore-app-without-controller-version",
      "--ignore-definition-without-controller-version",
      "--application-re-sync-period=5s",
    ],
    { env: { ...process.env, KUBECONFIG: c.kubeconfig }, stdio: ["ignore", "pipe", "pipe"] },
  );
  child.stdout.setEncoding("utf8").on("data", (d: string) => (output += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (output += d));
  after(() => child.kill("SIGKILL"));
});

async function createApplication(name: string, components: unknown[]): Promise<void> {
  await createApp((await cluster).objects, namespace, name, components, requirement);
}

interface AppStatus {
  status?: { workflow?: unknown };
}

test("vela-core renders the demo's Application, trait and all, into the webservice's Deployment", async () => {
  const c = await cluster;
  await createApplication("payments", [demoComponent(roleArn)]);
  const apps = c.kc.makeApiClient(AppsV1Api);
  const deployment = await eventually(
    `Deployment api rendered by vela-core\n${output}`,
    async () => apps.readNamespacedDeployment({ name: "api", namespace }),
    { timeoutMs: 180_000, intervalMs: 500 },
  );
  assert.equal(deployment.spec?.template.spec?.containers[0]?.image, "example/payments-api:1.4.2");
  assert.equal(deployment.metadata?.labels?.["app.oam.dev/name"], "payments");
});

test("vela-core refuses a trait whose property the schema refuses, naming it in the Application's status", async () => {
  const c = await cluster;
  await createApplication("refused", [
    {
      ...demoComponent(roleArn),
      name: "worker",
      traits: [{ type: "scoped-identity", properties: { aws: { roleArn, sessionDuration: 60 } } }],
    },
  ]);
  const message = await eventually(
    "Application refused to report a render error",
    async () => {
      const app = (await c.objects.getNamespacedCustomObject({
        group: "core.oam.dev",
        version: "v1beta1",
        namespace,
        plural: "applications",
        name: "refused",
      })) as AppStatus;
      // A render error fails the step that applies the component; the workflow records why.
      const steps = JSON.stringify(app.status?.workflow ?? {});
      return steps.includes("sessionDuration") ? steps : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}\n${output.slice(-6000)}`);
  });
  assert.match(
    message,
    /evaluate template trait=scoped-identity app=worker: invalid template of trait scoped-identity after merge with parameter and context: .*parameter\.aws\.sessionDuration/,
  );
});
