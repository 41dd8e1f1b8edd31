// A cluster with a real node leaves the machine as it found it: after `cluster-down`, after the
// run that started it is killed, and after its namespace holder itself is killed. Each case starts
// a cluster of its own (hack/cluster/cli.ts, nested inside this run's namespaces), records what it
// holds (processes, network and mount namespaces, cgroups), ends it, and looks for any of it.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { logTail } from "../../hack/cluster/processes.ts";
import { realCluster } from "../support/cluster.ts";
import { eventually } from "../support/wait.ts";

const cli = fileURLToPath(new URL("../../hack/cluster/cli.ts", import.meta.url));
const netns = fileURLToPath(new URL("../../hack/cluster/netns.sh", import.meta.url));
// Not under /tmp: each cluster's namespaces mount a fresh /tmp, where the state would not be seen.
const stateRoot = fileURLToPath(new URL("../../.state/", import.meta.url));

async function stateDir(): Promise<string> {
  await mkdir(stateRoot, { recursive: true });
  const dir = await mkdtemp(path.join(stateRoot, "teardown-"));
  after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Footprint {
  pids: number[];
  /** Network and mount namespaces: `net:[inode]`, `mnt:[inode]`. */
  namespaces: string[];
  cgroups: string[];
  /** The Kubernetes chains in the cluster's own network namespace. */
  chains: string[];
}

/**
 * Where a kubelet, containerd and the CNI plugins write by default, outside their own folders. Not
 * /run/containerd: /run is a fresh tmpfs in every namespace a run makes, so what containerd puts
 * there (its shim sockets, always under /run/containerd/s) goes with the namespace, and the
 * enclosing test run's own node writes there whenever it starts a container.
 */
const defaultPaths = [
  "/var/lib/kubelet",
  "/var/lib/containerd",
  "/var/log/containers",
  "/var/log/pods",
  "/etc/cni/net.d",
  "/var/lib/cni",
  "/etc/kubernetes",
];

/**
 * Files the cluster must not leave outside its own folders. Its iptables chains live in its network
 * namespace (Footprint.chains), so they go with it: leftovers() checks that no process holds it.
 */
function machine(): string[] {
  return defaultPaths.filter((p) => existsSync(p));
}

const allPids = () =>
  readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
const parentOf = (pid: number) =>
  Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[1]);
const safe = <T>(f: () => T): T | undefined => {
  try {
    return f();
  } catch {
    return undefined;
  }
};
const namespacesOf = (pid: number) =>
  ["net", "mnt"].map((n) => safe(() => readlinkSync(`/proc/${pid}/ns/${n}`))).filter((n) => n !== undefined);

/** Everything the cluster under `holder` (netns.sh's pid) holds right now. */
function footprint(holder: number): Footprint {
  const pids = new Set([holder]);
  for (let grew = true; grew;) {
    grew = false;
    for (const pid of allPids()) {
      if (pids.has(pid) || !pids.has(safe(() => parentOf(pid)) ?? -1)) continue;
      pids.add(pid);
      grew = true;
    }
  }
  const own = new Set(namespacesOf(process.pid));
  const namespaces = new Set([...pids].flatMap(namespacesOf).filter((n) => !own.has(n)));
  const cgroups = readdirSync("/sys/fs/cgroup").flatMap((h) =>
    readdirSync(`/sys/fs/cgroup/${h}`)
      .filter((d) => d.startsWith(`scoped-step-node-${holder}-`))
      .map((d) => `/sys/fs/cgroup/${h}/${d}`),
  );
  const first = [...pids].find((p) => namespacesOf(p).some((n) => n.startsWith("net:") && !own.has(n)));
  const chains = first
    ? execFileSync("nsenter", ["--target", String(first), "--net", "iptables-save"], { encoding: "utf8" })
        .split("\n")
        .filter((l) => l.startsWith(":KUBE-"))
    : [];
  return { pids: [...pids], namespaces: [...namespaces], cgroups, chains };
}

/** A process as a person debugging a leftover needs it: name, state, parent, cgroups. */
function describe(pid: number): string {
  const status = safe(() => readFileSync(`/proc/${pid}/status`, "utf8")) ?? "";
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(status)?.[1] ?? "?";
  const freezer = safe(() => readFileSync(`/proc/${pid}/cgroup`, "utf8"))
    ?.split("\n")
    .find((l) => l.includes(":freezer:"));
  return `process ${pid} (${field("Name")}, ${field("State")}, parent ${field("PPid")}, ${freezer ?? "no freezer"})`;
}

const ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }));
/** Now, in the clock ticks since boot that /proc/<pid>/stat gives a process's start in. */
const ticksSinceBoot = () =>
  Math.floor(Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]) * ticksPerSecond);
const startedAt = (pid: number) =>
  Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[19]);

/**
 * What of `before` is still there: live processes, namespaces any process holds or mounts, cgroups.
 * The kernel reuses a freed namespace's inode number for the next namespace made (a container of
 * another test, say), and a pid to the next process, so a process started after `endedAt` is not
 * the cluster's, whatever it holds: it is not counted.
 */
function leftovers(before: Footprint, endedAt: number): string[] {
  const left: string[] = [];
  const gone = new Set(before.namespaces);
  for (const pid of allPids()) {
    if ((safe(() => startedAt(pid)) ?? Infinity) > endedAt) continue;
    if (before.pids.includes(pid)) left.push(describe(pid));
    for (const ns of namespacesOf(pid)) if (gone.has(ns)) left.push(`${ns} held by ${describe(pid)}`);
    const mounts = safe(() => readFileSync(`/proc/${pid}/mountinfo`, "utf8")) ?? "";
    for (const ns of gone) if (mounts.includes(ns)) left.push(`${ns} mounted in process ${pid}'s view`);
  }
  left.push(...before.cgroups.filter((d) => existsSync(d)).map((d) => `cgroup ${d}`));
  return left;
}

/** Ending takes a moment (the kernel kills, parents reap): wait until nothing is left. */
async function assertNothingLeft(before: Footprint, found: ReturnType<typeof machine>): Promise<void> {
  const endedAt = ticksSinceBoot();
  await eventually("nothing of the cluster to be left", () => {
    const left = leftovers(before, endedAt);
    if (left.length) throw new Error(left.join(", "));
    return Promise.resolve(true);
  });
  assert.deepEqual(machine(), found, "no file left in the places a node writes by default");
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((r) => child.once("exit", r));
}

async function runCli(state: string, ...args: string[]): Promise<void> {
  const child = spawn(process.execPath, [cli, ...args], {
    env: { ...process.env, SCOPED_STEP_CLUSTER_STATE: state },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const code = await exited(child);
  if (code === 0) return;
  // The cluster's own log says why it stopped; it is gone once cluster-down has run.
  const log = logTail(path.join(state, "cluster.log"));
  assert.fail(`cli.ts ${args.join(" ")} exited with ${code}; the end of cluster.log:\n${log}`);
}

/** A cluster held by netns.sh, watching a stand-in for the test run that started it. */
async function startWatchedCluster(): Promise<{ holder: ChildProcess; run: ChildProcess; state: string }> {
  const state = await stateDir();
  await mkdir(path.join(state, "cluster"));
  await writeFile(path.join(state, "cluster", "images.json"), process.env.SCOPED_STEP_NODE_IMAGES ?? "");
  const run = spawn("sleep", ["3600"], { stdio: "ignore" });
  const holder = spawn(netns, ["--watch", String(run.pid), process.execPath, cli, "serve"], {
    env: { ...process.env, SCOPED_STEP_CLUSTER_STATE: state },
    stdio: ["ignore", "inherit", "inherit"],
  });
  // When an assertion fails first: the cluster ends with its stand-in run.
  after(() => run.kill("SIGKILL"));
  // A whole cluster starting beside a busy test run: its node has taken over ten minutes to go
  // Ready on a loaded machine, so the deadline only catches a start that hangs.
  const ready = await eventually(
    "the cluster to be ready",
    () => {
      if (holder.exitCode !== null) return Promise.resolve(false);
      return Promise.resolve(existsSync(path.join(state, "cluster", "ready.json")) || undefined);
    },
    { timeoutMs: 1_000_000 },
  );
  assert.ok(ready, `netns.sh exited with ${holder.exitCode}`);
  return { holder, run, state };
}

const kubeChains = ["KUBE-SERVICES", "KUBE-FORWARD", "KUBE-FIREWALL"];

/** The footprint once kube-proxy has written its rules, a moment after the node is Ready. */
function settledFootprint(holder: number): Promise<Footprint> {
  return eventually(
    "kube-proxy's first sync",
    () => {
      const f = footprint(holder);
      const synced = kubeChains.every((chain) => f.chains.some((c) => c.startsWith(`:${chain} `)));
      return Promise.resolve(synced ? f : undefined);
    },
    { timeoutMs: 600_000 },
  );
}

function assertSubstantial(f: Footprint): void {
  assert.ok(
    f.pids.length >= 8,
    `etcd, kube-apiserver, containerd, kubelet and the rest run: ${f.pids.length}`,
  );
  assert.ok(f.namespaces.length >= 2, "the cluster has a network and a mount namespace of its own");
  assert.ok(f.cgroups.length > 0, "the kubelet's cgroups have a parent of their own");
  for (const chain of kubeChains)
    assert.ok(
      f.chains.some((c) => c.startsWith(`:${chain} `)),
      `kube-proxy and the kubelet made ${chain} in the cluster's namespace: ${f.chains.join(" ")}`,
    );
}

test("cluster-down leaves no process, namespace, mount or cgroup of the cluster", async () => {
  await realCluster(); // the images are built before the run enters its namespaces
  const state = await stateDir();
  const found = machine();
  after(() => runCli(state, "down"));
  await runCli(state, "up");
  const holder = Number(readFileSync(path.join(state, "cluster.pid"), "utf8"));
  const before = await settledFootprint(holder);
  assertSubstantial(before);
  await runCli(state, "down");
  await assertNothingLeft(before, found);
  assert.ok(!existsSync(path.join(state, "cluster")), "cluster-down removes its state");
});

test("killing the run that started a cluster leaves nothing of it", async () => {
  const found = machine();
  const { holder, run } = await startWatchedCluster();
  const before = await settledFootprint(holder.pid ?? -1);
  assertSubstantial(before);
  run.kill("SIGKILL");
  await exited(holder);
  await assertNothingLeft(before, found);
});

test("killing the namespace holder outright ends the cluster; the next start removes its cgroups", async () => {
  const found = machine();
  const { holder, run } = await startWatchedCluster();
  const before = await settledFootprint(holder.pid ?? -1);
  assertSubstantial(before);
  holder.kill("SIGKILL");
  await exited(holder);
  run.kill("SIGKILL");
  await eventually("the cluster's processes to end", () =>
    Promise.resolve(before.pids.some((p) => allPids().includes(p)) ? undefined : true),
  );
  // Nothing outlives a SIGKILL to clean up after it: the next netns.sh does.
  const next = spawn(netns, ["true"], { stdio: "inherit" });
  assert.equal(await exited(next), 0);
  await assertNothingLeft(before, found);
});
