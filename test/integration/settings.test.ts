import { after, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { CoreV1Api, type CoreV1Event } from "@kubernetes/client-node";
import { loadKube } from "../../controller/kube-client.ts";
import { missingApis, missingApisMessage, requiredApis } from "../../controller/startup.ts";
import { freePorts } from "../../hack/cluster/processes.ts";
import { startController } from "../support/controller.ts";
import { eventually } from "../support/wait.ts";
import { condition, identityParams, paymentsApp, startWorld, type World } from "../support/world.ts";

test("the configuration ConfigMap reloads while running; an invalid change is refused and logged", async () => {
  const w = await startWorld({ controller: false });
  await w.createApplication("payments", paymentsApp);
  const core = w.cluster.kc.makeApiClient(CoreV1Api);
  await core.createNamespacedConfigMap({
    namespace: w.controllerNs,
    body: { metadata: { name: "scoped-step-config" }, data: { "default-timeout": "60m" } },
  });
  const c = await w.startController();

  // A bad value is refused and the controller goes on with what it had.
  await core.replaceNamespacedConfigMap({
    name: "scoped-step-config",
    namespace: w.controllerNs,
    body: {
      metadata: { name: "scoped-step-config" },
      data: { "default-timeout": "60m", concurrency: "zero" },
    },
  });
  await eventually("the invalid ConfigMap to be reported", () =>
    Promise.resolve(
      c.logLines().some((l) => l.msg === "ignoring invalid configuration ConfigMap") ? true : undefined,
    ),
  );

  // A valid change applies to runs from then on: the default timeout becomes 2 s.
  await core.replaceNamespacedConfigMap({
    name: "scoped-step-config",
    namespace: w.controllerNs,
    body: { metadata: { name: "scoped-step-config" }, data: { "default-timeout": "2s", concurrency: "4" } },
  });
  await eventually("the reload to be logged", () =>
    Promise.resolve(c.logLines().some((l) => l.msg === "configuration reloaded") ? true : undefined),
  );
  await w.createRun("unbounded", {
    params: [{ name: "image", value: "alpine" }, { name: "script", value: "sleep 300" }, ...identityParams],
  });
  const run = await w.waitDone("unbounded");
  assert.equal(condition(run)?.reason, "CustomRunTimedOut");
  assert.match(condition(run)?.message ?? "", /timed out after 2s/);
  assert.equal(c.child.exitCode, null, "the controller kept running");
});

/** A Pod of the controller's to hang Events on, as the release's Deployment makes one. */
async function controllerPod(
  w: World,
): Promise<{ env: Record<string, string>; events: () => Promise<CoreV1Event[]> }> {
  const core = w.cluster.kc.makeApiClient(CoreV1Api);
  // Its ServiceAccount made by hand: no controller-manager runs here.
  await core.createNamespacedServiceAccount({
    namespace: w.controllerNs,
    body: { metadata: { name: "default" } },
  });
  const pod = await core.createNamespacedPod({
    namespace: w.controllerNs,
    body: {
      metadata: { name: "scoped-step-controller-0" },
      spec: { containers: [{ name: "controller", image: "ghcr.io/scoped-step/scoped-step:0.1.0" }] },
    },
  });
  const uid = pod.metadata?.uid ?? "";
  return {
    env: { POD_NAME: "scoped-step-controller-0", POD_UID: uid },
    // What `kubectl describe pod` lists: events by involvedObject name and uid.
    events: async () =>
      (
        await core.listNamespacedEvent({
          namespace: w.controllerNs,
          fieldSelector: `involvedObject.name=scoped-step-controller-0,involvedObject.uid=${uid}`,
        })
      ).items,
  };
}

test("before issuer-url is set, the controller says what to set and where, in its log and as an Event on its Pod", async () => {
  const w = await startWorld({ controller: false });
  const pod = await controllerPod(w);
  const c = startController({
    kubeconfig: w.cluster.kubeconfig,
    namespace: w.controllerNs,
    watchNamespaces: [w.ns],
    flags: ["--credentials=aws"],
    env: pod.env,
  });
  assert.equal(await c.exited, 2);
  const said = `--issuer-url (SCOPED_STEP_ISSUER_URL) is required with --credentials=aws: AWS fetches the token keys from it. Set it in ConfigMap ${w.controllerNs}/scoped-step-config`;
  assert.ok(c.output().includes(said), c.output());
  const [event] = await pod.events();
  assert.equal(event?.reason, "InvalidConfiguration");
  assert.equal(event.type, "Warning");
  assert.ok(event.message?.includes(said), event.message);
});

test("a port already in use ends the controller before it leads, saying which port, in its log and as an Event on its Pod", async () => {
  const w = await startWorld({ controller: false });
  const pod = await controllerPod(w);
  const [port] = (await freePorts(1)) as [number];
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(port, "127.0.0.1", resolve));
  after(() => holder.close());
  const c = startController({
    kubeconfig: w.cluster.kubeconfig,
    namespace: w.controllerNs,
    watchNamespaces: [w.ns],
    flags: [`--http-port=${port}`],
    env: pod.env,
  });
  assert.equal(await c.exited, 2, c.output());
  const said = `cannot serve HTTP (issuer documents, probes, metrics) on 127.0.0.1:${port}: listen EADDRINUSE: address already in use 127.0.0.1:${port}`;
  const fatal = c.logLines().find((l) => l.level === 60);
  assert.equal(fatal?.msg, said, c.output());
  assert.doesNotMatch(
    c.output(),
    /^\s+at /m,
    "no stack trace on stderr: the failure is reported, not thrown",
  );
  assert.ok(!c.logLines().some((l) => l.msg === "became leader"), "it never led");
  const [event] = await pod.events();
  assert.equal(event?.reason, "HttpPortUnavailable");
  assert.equal(event.type, "Warning");
  assert.equal(event.message, said);
});

test("the APIs the controller needs are checked through discovery: a missing one is named with how to get it", async () => {
  const w = await startWorld({ controller: false });
  const kube = await loadKube(w.cluster.kubeconfig);
  assert.deepEqual(await missingApis(kube), [], "the control plane serves Tekton's, KubeVela's and our own");
  const absent = [
    {
      group: "example.dev",
      version: "v1",
      resource: "widgets",
      crd: "widgets.example.dev",
      install: "install widgets",
    },
    {
      group: "tekton.dev",
      version: "v1beta1",
      resource: "gadgets",
      crd: "gadgets.tekton.dev",
      install: "install gadgets",
    },
  ];
  const missing = await missingApis(kube, [...requiredApis, ...absent]);
  assert.deepEqual(missing, absent);
  assert.equal(
    missingApisMessage(missing),
    "the API server does not serve example.dev/v1 widgets (CRD widgets.example.dev): install widgets; the API server does not serve tekton.dev/v1beta1 gadgets (CRD gadgets.tekton.dev): install gadgets",
  );
});
