import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  Watch,
  type V1Container,
  type V1ContainerState,
  type V1Pod,
  type V1PodSpec,
} from "@kubernetes/client-node";
import { testCluster, testNamespace, type TestCluster } from "../support/cluster.ts";
import { behaviourAnnotation, startTestKubelet, type TestKubelet } from "../../simulators/kubelet/index.ts";
import { eventually } from "../support/wait.ts";

interface Setup {
  cluster: TestCluster;
  ns: string;
  kubelet: TestKubelet;
}

async function setup(t: TestContext, prefix: string): Promise<Setup> {
  const cluster = await testCluster();
  const ns = await testNamespace(cluster, prefix);
  // The ServiceAccount admission plugin rejects pods whose account does not exist.
  await cluster.core.createNamespacedServiceAccount({
    namespace: ns,
    body: { metadata: { name: "default" } },
  });
  const kubelet = await startTestKubelet(cluster.kc, { namespace: ns, retryIntervalMs: 200 });
  t.after(() => kubelet.stop());
  return { cluster, ns, kubelet };
}

/** A restartPolicy Never pod with one `sh -c script` container named `step`. */
function shPod(
  name: string,
  script: string,
  container: Partial<V1Container> = {},
  spec: Partial<V1PodSpec> = {},
) {
  return {
    metadata: { name },
    spec: {
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      ...spec,
      containers: [
        { name: "step", image: "example.com/step:1", command: ["/bin/sh", "-c", script], ...container },
      ],
    },
  } satisfies V1Pod;
}

async function createPod({ cluster, ns }: Setup, pod: V1Pod): Promise<void> {
  await cluster.core.createNamespacedPod({ namespace: ns, body: pod });
}

async function readPod({ cluster, ns }: Setup, name: string): Promise<V1Pod> {
  return cluster.core.readNamespacedPod({ name, namespace: ns });
}

function state(pod: V1Pod, container = "step"): V1ContainerState | undefined {
  return pod.status?.containerStatuses?.find((c) => c.name === container)?.state;
}

async function podWhen(s: Setup, name: string, what: string, check: (pod: V1Pod) => boolean): Promise<V1Pod> {
  return eventually(what, async () => {
    const pod = await readPod(s, name);
    return check(pod) ? pod : undefined;
  });
}

/** Polls a condition on local state; false and undefined mean not yet. */
function until<T>(what: string, probe: () => T | false | undefined): Promise<T> {
  return eventually(what, () => Promise.resolve(probe() || undefined));
}

const finished = (pod: V1Pod) => pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed";

async function podGone(s: Setup, name: string, timeoutMs?: number): Promise<void> {
  await eventually(
    `pod ${name} to be gone`,
    () =>
      readPod(s, name).then(
        () => undefined,
        (err: unknown) => (String(err).includes("HTTP-Code: 404") ? true : undefined),
      ),
    timeoutMs ? { timeoutMs } : {},
  );
}

/** Records every phase a pod's watch reports, from before the pod exists. */
async function watchPhases(
  { cluster, ns }: Setup,
  name: string,
): Promise<{ phases: string[]; stop(): void }> {
  const phases: string[] = [];
  const controller = await new Watch(cluster.kc).watch(
    `/api/v1/namespaces/${ns}/pods`,
    { fieldSelector: `metadata.name=${name}` },
    (_type, pod: V1Pod) => {
      const phase = pod.status?.phase;
      if (phase && phases.at(-1) !== phase) phases.push(phase);
    },
    () => undefined,
  );
  return { phases, stop: () => controller.abort() };
}

/** Whether a process is alive (a zombie waiting to be reaped does not count). */
async function alive(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  return stat !== "" && !/^\d+ \(.*\) Z /.test(stat);
}

test("registers a Ready node of its own", async (t) => {
  const s = await setup(t, "kubelet-node");
  const node = await s.cluster.core.readNode({ name: s.kubelet.nodeName });
  assert.match(s.kubelet.nodeName, /^test-node-/);
  assert.equal(node.status?.conditions?.find((c) => c.type === "Ready")?.status, "True");
});

test("runs a step as uid 65532 with its Secret in env and volume, results and termination message", async (t) => {
  const s = await setup(t, "kubelet-run");
  await s.cluster.core.createNamespacedSecret({
    namespace: s.ns,
    body: { metadata: { name: "creds" }, stringData: { token: "tok-from-secret", region: "eu-west-1" } },
  });
  const script = [
    `echo "ids $(id -u):$(id -g)"`,
    `echo "token=$TOKEN"`,
    `echo "region=$(cat /tekton/creds/region)"`,
    `printf deployed > /tekton/results/outcome`,
    `printf 'step done' > /tekton/termination`,
    `if touch /tekton/creds/x 2>/dev/null; then echo creds writable; else echo creds read-only; fi`,
    `echo "home=$HOME host=$(cat /proc/sys/kernel/hostname)"`,
  ].join("\n");
  const pod = shPod(
    "step",
    script,
    {
      env: [{ name: "TOKEN", valueFrom: { secretKeyRef: { name: "creds", key: "token" } } }],
      volumeMounts: [
        { name: "creds", mountPath: "/tekton/creds", readOnly: true },
        { name: "results", mountPath: "/tekton/results" },
        { name: "tmp", mountPath: "/tmp" },
      ],
      terminationMessagePath: "/tekton/termination",
    },
    {
      securityContext: { runAsUser: 65532, runAsGroup: 65532, runAsNonRoot: true },
      volumes: [
        { name: "creds", secret: { secretName: "creds" } },
        { name: "results", emptyDir: {} },
        { name: "tmp", emptyDir: {} },
      ],
    },
  );
  const watch = await watchPhases(s, "step");
  t.after(() => watch.stop());
  await createPod(s, pod);

  const done = await podWhen(s, "step", "the step to finish", finished);
  assert.equal(done.spec?.nodeName, s.kubelet.nodeName, "bound to the kubelet's node");
  const output = s.kubelet.output(s.ns, "step");
  assert.equal(done.status?.phase, "Succeeded", `${JSON.stringify(state(done))}\n${output}`);
  await until("the watch to report Succeeded", () => watch.phases.includes("Succeeded"));
  assert.deepEqual(watch.phases, ["Pending", "Running", "Succeeded"]);
  const terminated = state(done)?.terminated;
  assert.equal(terminated?.exitCode, 0);
  assert.equal(terminated?.reason, "Completed");
  assert.equal(terminated?.message, "step done");
  const status = done.status?.containerStatuses?.[0];
  assert.equal(status?.image, "example.com/step:1");
  assert.match(status?.imageID ?? "", /^example\.com\/step@sha256:[0-9a-f]{64}$/);
  assert.equal(status?.restartCount, 0);
  assert.equal(status?.ready, false);
  assert.equal(status?.containerID, terminated?.containerID);
  assert.ok(done.status?.startTime);
  const conditions = Object.fromEntries(
    (done.status?.conditions ?? []).map((c) => [c.type, `${c.status}/${c.reason ?? ""}`]),
  );
  assert.deepEqual(conditions, {
    PodReadyToStartContainers: "False/",
    Initialized: "True/",
    Ready: "False/PodCompleted",
    ContainersReady: "False/PodCompleted",
    PodScheduled: "True/",
  });
  assert.ok(terminated?.containerID?.startsWith("test-kubelet://"));

  assert.match(output, /^ids 65532:65532$/m);
  assert.match(output, /^token=tok-from-secret$/m);
  assert.match(output, /^region=eu-west-1$/m);
  assert.match(output, /^creds read-only$/m);
  assert.match(output, /^home=\/ host=step$/m);
  const results = s.kubelet.volumePath(s.ns, "step", "results");
  assert.ok(results);
  assert.equal(await readFile(path.join(results, "outcome"), "utf8"), "deployed");
});

test("a failing step ends Failed with its exit code and the message from /dev/termination-log", async (t) => {
  const s = await setup(t, "kubelet-fail");
  await createPod(s, shPod("fails", "echo about to fail; printf 'bad input' > /dev/termination-log; exit 3"));
  const pod = await podWhen(s, "fails", "the pod to finish", finished);
  assert.equal(pod.status?.phase, "Failed");
  assert.equal(state(pod, "step")?.terminated?.exitCode, 3);
  assert.equal(state(pod, "step")?.terminated?.reason, "Error");
  assert.equal(state(pod, "step")?.terminated?.message, "bad input");
  assert.equal(s.kubelet.output(s.ns, "fails"), "about to fail\n");
});

test("FallbackToLogsOnError gives the last 80 lines of output, at most 2048 bytes", async (t) => {
  const s = await setup(t, "kubelet-fallback");
  const lines = (n: number, width: number) =>
    `i=1; while [ $i -le ${n} ]; do printf 'line %03d %0${width}d\\n' $i 0; i=$((i+1)); done`;
  const fallback = { terminationMessagePolicy: "FallbackToLogsOnError" };
  await createPod(s, shPod("short", `${lines(100, 1)}; exit 1`, fallback));
  await createPod(s, shPod("long", `${lines(100, 40)}; exit 1`, fallback));
  await createPod(s, shPod("succeeds", `${lines(3, 1)}; exit 0`, fallback));

  const short = await podWhen(s, "short", "short to finish", finished);
  const expected = Array.from({ length: 80 }, (_, i) => `line ${String(i + 21).padStart(3, "0")} 0\n`).join(
    "",
  );
  assert.equal(state(short)?.terminated?.message, expected);

  const long = await podWhen(s, "long", "long to finish", finished);
  const output = Buffer.from(s.kubelet.output(s.ns, "long"));
  assert.equal(state(long)?.terminated?.message, output.subarray(output.length - 2048).toString());

  const succeeds = await podWhen(s, "succeeds", "succeeds to finish", finished);
  assert.equal(state(succeeds)?.terminated?.message, undefined, "no fallback on exit code 0");
});

test("pods/log reaches the kubelet's log endpoint: a container's output, its last lines, a byte limit", async (t) => {
  const s = await setup(t, "kubelet-logs");
  await createPod(s, shPod("talker", "echo one; echo two; echo three; exit 2"));
  await podWhen(s, "talker", "talker to finish", finished);
  const log = (opts: { tailLines?: number; limitBytes?: number } = {}) =>
    s.cluster.core.readNamespacedPodLog({ namespace: s.ns, name: "talker", container: "step", ...opts });
  assert.equal(await log(), "one\ntwo\nthree\n");
  assert.equal(await log({ tailLines: 2 }), "two\nthree\n");
  assert.equal(await log({ limitBytes: 5 }), "one\nt");
  await assert.rejects(
    s.cluster.core.readNamespacedPodLog({ namespace: s.ns, name: "talker", container: "other" }),
    "a container the pod does not have",
  );
});

test("deleting a running pod sends SIGTERM to its processes, then the pod object goes away", async (t) => {
  const s = await setup(t, "kubelet-delete");
  const script = `trap 'echo got SIGTERM; exit 143' TERM; sleep 300 & echo "child $!"; wait`;
  await createPod(s, shPod("sleeper", script));
  const child = await until("the script to start its child", () => {
    const m = /child (\d+)/.exec(s.kubelet.output(s.ns, "sleeper"));
    return m ? Number(m[1]) : undefined;
  });
  const [main] = s.kubelet.processes(s.ns, "sleeper");
  assert.ok(main?.running);
  assert.ok(await alive(child));

  await s.cluster.core.deleteNamespacedPod({ name: "sleeper", namespace: s.ns, gracePeriodSeconds: 60 });
  // Well within the 60 s grace period: the process handles SIGTERM and the kubelet finishes the delete.
  await podGone(s, "sleeper", 30_000);
  assert.match(s.kubelet.output(s.ns, "sleeper"), /got SIGTERM/);
  assert.equal(s.kubelet.processes(s.ns, "sleeper")[0]?.running, false);
  assert.equal(await alive(main.pid), false);
  assert.equal(await alive(child), false, "the rest of the process group is gone too");
});

test("a process that ignores SIGTERM is killed when the grace period ends", async (t) => {
  const s = await setup(t, "kubelet-kill");
  await createPod(s, shPod("stubborn", `trap '' TERM; echo ready; sleep 300`));
  await until("the script to start", () => s.kubelet.output(s.ns, "stubborn") !== "");
  await s.cluster.core.deleteNamespacedPod({ name: "stubborn", namespace: s.ns, gracePeriodSeconds: 1 });
  await podGone(s, "stubborn");
  assert.equal(s.kubelet.processes(s.ns, "stubborn")[0]?.running, false);
});

test("a finished pod that is deleted goes away", async (t) => {
  const s = await setup(t, "kubelet-finished");
  await createPod(s, shPod("quick", "true"));
  await podWhen(s, "quick", "quick to finish", finished);
  await s.cluster.core.deleteNamespacedPod({ name: "quick", namespace: s.ns });
  await podGone(s, "quick");
});

test("never-start binds the pod and leaves it Pending in ContainerCreating", async (t) => {
  const s = await setup(t, "kubelet-never");
  const pod = shPod("parked", "echo should not run");
  await createPod(s, {
    ...pod,
    metadata: { name: "parked", annotations: { [behaviourAnnotation]: "never-start" } },
  });
  const parked = await podWhen(s, "parked", "a status", (p) => state(p) !== undefined);
  assert.equal(parked.spec?.nodeName, s.kubelet.nodeName);
  assert.equal(parked.status?.phase, "Pending");
  assert.equal(state(parked)?.waiting?.reason, "ContainerCreating");
  assert.deepEqual(s.kubelet.processes(s.ns, "parked"), []);
  await s.cluster.core.deleteNamespacedPod({ name: "parked", namespace: s.ns });
  await podGone(s, "parked");
});

test("image-pull-error leaves the container Waiting in ErrImagePull", async (t) => {
  const s = await setup(t, "kubelet-pull");
  const pod = shPod("unpullable", "echo should not run");
  await createPod(s, {
    ...pod,
    metadata: { name: "unpullable", annotations: { [behaviourAnnotation]: "image-pull-error" } },
  });
  const stuck = await podWhen(
    s,
    "unpullable",
    "ErrImagePull",
    (p) => state(p)?.waiting?.reason === "ErrImagePull",
  );
  assert.equal(stuck.status?.phase, "Pending");
  assert.match(state(stuck)?.waiting?.message ?? "", /example\.com\/step:1/);
  assert.deepEqual(s.kubelet.processes(s.ns, "unpullable"), []);
});

test("the same behaviours are chosen by a kubelet.test/* image, for pods a test does not write", async (t) => {
  const s = await setup(t, "kubelet-image");
  await createPod(s, shPod("parked", "echo should not run", { image: "kubelet.test/never-start" }));
  await createPod(
    s,
    shPod("unpullable", "echo should not run", { image: "kubelet.test/image-pull-error:1" }),
  );
  const parked = await podWhen(s, "parked", "a status", (p) => state(p) !== undefined);
  assert.equal(state(parked)?.waiting?.reason, "ContainerCreating");
  const stuck = await podWhen(
    s,
    "unpullable",
    "ErrImagePull",
    (p) => state(p)?.waiting?.reason === "ErrImagePull",
  );
  assert.match(state(stuck)?.waiting?.message ?? "", /kubelet\.test\/image-pull-error:1/);
  assert.deepEqual(s.kubelet.processes(s.ns, "parked"), []);
  assert.deepEqual(s.kubelet.processes(s.ns, "unpullable"), []);
});

test("a missing Secret is a CreateContainerConfigError until the Secret is created", async (t) => {
  const s = await setup(t, "kubelet-late");
  await createPod(
    s,
    shPod("waits", `echo "key=$KEY"`, {
      env: [{ name: "KEY", valueFrom: { secretKeyRef: { name: "late", key: "key" } } }],
    }),
  );
  const waiting = await podWhen(
    s,
    "waits",
    "CreateContainerConfigError",
    (p) => state(p)?.waiting?.reason === "CreateContainerConfigError",
  );
  assert.equal(state(waiting)?.waiting?.message, `secret "late" not found`);
  assert.equal(waiting.status?.phase, "Pending");
  assert.deepEqual(s.kubelet.processes(s.ns, "waits"), []);

  await s.cluster.core.createNamespacedSecret({
    namespace: s.ns,
    body: { metadata: { name: "late" }, stringData: { key: "arrived" } },
  });
  const done = await podWhen(s, "waits", "the pod to finish", finished);
  assert.equal(done.status?.phase, "Succeeded");
  assert.equal(s.kubelet.output(s.ns, "waits"), "key=arrived\n");
});

test("$(VAR) references expand in env, command and args, with $$ as an escape", async (t) => {
  const s = await setup(t, "kubelet-expand");
  await s.cluster.core.createNamespacedConfigMap({
    namespace: s.ns,
    body: { metadata: { name: "settings" }, data: { mode: "fast" } },
  });
  const script = `printf '%s|' "$TARGET" "$ESCAPED" "$UNKNOWN" "$EARLY" "$CFG_mode" "$POD" "$1"; echo`;
  await createPod(
    s,
    shPod("expands", script, {
      args: ["sh", "$(POD)/$(TARGET)"],
      envFrom: [{ prefix: "CFG_", configMapRef: { name: "settings" } }],
      env: [
        { name: "EARLY", value: "$(GREETING)" },
        { name: "GREETING", value: "hello" },
        { name: "TARGET", value: "$(GREETING) world in $(CFG_mode) mode" },
        { name: "ESCAPED", value: "$$(GREETING)" },
        { name: "UNKNOWN", value: "$(NOPE)" },
        { name: "POD", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      ],
    }),
  );
  await podWhen(s, "expands", "the pod to finish", finished);
  assert.equal(
    s.kubelet.output(s.ns, "expands"),
    "hello world in fast mode|$(GREETING)|$(NOPE)|$(GREETING)|fast|expands|expands/hello world in fast mode|\n",
  );
});

test("ConfigMap and projected volumes honour items, modes and fsGroup", async (t) => {
  const s = await setup(t, "kubelet-volumes");
  await s.cluster.core.createNamespacedConfigMap({
    namespace: s.ns,
    body: { metadata: { name: "conf" }, data: { "a.txt": "alpha", "b.txt": "beta" } },
  });
  await s.cluster.core.createNamespacedSecret({
    namespace: s.ns,
    body: { metadata: { name: "keys" }, stringData: { key: "k3y" } },
  });
  const script = [
    `cd /tekton/conf && ls; stat -L -c '%a %n' only/a.txt`,
    `cat /tekton/conf/only/a.txt; echo`,
    `cd /tekton/all && stat -L -c '%a %g %n' secret/key config/b.txt`,
    `cat /tekton/all/secret/key; echo; cat /tekton/all/ns; echo`,
  ].join("\n");
  await createPod(
    s,
    shPod(
      "volumes",
      script,
      {
        volumeMounts: [
          { name: "conf", mountPath: "/tekton/conf" },
          { name: "all", mountPath: "/tekton/all" },
        ],
      },
      {
        securityContext: { runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000 },
        volumes: [
          {
            name: "conf",
            configMap: { name: "conf", items: [{ key: "a.txt", path: "only/a.txt", mode: 0o600 }] },
          },
          {
            name: "all",
            projected: {
              defaultMode: 0o400,
              sources: [
                { secret: { name: "keys", items: [{ key: "key", path: "secret/key" }] } },
                { configMap: { name: "conf", items: [{ key: "b.txt", path: "config/b.txt" }] } },
                { downwardAPI: { items: [{ path: "ns", fieldRef: { fieldPath: "metadata.namespace" } }] } },
              ],
            },
          },
        ],
      },
    ),
  );
  const pod = await podWhen(s, "volumes", "the pod to finish", finished);
  const output = s.kubelet.output(s.ns, "volumes");
  assert.equal(pod.status?.phase, "Succeeded", output);
  assert.equal(
    output,
    ["only", "640 only/a.txt", "alpha", "440 2000 secret/key", "440 2000 config/b.txt", "k3y", s.ns, ""].join(
      "\n",
    ),
  );
});

test("init containers run in order, then the containers run together", async (t) => {
  const s = await setup(t, "kubelet-init");
  const sh = (name: string, script: string) => ({
    name,
    image: "example.com/step:1",
    command: ["/bin/sh", "-c", script],
    volumeMounts: [{ name: "work", mountPath: "/work" }],
  });
  // Each container waits for the other's file: they only finish if they run at the same time.
  await createPod(s, {
    metadata: { name: "ordered" },
    spec: {
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      volumes: [{ name: "work", emptyDir: {} }],
      initContainers: [sh("first", "echo one >> /work/order"), sh("second", "echo two >> /work/order")],
      containers: [
        sh("a", "cat /work/order; touch /work/a; until [ -e /work/b ]; do sleep 0.05; done"),
        sh("b", "touch /work/b; until [ -e /work/a ]; do sleep 0.05; done"),
      ],
    },
  });
  const pod = await podWhen(s, "ordered", "the pod to finish", finished);
  assert.equal(pod.status?.phase, "Succeeded");
  assert.deepEqual(
    pod.status?.initContainerStatuses?.map((c) => `${c.name}:${c.state?.terminated?.reason ?? "?"}`),
    ["first:Completed", "second:Completed"],
  );
  assert.equal(s.kubelet.output(s.ns, "ordered", "a"), "one\ntwo\n");
});

test("a failing init container fails the pod, and the containers never start", async (t) => {
  const s = await setup(t, "kubelet-init-fail");
  const pod = shPod(
    "blocked",
    "echo should not run",
    {},
    {
      initContainers: [{ name: "setup", image: "example.com/setup:1", command: ["/bin/sh", "-c", "exit 2"] }],
    },
  );
  await createPod(s, pod);
  const failed = await podWhen(s, "blocked", "the pod to fail", finished);
  assert.equal(failed.status?.phase, "Failed");
  assert.equal(failed.status?.initContainerStatuses?.[0]?.state?.terminated?.exitCode, 2);
  assert.equal(state(failed)?.waiting?.reason, "PodInitializing");
  assert.deepEqual(
    s.kubelet.processes(s.ns, "blocked").map((p) => p.container),
    ["setup"],
  );
});

test("an automounted service account token authenticates to the API server as the pod", async (t) => {
  const s = await setup(t, "kubelet-token");
  // The ServiceAccount admission plugin adds the kube-api-access projected volume: a bound token,
  // the cluster CA (kube-root-ca.crt) and the namespace.
  const script = [
    "cd /var/run/secrets/kubernetes.io/serviceaccount",
    `echo "namespace=$(cat namespace)"`,
    `curl -sS --cacert ca.crt -H "Authorization: Bearer $(cat token)" -H 'Content-Type: application/json' \\`,
    `  -d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' \\`,
    `  "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/apis/authentication.k8s.io/v1/selfsubjectreviews"`,
  ].join("\n");
  await createPod(s, shPod("in-cluster", script, {}, { automountServiceAccountToken: true }));
  const pod = await podWhen(s, "in-cluster", "the pod to finish", finished);
  const output = s.kubelet.output(s.ns, "in-cluster");
  assert.equal(pod.status?.phase, "Succeeded", output);
  assert.match(output, new RegExp(`^namespace=${s.ns}$`, "m"));
  const review = JSON.parse(output.slice(output.indexOf("{"))) as {
    status: { userInfo: { username: string; extra?: Record<string, string[]> } };
  };
  assert.equal(review.status.userInfo.username, `system:serviceaccount:${s.ns}:default`);
  assert.deepEqual(review.status.userInfo.extra?.["authentication.kubernetes.io/pod-name"], ["in-cluster"]);
});
