// catalog/release.yaml as an operator installs it, on the cluster with a real node: applied verbatim
// with server-side apply, configured the way catalog/controller/0.1/README.md says (the ConfigMap,
// then a rollout restart). The controller is the image built from the Dockerfile
// (hack/cluster/controller-image.ts), running as the release's Deployment with its ServiceAccount
// and only its RBAC, its probes and securityContext, and in-cluster config. Tekton's controller
// drives the PipelineRuns; the AWS peer trusts the issuer the controller serves through its Service.
// Then release-monitoring.yaml over the Prometheus Operator's CRDs, scraped by Prometheus; then the
// same install switched to the namespaced mode.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  AppsV1Api,
  AuthorizationV1Api,
  CoordinationV1Api,
  KubernetesObjectApi,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  type KubernetesObject,
  type V1Pod,
} from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { buildTool } from "../../hack/cluster/upstream.ts";
import { credentialSecretName } from "../../tasks/scoped-step/pod.ts";
import { installMonitoringCrds } from "../support/catalog.ts";
import { namespacedSwitch } from "../support/rbac-world.ts";
import { realCluster, type NodeTestCluster } from "../support/cluster.ts";
import { account, deployerApp, sigv4 } from "../support/identity-world.ts";
import { prometheusTools, promtool, startPrometheus, writeRuleFile } from "../support/prometheus.ts";
import {
  callerPipeline,
  pipelineCondition,
  pipelineResults,
  realTekton,
  startTektonWorld,
  type TektonWorld,
} from "../support/tekton.ts";
import { eventually } from "../support/wait.ts";

const run = promisify(execFile);
const releaseFile = fileURLToPath(new URL("../../catalog/release.yaml", import.meta.url));
const monitoringFile = fileURLToPath(new URL("../../catalog/release-monitoring.yaml", import.meta.url));
const namespace = "scoped-step";
const name = "scoped-step-controller";
const selector = "app.kubernetes.io/name=scoped-step,app.kubernetes.io/component=controller";
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

interface Install {
  c: NodeTestCluster;
  w: TektonWorld;
  issuer: string;
  /** Every controller pod's log, read before the pod went away and at the end. */
  logs: Map<string, string>;
}

/** `kubectl apply --server-side -f <file>`. */
async function applyManifests(c: NodeTestCluster, file: string): Promise<KubernetesObject[]> {
  const docs = parseAllDocuments(await readFile(file, "utf8"));
  const objects = (Array.isArray(docs) ? docs : []).map((d) => d.toJS() as KubernetesObject).filter(Boolean);
  const api = KubernetesObjectApi.makeApiClient(c.kc);
  for (const obj of objects) {
    // The harness installed this project's CRDs when it started the cluster, from the same files:
    // the release takes them over, as `--force-conflicts` would. Nothing else may conflict.
    const force = obj.kind === "CustomResourceDefinition";
    await api.patch(obj, undefined, undefined, "kubectl", force, PatchStrategy.ServerSideApply);
  }
  return objects;
}

const apps = (c: NodeTestCluster) => c.kc.makeApiClient(AppsV1Api);

async function controllerPods(c: NodeTestCluster): Promise<V1Pod[]> {
  const pods = await c.core.listNamespacedPod({ namespace, labelSelector: selector });
  return pods.items.filter((p) => !p.metadata?.deletionTimestamp);
}

/** What `kubectl describe` and `kubectl logs --previous` would show, for a failure's message. */
async function describeControllers(c: NodeTestCluster): Promise<string> {
  const lines: string[] = [];
  const d = await apps(c).readNamespacedDeployment({ namespace, name });
  lines.push(`deployment status: ${JSON.stringify(d.status)}`);
  for (const pod of (await c.core.listNamespacedPod({ namespace, labelSelector: selector })).items) {
    const pn = pod.metadata?.name ?? "";
    lines.push(`pod ${pn}: ${pod.status?.phase} ${JSON.stringify(pod.status?.containerStatuses)}`);
    const restarted = (pod.status?.containerStatuses?.[0]?.restartCount ?? 0) > 0;
    const log = await c.core
      .readNamespacedPodLog({
        namespace,
        name: pn,
        container: "controller",
        previous: restarted,
        tailLines: 20,
      })
      .catch((err: unknown) => `(no log: ${String(err)})`);
    lines.push(log);
  }
  const events = await c.core.listNamespacedEvent({ namespace });
  for (const e of events.items.slice(-20))
    lines.push(`event ${e.involvedObject.name}: ${e.reason} ${e.message}`);
  return lines.join("\n");
}

/** `kubectl rollout status`: every replica of the current template is ready and no old one is left. */
async function rolledOut(c: NodeTestCluster, what: string): Promise<V1Pod[]> {
  return eventuallyOrDescribe(
    c,
    `the controller's Deployment to roll out ${what}`,
    async () => {
      const d = await apps(c).readNamespacedDeployment({ namespace, name });
      const want = d.spec?.replicas ?? 1;
      const s = d.status;
      const done =
        (s?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1) &&
        s?.updatedReplicas === want &&
        s.replicas === want &&
        s.availableReplicas === want;
      if (!done) return undefined;
      const pods = await controllerPods(c);
      return pods.length === want ? pods : undefined;
    },
    { timeoutMs: 300_000, intervalMs: 500 },
  );
}

/** eventually(), with the controller's pods described when it times out. */
async function eventuallyOrDescribe<T>(
  c: NodeTestCluster,
  ...args: Parameters<typeof eventually<T>>
): Promise<T> {
  try {
    return await eventually(...args);
  } catch (err) {
    throw new Error(`${String(err)}\n${await describeControllers(c)}`, { cause: err });
  }
}

/** `kubectl rollout restart deployment scoped-step-controller`. */
async function rolloutRestart(c: NodeTestCluster): Promise<void> {
  await apps(c).patchNamespacedDeployment(
    {
      namespace,
      name,
      body: {
        spec: {
          template: {
            metadata: { annotations: { "kubectl.kubernetes.io/restartedAt": new Date().toISOString() } },
          },
        },
      },
    },
    mergePatch,
  );
}

async function leaseHolder(c: NodeTestCluster): Promise<string> {
  const lease = await c.kc.makeApiClient(CoordinationV1Api).readNamespacedLease({ namespace, name });
  return lease.spec?.holderIdentity ?? "";
}

/** The controller container's process, as containerd started it on the node. */
async function controllerPid(c: NodeTestCluster, pod: V1Pod): Promise<string> {
  const status = pod.status?.containerStatuses?.find((s) => s.name === "controller");
  const id = (status?.containerID ?? "").replace(/^containerd:\/\//, "");
  const ctr = path.join(await buildTool("containerd"), "ctr");
  const { stdout } = await run(ctr, ["--address", c.containerdSocket, "-n", "k8s.io", "tasks", "ls"]);
  const pid = stdout
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .find(([task]) => task === id)?.[1];
  assert.ok(pid, `containerd runs ${pod.metadata?.name}'s controller (${id})`);
  return pid;
}

/**
 * What a container uses: resident memory (VmRSS), the cgroup's working set (usage less inactive
 * file pages, as the kubelet counts it; file pages first read elsewhere are charged elsewhere) and
 * CPU seconds.
 */
async function usage(pid: string): Promise<{ rssMiB: number; workingSetMiB: number; cpuSeconds: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const rssKiB = Number(/^VmRSS:\s*(\d+) kB$/m.exec(status)?.[1] ?? NaN);
  const cgroups = (await readFile(`/proc/${pid}/cgroup`, "utf8")).split("\n").map((l) => l.split(":"));
  const dir = (controller: string) =>
    `/sys/fs/cgroup/${controller}${cgroups.find((g) => g[1]?.split(",").includes(controller))?.[2] ?? ""}`;
  const bytes = Number(await readFile(`${dir("memory")}/memory.usage_in_bytes`, "utf8"));
  const stat = await readFile(`${dir("memory")}/memory.stat`, "utf8");
  const inactive = Number(/^total_inactive_file (\d+)$/m.exec(stat)?.[1] ?? 0);
  const cpu = Number(await readFile(`${dir("cpuacct")}/cpuacct.usage`, "utf8"));
  return { rssMiB: rssKiB / 1024, workingSetMiB: (bytes - inactive) / 2 ** 20, cpuSeconds: cpu / 1e9 };
}

async function keepLogs(install: Install, pods: V1Pod[]): Promise<void> {
  for (const p of pods) {
    const pod = p.metadata?.name ?? "";
    const log = await install.c.core
      .readNamespacedPodLog({ namespace, name: pod, container: "controller" })
      .catch((err: unknown) => `(no log: ${String(err)})`);
    install.logs.set(pod, log);
  }
}

const installed: Promise<Install> = (async () => {
  const c = await realCluster();
  // Tekton first, as an operator installs it: the release holds a Role in its namespace.
  await realTekton();
  const objects = await applyManifests(c, releaseFile);
  const deployment = objects.find((o) => o.kind === "Deployment");
  assert.equal(
    (deployment as { spec?: { template?: { spec?: { containers?: { image?: string }[] } } } }).spec?.template
      ?.spec?.containers?.[0]?.image,
    c.images.controller,
    "the node holds the image under the reference release.yaml names",
  );
  // The issuer is the Service: what the AWS peer fetches the keys from.
  const service = await c.core.readNamespacedService({ namespace, name });
  const issuer = `http://${service.spec?.clusterIP ?? ""}:8080`;
  const w = await startTektonWorld(
    {
      aws: { allowedRoleArns: [`arn:aws:iam::${account}:role/payments-*`], maxSessionDuration: 3600 },
      deliveryModes: ["env"],
    },
    { realNode: true, issuer, controller: false },
  );
  // What an operator sets in scoped-step-config (keys are flag names): the issuer and where AWS
  // is. watch-namespaces: the other files' controllers serve their own namespaces on this cluster.
  const settings = Object.fromEntries(
    w.controllerFlags.map((f) => f.replace(/^--/, "").split(/=(.*)/s, 2) as [string, string]),
  );
  await c.core.patchNamespacedConfigMap(
    {
      namespace,
      name: "scoped-step-config",
      body: { data: { ...settings, "watch-namespaces": w.ns } },
    },
    mergePatch,
  );
  await rolloutRestart(c);
  await rolledOut(c, "after the configuration");
  await w.createApplication("payments", deployerApp);
  return { c, w, issuer, logs: new Map() };
})();

/** The PipelineRun succeeded with the caller the minted credentials gave, and they were revoked. */
async function assertRanWithMintedIdentity(install: Install, pipelineRun: string): Promise<void> {
  const { w } = install;
  const pr = await w.waitPipelineRunDone(pipelineRun, 300_000);
  assert.equal(pipelineCondition(pr)?.status, "True", pipelineCondition(pr)?.message);
  assert.match(
    String(pipelineResults(pr).seen),
    /^arn:aws:sts::111122223333:assumed-role\/payments-deployer\/\S+ as 0$/,
    "the step called AWS with the credentials the controller minted",
  );
  const [custom] = await w.customRuns(pipelineRun);
  const runName = custom?.metadata.name ?? "";
  const session = /assumed-role\/payments-deployer\/(\S+) as/.exec(String(pipelineResults(pr).seen))?.[1];
  assert.ok(
    w.peer
      .sessions()
      .some((s) => s.roleSessionName === session && s.subject === `system:scoped-step:${w.ns}:payments:api`),
    `STS minted session ${session} for the step's subject`,
  );
  await eventually(`the credential Secret of ${runName} to be deleted`, async () =>
    (await w.secretData(credentialSecretName(runName, 0))) ? undefined : true,
  );
}

test("release.yaml applied verbatim runs the controller as its Deployment: securityContext in force on the node", async () => {
  const { c } = await installed;
  const pods = await controllerPods(c);
  assert.equal(pods.length, 2);
  for (const pod of pods) {
    assert.equal(pod.spec?.serviceAccountName, name);
    const status = pod.status?.containerStatuses?.find((s) => s.name === "controller");
    assert.equal(status?.ready, true, "the readiness probe passes");
    assert.equal(pod.spec?.containers[0]?.image, c.images.controller);
    assert.ok(!pod.spec?.containers[0]?.env?.some((e) => e.name === "KUBECONFIG"), "in-cluster config only");
    // The kernel's view of the container's process, not the spec's.
    const pid = await controllerPid(c, pod);
    const proc = await readFile(`/proc/${pid}/status`, "utf8");
    const field = (key: string) => new RegExp(`^${key}:\\s*(.*)$`, "m").exec(proc)?.[1]?.split(/\s+/) ?? [];
    assert.deepEqual(field("Uid"), ["65532", "65532", "65532", "65532"], "runs as the non-root user");
    assert.deepEqual(field("Gid"), ["65532", "65532", "65532", "65532"]);
    for (const caps of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"])
      assert.deepEqual(field(caps), ["0000000000000000"], `${caps}: no capabilities`);
    assert.deepEqual(field("NoNewPrivs"), ["1"], "allowPrivilegeEscalation: false");
    assert.deepEqual(field("Seccomp"), ["2"], "the runtime's default seccomp filter");
    const mounts = (await readFile(`/proc/${pid}/mountinfo`, "utf8")).split("\n").map((l) => l.split(" "));
    const mount = (at: string) => mounts.find((m) => m[4] === at)?.[5]?.split(",") ?? [];
    assert.ok(mount("/").includes("ro"), `the root filesystem is read-only: ${mount("/").join(",")}`);
    assert.ok(mount("/tmp").includes("rw"), "the emptyDir at /tmp is writable");
  }
});

test("the controller serves its OIDC discovery document and keys through its Service", async () => {
  const { c, issuer } = await installed;
  // Just after a rollout, kube-proxy may still send a new connection to a pod that is gone, for
  // either request: wait for the Service to answer both, one after the other.
  const get = async <T>(url: string) =>
    (await (await fetch(url, { signal: AbortSignal.timeout(5_000) })).json()) as T;
  const { discovery, jwks } = await eventually(
    "the issuer's discovery document and keys through the Service",
    async () => {
      const discovery = await get<{ issuer?: string; jwks_uri?: string }>(
        `${issuer}/.well-known/openid-configuration`,
      );
      const jwks = await get<{ keys?: { kid?: string }[] }>(discovery.jwks_uri ?? `${issuer}/openid/v1/jwks`);
      return { discovery, jwks };
    },
    { timeoutMs: 120_000 },
  );
  assert.equal(discovery.issuer, issuer);
  assert.equal(discovery.jwks_uri, `${issuer}/openid/v1/jwks`);
  assert.ok((jwks.keys ?? []).length > 0, "at least one signing key is published");
  const secret = await c.core.readNamespacedSecret({ namespace, name: "scoped-step-signing-keys" });
  const stored = Object.values(secret.data ?? {})
    .map((v) => Buffer.from(v, "base64").toString())
    .join("\n");
  for (const key of jwks.keys ?? [])
    assert.ok(key.kid && stored.includes(key.kid), `key ${key.kid} is the Secret's`);
});

test("release-monitoring.yaml applies over the Prometheus Operator's CRDs; Prometheus scrapes the replicas its ServiceMonitor selects, and promtool passes their /metrics", async (t) => {
  const { c } = await installed;
  // The two kinds the file uses, from the operator's own module, as an operator installs them.
  await installMonitoringCrds(c.kc);
  const monitoring = await applyManifests(c, monitoringFile);
  assert.deepEqual(monitoring.map((o) => o.kind).sort(), ["ConfigMap", "PrometheusRule", "ServiceMonitor"]);
  const api = KubernetesObjectApi.makeApiClient(c.kc);
  const monitor = (await api.read({
    apiVersion: "monitoring.coreos.com/v1",
    kind: "ServiceMonitor",
    metadata: { namespace, name },
  })) as unknown as {
    spec: {
      selector: { matchLabels: Record<string, string> };
      namespaceSelector: { matchNames: string[] };
      endpoints: { port: string; path: string }[];
    };
  };
  const rule = (await api.read({
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: { namespace, name },
  })) as unknown as { spec: { groups: { rules: unknown[] }[] } };
  assert.equal(rule.spec.groups.flatMap((g) => g.rules).length, 6, "the API server kept every rule");

  // What the Prometheus Operator would derive from the ServiceMonitor: the Services it selects,
  // their named port, and each ready replica behind it.
  assert.deepEqual(monitor.spec.namespaceSelector.matchNames, [namespace]);
  const labelSelector = Object.entries(monitor.spec.selector.matchLabels)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  const services = (await c.core.listNamespacedService({ namespace, labelSelector })).items;
  assert.deepEqual(
    services.map((s) => s.metadata?.name),
    [name],
    "the ServiceMonitor selects the controller's Service",
  );
  const [endpoint] = monitor.spec.endpoints;
  assert.ok(endpoint);
  const servicePort = services[0]?.spec?.ports?.find((p) => p.name === endpoint.port);
  assert.ok(servicePort, `the Service has a port named ${endpoint.port}`);
  const pods = await controllerPods(c);
  const targets = pods.map((pod) => {
    const port = pod.spec?.containers[0]?.ports?.find((p) => p.name === servicePort.targetPort);
    assert.ok(port && pod.status?.podIP, `${pod.metadata?.name ?? ""} serves the Service's target port`);
    return { pod: pod.metadata?.name ?? "", address: `${pod.status.podIP}:${port.containerPort}` };
  });
  assert.equal(targets.length, 2);

  const tools = await prometheusTools();
  for (const target of targets) {
    const text = await (await fetch(`http://${target.address}${endpoint.path}`)).text();
    const lint = await promtool(tools, ["check", "metrics"], text);
    assert.equal(lint.code, 0, `promtool check metrics on ${target.pod}:\n${lint.output}`);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "monitoring-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const prometheus = await startPrometheus(tools, {
    targets: targets.map((target) => ({ address: target.address, labels: { namespace, pod: target.pod } })),
    metricsPath: endpoint.path,
    ruleFile: await writeRuleFile(dir),
  });
  t.after(() => prometheus.stop());
  // Both replicas are up, and exactly one of them leads.
  await eventually(
    "Prometheus to scrape both replicas",
    async () => {
      const up = (await prometheus.query('up{job="scoped-step"}')).result;
      const leader = (await prometheus.query("sum(scoped_step_leader)")).result[0]?.value[1];
      return up.length === 2 && up.every((r) => r.value[1] === "1") && leader === "1" ? true : undefined;
    },
    { timeoutMs: 60_000 },
  );
});

test("a PipelineRun runs through the Deployment's pods: minted, used by the step, revoked", async () => {
  const install = await installed;
  const { c, w } = install;
  await w.createPipelineRun("first", callerPipeline(w, c.images));
  await assertRanWithMintedIdentity(install, "first");
});

test("deleting the leader's pod hands leadership to the other replica, which then runs pipelines", async () => {
  const install = await installed;
  const { c, w } = install;
  const pods = await controllerPods(c);
  // Right after a rollout the lease may still name a replica that is gone, until a current one
  // takes it: wait for one of these pods to hold it.
  const leader = await eventually(
    "one of the current replicas to hold the lease",
    async () => {
      const holder = await leaseHolder(c);
      return pods.some((p) => p.metadata?.name === holder) ? holder : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 250 },
  );
  const other = pods.map((p) => p.metadata?.name ?? "").find((n) => n !== leader);
  assert.ok(
    other && pods.some((p) => p.metadata?.name === leader),
    `the lease holder ${leader} is one of the pods`,
  );
  await keepLogs(install, pods);
  await c.core.deleteNamespacedPod({ namespace, name: leader });
  // The standby, or the pod that replaces the deleted one if it starts first: a replica that is
  // not the one deleted, and is running.
  await eventually(
    `${other} (or the deleted pod's replacement) to take the lease from ${leader}`,
    async () => {
      const holder = await leaseHolder(c);
      if (!holder || holder === leader) return undefined;
      const running = await controllerPods(c);
      return running.some((p) => p.metadata?.name === holder) ? true : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 250 },
  );
  await rolledOut(c, "with the deleted pod replaced");
  await w.createPipelineRun("after-handover", callerPipeline(w, c.images));
  await assertRanWithMintedIdentity(install, "after-handover");
});

test("a rolling restart while a step runs loses no run", async () => {
  const install = await installed;
  const { c, w } = install;
  const before = await controllerPods(c);
  // The step holds its credentials until the test lets it go, once the restart is over.
  const gate = `${sigv4("s3")} -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /dev/null -w '%{http_code}' "$AWS_ENDPOINT_URL/artifacts/go"`;
  const wait = `until [ "$(${gate})" = 200 ]; do sleep 1; done`;
  const minted = w.peer.sessions().length;
  await w.createPipelineRun("through-restart", callerPipeline(w, c.images, wait));
  await eventually(
    "the step's credentials to be minted",
    () => Promise.resolve(w.peer.sessions().length > minted ? true : undefined),
    { timeoutMs: 180_000 },
  );
  await keepLogs(install, before);
  await rolloutRestart(c);
  const after = await rolledOut(c, "after the restart");
  const names = new Set(after.map((p) => p.metadata?.name));
  assert.ok(
    before.every((p) => !names.has(p.metadata?.name)),
    "every replica was replaced",
  );
  await eventually(
    "a new replica to lead",
    async () => (names.has(await leaseHolder(c)) ? true : undefined),
    {
      timeoutMs: 120_000,
    },
  );
  const pr = await w.getPipelineRun("through-restart");
  assert.equal(
    pipelineCondition(pr)?.status ?? "Unknown",
    "Unknown",
    "the run was in flight across the restart",
  );
  w.peer.putObject("artifacts", "go", "go");
  await assertRanWithMintedIdentity(install, "through-restart");
});

test("the same install switched to the namespaced mode runs pipelines in its namespace, with no access elsewhere", async () => {
  const install = await installed;
  const { c, w } = install;
  await keepLogs(install, await controllerPods(c));
  // As an operator applies their copy of catalog/controller/0.1/namespaced over the release.
  const change = await namespacedSwitch([w.ns]);
  const api = KubernetesObjectApi.makeApiClient(c.kc);
  for (const obj of change.apply) {
    await api.patch(obj, undefined, undefined, "kubectl", false, PatchStrategy.ServerSideApply);
  }
  const rbac = c.kc.makeApiClient(RbacAuthorizationV1Api);
  for (const { kind, name: removed } of change.remove) {
    assert.equal(kind, "ClusterRoleBinding", "the overlay deletes only the cluster-wide binding");
    await rbac.deleteClusterRoleBinding({ name: removed });
  }
  // The controller's ServiceAccount now reaches pods in the watched namespace only.
  const user = `system:serviceaccount:${namespace}:${name}`;
  const may = async (ns: string) =>
    (
      await c.kc.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
        body: { spec: { user, resourceAttributes: { namespace: ns, verb: "list", resource: "pods" } } },
      })
    ).status?.allowed;
  await eventually("the cluster-wide binding to be gone from authorization", async () =>
    (await may("default")) === false ? true : undefined,
  );
  assert.equal(await may(w.ns), true);

  await rolloutRestart(c);
  await rolledOut(c, "in the namespaced mode");
  await w.createPipelineRun("namespaced", callerPipeline(w, c.images));
  await assertRanWithMintedIdentity(install, "namespaced");
  await keepLogs(install, await controllerPods(c));
});

test("the controller needed nothing the release does not grant", async () => {
  const install = await installed;
  await keepLogs(install, await controllerPods(install.c));
  assert.ok(install.logs.size >= 5, "the logs of every replica so far: two, the replacement, two more");
  for (const [pod, log] of install.logs) {
    assert.doesNotMatch(log, /forbidden|\b403\b/i, `${pod} was refused a request`);
  }
});

test("each replica uses no more memory than the Deployment requests for it", async (t) => {
  const { c } = await installed;
  const leader = await leaseHolder(c);
  for (const pod of await controllerPods(c)) {
    const request = pod.spec?.containers[0]?.resources?.requests?.memory ?? "";
    const [, amount, unit] = /^(\d+)(Mi|Gi)$/.exec(request) ?? [];
    const requestMiB = Number(amount) * (unit === "Gi" ? 1024 : 1);
    const { rssMiB, workingSetMiB, cpuSeconds } = await usage(await controllerPid(c, pod));
    const started = Date.parse(String(pod.status?.containerStatuses?.[0]?.state?.running?.startedAt ?? ""));
    const millicores = (1000 * cpuSeconds) / ((Date.now() - started) / 1000);
    const role = pod.metadata?.name === leader ? "leader, after a run" : "standby";
    t.diagnostic(
      `${pod.metadata?.name} (${role}): resident ${rssMiB.toFixed(0)} MiB, working set ${workingSetMiB.toFixed(0)} MiB, ${request} requested; ${millicores.toFixed(0)}m CPU on average since start`,
    );
    assert.ok(requestMiB > 0, `a memory request in Mi or Gi: ${request}`);
    const used = Math.max(rssMiB, workingSetMiB);
    assert.ok(
      used <= requestMiB,
      `${pod.metadata?.name} uses ${used.toFixed(0)} MiB, above its request ${request}`,
    );
  }
});
