// Starting and stopping the control plane's processes. Each runs under guard.sh, which ends it when
// this Node process dies, however it dies.
import { spawn, type ChildProcess } from "node:child_process";
import { randomInt } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { hackDir } from "./upstream.ts";

export interface Supervised {
  name: string;
  child: ChildProcess;
  logFile: string;
  exited: Promise<number | null>;
}

export function startSupervised(name: string, command: string, args: string[], logDir: string): Supervised {
  const logFile = path.join(logDir, `${name}.log`);
  const fd = openSync(logFile, "a");
  const child = spawn(path.join(hackDir, "cluster", "guard.sh"), [String(process.pid), command, ...args], {
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { name, child, logFile, exited };
}

export async function stopSupervised(p: Supervised, graceMs = 15_000): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), graceMs);
  await p.exited;
  clearTimeout(timer);
}

// Ports for a process started later to bind. listen(0) would answer from the kernel's ephemeral
// range, where any outgoing connection or another listen(0) can take the port before that process
// binds it. So they come from a range below it that no Kubernetes component uses by default
// (kubelet 10250, NodePorts 30000 and up), each claimed by a file so that two processes on this
// machine never hand out the same one while neither has bound it yet.
const portRange = { low: 20_000, high: 29_999 };
const claimDir = path.join(os.tmpdir(), "scoped-step-ports");
// A claim guards the window between choosing a port and binding it; once bound, the kernel does.
const claimTtlMs = 30 * 60_000;

function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
      .trim()
      .split(/\s+/)
      .map(Number);
    if (low && high) return [low, high];
  } catch {
    // Not Linux: assume the IANA range.
  }
  return [49_152, 65_535];
}

// This process's claims, removed when it exits: by then what it started has bound or is gone.
const claimed = new Set<string>();
process.once("exit", () => {
  for (const file of claimed) rmSync(file, { force: true });
});

function claim(port: number): boolean {
  const file = path.join(claimDir, String(port));
  try {
    writeFileSync(file, String(process.pid), { flag: "wx" });
    claimed.add(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  try {
    if (Date.now() - statSync(file).mtimeMs < claimTtlMs) return false;
    const now = new Date();
    utimesSync(file, now, now);
    claimed.add(file);
    return true;
  } catch {
    return false;
  }
}

function bindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

/** Free ports outside the ephemeral range, claimed for this process; the caller binds them soon. */
export async function freePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  mkdirSync(claimDir, { recursive: true });
  const [ephemeralLow, ephemeralHigh] = ephemeralRange();
  // Where the kernel's range covers all of ours, the claims and the bind check are all there is.
  const covered = ephemeralLow <= portRange.low && ephemeralHigh >= portRange.high;
  const overlaps = (p: number) => !covered && p >= ephemeralLow && p <= ephemeralHigh;
  const ports: number[] = [];
  for (let tries = 0; ports.length < count; tries++) {
    if (tries >= 2_000)
      throw new Error(`no free port in ${portRange.low}-${portRange.high} after ${tries} tries`);
    const port = portRange.low + randomInt(portRange.high - portRange.low + 1);
    if (overlaps(port) || ports.includes(port) || !claim(port)) continue;
    if (await bindable(port, host)) ports.push(port);
  }
  return ports;
}

/** The last lines of a log file, or why there are none. */
export function logTail(file: string, lines = 40): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch (err) {
    return `(unreadable: ${String(err)})`;
  }
}

/**
 * The deadline of a wait for something to start, unless told otherwise: etcd, the API server, a
 * node, Tekton. A start on a loaded two-core machine has taken many minutes, and a process that
 * dies ends its wait at once (`alive`), so this deadline only catches a start that hangs.
 */
const startDeadlineMs = 900_000;

/** Polls until check() returns true, a process given as `alive` exits, or the deadline passes. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  opts: { timeoutMs?: number; intervalMs?: number; alive?: Supervised },
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? startDeadlineMs;
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  while (Date.now() < deadline) {
    const alive = opts.alive;
    if (alive && (alive.child.exitCode !== null || alive.child.signalCode !== null)) {
      // The log sits under the namespaces' own /tmp, gone once the run ends: quote its end here.
      const how = alive.child.signalCode ?? `code ${String(alive.child.exitCode)}`;
      throw new Error(
        `${alive.name} exited (${how}) while waiting for ${what}; the end of ${alive.logFile}:\n${logTail(alive.logFile)}`,
      );
    }
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError}` : ""}`);
}
