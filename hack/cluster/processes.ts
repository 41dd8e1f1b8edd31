// Starting and stopping the control plane's processes. Each runs under guard.sh, which ends it when
// this Node process dies, however it dies.
import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync, readFileSync } from "node:fs";
import net from "node:net";
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

/** Ports the kernel reports free right now; the caller binds them at once. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
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
