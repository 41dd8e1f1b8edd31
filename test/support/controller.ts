// Runs the real controller (controller/main.ts) as a child process against the test control
// plane, capturing its JSON logs so tests can read them and search them for secrets.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after } from "node:test";
import { eventually } from "./wait.ts";

const mainPath = fileURLToPath(new URL("../../controller/main.ts", import.meta.url));

export interface ControllerProcess {
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output: () => string;
  logLines: () => Record<string, unknown>[];
  kill: (signal?: NodeJS.Signals) => Promise<number | null>;
  exited: Promise<number | null>;
}

export interface ControllerOptions {
  kubeconfig: string;
  namespace: string;
  watchNamespaces: string[];
  identity?: string;
  flags?: string[];
  env?: Record<string, string>;
}

const running = new Set<ControllerProcess>();
after(async () => {
  await Promise.all([...running].map((c) => c.kill("SIGKILL")));
});

export function startController(opts: ControllerOptions): ControllerProcess {
  const child = spawn(
    process.execPath,
    [
      mainPath,
      `--namespace=${opts.namespace}`,
      `--watch-namespaces=${opts.watchNamespaces.join(",")}`,
      "--http-port=0",
      "--http-host=127.0.0.1",
      "--log-level=debug",
      "--lease-duration-seconds=4",
      "--renew-deadline-seconds=3",
      "--retry-period-seconds=1",
      `--identity=${opts.identity ?? `test-${process.pid}-${running.size}`}`,
      // Lifecycle tests run without cloud credentials unless they ask for them.
      ...((opts.flags ?? []).some((f) => f.startsWith("--credentials=")) ? [] : ["--credentials=none"]),
      ...(opts.flags ?? []),
    ],
    { env: { ...process.env, KUBECONFIG: opts.kubeconfig, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (output += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (output += c));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const proc: ControllerProcess = {
    child,
    output: () => output,
    logLines: () =>
      output
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    kill: async (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const code = await exited;
      running.delete(proc);
      return code;
    },
    exited,
  };
  running.add(proc);
  return proc;
}

/** Waits until the controller has taken the lease (it logs "became leader"). */
export async function waitForLeader(c: ControllerProcess, timeoutMs = 180_000): Promise<void> {
  await eventually(
    "controller to lead",
    () => Promise.resolve(c.output().includes('"became leader"') ? true : undefined),
    {
      timeoutMs,
    },
  );
}
