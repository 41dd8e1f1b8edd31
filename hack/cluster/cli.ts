// make cluster-up / cluster-down / cluster-status: one long-lived local control plane for
// development, kept by a detached supervisor process whose state lives in .state/cluster.
import { spawn } from "node:child_process";
import { existsSync, openSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startControlPlane } from "./control-plane.ts";
import { waitFor } from "./processes.ts";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const stateDir = path.join(repo, ".state", "cluster");
const readyFile = path.join(stateDir, "ready.json");
const pidFile = path.join(repo, ".state", "cluster.pid");

interface Ready {
  pid: number;
  server: string;
  kubeconfig: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function readPid(): Promise<number | undefined> {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number((await readFile(pidFile, "utf8")).trim());
  return Number.isInteger(pid) && alive(pid) ? pid : undefined;
}

async function serve(): Promise<void> {
  await rm(stateDir, { recursive: true, force: true });
  const cp = await startControlPlane({ dir: stateDir, log: (l) => console.log(l) });
  const ready: Ready = { pid: process.pid, server: cp.server, kubeconfig: cp.kubeconfigPath };
  await writeFile(readyFile, JSON.stringify(ready));
  const shutdown = () => {
    console.log("stopping control plane");
    void cp.stop().then(() => process.exit(0));
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
  setInterval(() => {}, 1 << 30);
}

async function up(): Promise<void> {
  const running = await readPid();
  if (running && existsSync(readyFile)) {
    const ready = JSON.parse(await readFile(readyFile, "utf8")) as Ready;
    console.log(`control plane already running at ${ready.server}\nexport KUBECONFIG=${ready.kubeconfig}`);
    return;
  }
  await mkdir(path.dirname(pidFile), { recursive: true });
  const logPath = path.join(repo, ".state", "cluster.log");
  const out = openSync(logPath, "w");
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "serve"], {
    detached: true,
    stdio: ["ignore", out, out],
  });
  child.unref();
  await writeFile(pidFile, String(child.pid));
  console.log(`starting control plane (log: ${logPath})`);
  await waitFor(
    "control plane",
    () => {
      if (child.exitCode !== null) throw new Error(`supervisor exited; see ${logPath}`);
      return Promise.resolve(existsSync(readyFile));
    },
    { timeoutMs: 20 * 60_000, intervalMs: 250 },
  );
  const ready = JSON.parse(await readFile(readyFile, "utf8")) as Ready;
  console.log(`control plane running at ${ready.server}\nexport KUBECONFIG=${ready.kubeconfig}`);
}

async function down(): Promise<void> {
  const pid = await readPid();
  if (pid) {
    process.kill(pid, "SIGTERM");
    await waitFor("control plane to stop", () => Promise.resolve(!alive(pid)), { timeoutMs: 60_000 });
  }
  await rm(pidFile, { force: true });
  console.log("control plane stopped");
}

async function status(): Promise<void> {
  const pid = await readPid();
  if (!pid || !existsSync(readyFile)) {
    console.log("control plane not running");
    process.exitCode = 1;
    return;
  }
  const ready = JSON.parse(await readFile(readyFile, "utf8")) as Ready;
  console.log(
    `control plane running at ${ready.server} (supervisor pid ${pid})\nexport KUBECONFIG=${ready.kubeconfig}`,
  );
}

const commands: Record<string, () => Promise<void>> = { serve, up, down, status };
const command = commands[process.argv[2] ?? ""];
if (!command) {
  console.error("usage: cli.ts up|down|status|serve");
  process.exit(2);
}
await command();
