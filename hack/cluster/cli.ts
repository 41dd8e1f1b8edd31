// make cluster-up / cluster-down / cluster-status: one long-lived local cluster for development,
// with a real node, inside namespaces of its own (netns.sh). `up` builds what it needs first,
// outside them; `serve` runs inside and keeps the cluster; `exec` runs a command in there.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, openSync } from "node:fs";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startCluster } from "./cluster.ts";
import type { NodeImages } from "./images.ts";
import { prepareNode } from "./prepare.ts";
import { waitFor } from "./processes.ts";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const state = process.env.SCOPED_STEP_CLUSTER_STATE ?? path.join(repo, ".state");
const stateDir = path.join(state, "cluster");
const readyFile = path.join(stateDir, "ready.json");
const imagesFile = path.join(stateDir, "images.json");
const pidFile = path.join(state, "cluster.pid");
const logPath = path.join(state, "cluster.log");

interface Ready {
  server: string;
  kubeconfig: string;
  nodeIp: string;
  images: NodeImages;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pid of netns.sh, which holds the namespaces, if it runs. */
async function readPid(): Promise<number | undefined> {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number((await readFile(pidFile, "utf8")).trim());
  return Number.isInteger(pid) && alive(pid) ? pid : undefined;
}

/** The namespaces' first process (netns.sh → unshare → it), for nsenter. */
async function namespacePid(netnsPid: number): Promise<number> {
  const children = async (pid: number) =>
    (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => ""))
      .trim()
      .split(/\s+/)
      .map(Number);
  const [unshare] = await children(netnsPid);
  const [first] = unshare ? await children(unshare) : [];
  if (!first) throw new Error("the cluster's namespaces are not running");
  return first;
}

async function serve(): Promise<void> {
  const images = JSON.parse(await readFile(imagesFile, "utf8")) as NodeImages;
  const cluster = await startCluster({ dir: "/tmp/scoped-step-cluster", images, log: (l) => console.log(l) });
  const kubeconfig = path.join(stateDir, "kubeconfig");
  await copyFile(cluster.kubeconfigPath, kubeconfig);
  const ready: Ready = { server: cluster.server, kubeconfig, nodeIp: cluster.node.ip, images };
  await writeFile(readyFile, JSON.stringify(ready, null, 2));
  const shutdown = () => {
    console.log("stopping the cluster");
    void cluster.stop().then(() => process.exit(0));
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
  setInterval(() => {}, 1 << 30);
}

async function up(): Promise<void> {
  if ((await readPid()) && existsSync(readyFile)) return status();
  const images = await prepareNode((l) => console.log(l));
  await rm(stateDir, { recursive: true, force: true });
  await mkdir(stateDir, { recursive: true });
  await writeFile(imagesFile, JSON.stringify(images));
  const out = openSync(logPath, "w");
  const child = spawn(
    path.join(repo, "hack", "cluster", "netns.sh"),
    [process.execPath, fileURLToPath(import.meta.url), "serve"],
    {
      detached: true,
      stdio: ["ignore", out, out],
    },
  );
  child.unref();
  await writeFile(pidFile, String(child.pid));
  console.log(`starting the cluster (log: ${logPath})`);
  // waitFor retries a check that throws: an exit ends the wait with a check that passes.
  await waitFor("the cluster", () => Promise.resolve(child.exitCode !== null || existsSync(readyFile)), {
    timeoutMs: 20 * 60_000,
    intervalMs: 250,
  });
  if (!existsSync(readyFile)) throw new Error(`the cluster stopped (exit ${child.exitCode}); see ${logPath}`);
  await status();
}

async function down(): Promise<void> {
  const pid = await readPid();
  if (pid) {
    process.kill(pid, "SIGTERM");
    await waitFor("the cluster to stop", () => Promise.resolve(!alive(pid)), { timeoutMs: 120_000 });
  }
  await rm(pidFile, { force: true });
  await rm(stateDir, { recursive: true, force: true });
  console.log("cluster stopped");
}

async function status(): Promise<void> {
  const pid = await readPid();
  if (!pid || !existsSync(readyFile)) {
    console.log("cluster not running");
    process.exitCode = 1;
    return;
  }
  const ready = JSON.parse(await readFile(readyFile, "utf8")) as Ready;
  console.log(
    [
      `cluster running: API server ${ready.server}, node ${ready.nodeIp}, inside namespaces held by pid ${pid}`,
      `run commands in there with: node hack/cluster/cli.ts exec -- <command>   (KUBECONFIG=${ready.kubeconfig})`,
    ].join("\n"),
  );
}

async function exec(): Promise<void> {
  const pid = await readPid();
  if (!pid) throw new Error("cluster not running: make cluster-up");
  const args = process.argv.slice(process.argv.indexOf("--") + 1);
  const ready = JSON.parse(await readFile(readyFile, "utf8")) as Ready;
  // prettier-ignore
  const res = spawnSync("nsenter", ["--target", String(await namespacePid(pid)), "--net", "--mount", "--pid", "--",
    "env", `KUBECONFIG=${ready.kubeconfig}`, ...args], { stdio: "inherit" });
  process.exitCode = res.status ?? 1;
}

const commands: Record<string, () => Promise<void>> = { serve, up, down, status, exec };
const command = commands[process.argv[2] ?? ""];
if (!command) {
  console.error("usage: cli.ts up|down|status|exec -- <command>");
  process.exit(2);
}
await command();
