// Container processes: each runs in its own process group (its own session, in fact), so the whole
// tree can be signalled like a container's cgroup. None may outlive the test process: `stop()` kills
// them, a process 'exit' handler kills them, and a small detached watchdog shell that is told every
// group kills the rest when its stdin (a pipe from this process) closes, however this process dies,
// even by SIGKILL.
import { spawn, type ChildProcess } from "node:child_process";
import { constants } from "node:os";
import type { Readable } from "node:stream";

const outputLimit = 1024 * 1024;

/** The last 1 MiB of a container's stdout and stderr, in arrival order. */
export class OutputBuffer {
  private chunks: Buffer[] = [];
  private size = 0;

  append(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > outputLimit && this.chunks.length > 1) {
      this.size -= this.chunks.shift()?.length ?? 0;
    }
    if (this.size > outputLimit) {
      const only = this.chunks[0] ?? Buffer.alloc(0);
      this.chunks = [only.subarray(only.length - outputLimit)];
      this.size = outputLimit;
    }
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  text(): string {
    return this.bytes().toString("utf8");
  }
}

// Reads `+pgid` and `-pgid` lines; at end of input, SIGKILLs every group still listed, then removes
// the kubelet's directory ($1) with its copies of Secrets.
const watchdogScript = `
groups=" "
while IFS= read -r line; do
  case "$line" in
    +*) groups="$groups\${line#+} " ;;
    -*) p="\${line#-}"; case "$groups" in *" $p "*) groups="\${groups%% $p *} \${groups#* $p }" ;; esac ;;
  esac
done
for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done
exec rm -rf -- "$1"
`;

export class ProcessGroups {
  private readonly live = new Set<number>();
  private readonly watchdog: ChildProcess;
  private readonly onExit = () => this.killAll();

  constructor(sh: string, kubeletDir: string) {
    this.watchdog = spawn(sh, ["-c", watchdogScript, "watchdog", kubeletDir], {
      detached: true,
      stdio: ["pipe", "ignore", "ignore"],
    });
    this.watchdog.stdin?.on("error", () => undefined);
    process.on("exit", this.onExit);
  }

  add(pgid: number): void {
    this.live.add(pgid);
    this.watchdog.stdin?.write(`+${pgid}\n`);
  }

  remove(pgid: number): void {
    if (this.live.delete(pgid)) this.watchdog.stdin?.write(`-${pgid}\n`);
  }

  signal(pgid: number, signal: NodeJS.Signals): void {
    if (!this.live.has(pgid)) return;
    try {
      process.kill(-pgid, signal);
    } catch {
      // the group is already gone
    }
  }

  killAll(): void {
    for (const pgid of this.live) this.signal(pgid, "SIGKILL");
  }

  async close(): Promise<void> {
    this.killAll();
    process.off("exit", this.onExit);
    const exited = new Promise((resolve) => this.watchdog.once("exit", resolve));
    this.watchdog.stdin?.end();
    if (this.watchdog.exitCode === null && this.watchdog.signalCode === null) await exited;
  }
}

export interface ContainerExit {
  /** False when the preamble failed before the command was exec'd. */
  started: boolean;
  exitCode: number;
  signal?: NodeJS.Signals;
}

export interface StartOptions {
  tools: { unshare: string; sh: string };
  preamble: string;
  argv: string[];
  env: Record<string, string>;
  groups: ProcessGroups;
  output: OutputBuffer;
}

/** A container's main process, run through `unshare` and the preamble (see mounts.ts). */
export class ContainerProcess {
  readonly pid: number;
  /** Resolves once the command is exec'd (true), or the preamble failed (false). */
  readonly started: Promise<boolean>;
  /** Resolves after the process exited, the rest of its group was killed and its output drained. */
  readonly exited: Promise<ContainerExit>;
  private running = true;
  private killTimer: NodeJS.Timeout | undefined;
  private killDeadline: number | undefined;
  private readonly groups: ProcessGroups;

  constructor(opts: StartOptions) {
    this.groups = opts.groups;
    // --uts too: the preamble sets the pod's hostname, which must not be the host's.
    const child = spawn(
      opts.tools.unshare,
      [
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "--",
        opts.tools.sh,
        "-c",
        opts.preamble,
        "sh",
        ...opts.argv,
      ],
      { detached: true, env: opts.env, stdio: ["ignore", "pipe", "pipe", "pipe"] },
    );
    this.pid = child.pid ?? -1;
    if (this.pid > 0) this.groups.add(this.pid);
    child.stdout?.on("data", (b: Buffer) => opts.output.append(b));
    child.stderr?.on("data", (b: Buffer) => opts.output.append(b));

    const marker = child.stdio[3] as Readable | null;
    let startedSeen = false;
    this.started = new Promise((resolve) => {
      if (!marker) return resolve(false);
      marker.on("data", (b: Buffer) => (startedSeen ||= b.toString().includes("started")));
      marker.on("close", () => resolve(startedSeen));
      marker.on("error", () => resolve(startedSeen));
    });

    this.exited = new Promise((resolve) => {
      child.once("error", (err) => {
        opts.output.append(Buffer.from(`test kubelet: ${err.message}\n`));
        resolve({ started: false, exitCode: 128 });
      });
      child.once("exit", (code, signal) => {
        this.running = false;
        // Like a container's init dying: whatever else is left in the group goes too.
        this.groups.signal(this.pid, "SIGKILL");
        clearTimeout(this.killTimer);
        const exitCode = code ?? 128 + (signal ? constants.signals[signal] : 0);
        const finish = () => {
          this.groups.remove(this.pid);
          void this.started.then((started) => resolve({ started, exitCode, signal: signal ?? undefined }));
        };
        // Output is complete when the pipes close; a process that escaped the group may hold them.
        const drained = setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
          marker?.destroy();
        }, 2000);
        child.once("close", () => {
          clearTimeout(drained);
          finish();
        });
      });
    });
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** SIGTERM to the group now, SIGKILL after the grace period (at once when it is 0). */
  terminate(graceSeconds: number): void {
    if (!this.running) return;
    const deadline = Date.now() + Math.max(0, graceSeconds) * 1000;
    if (this.killDeadline === undefined) this.groups.signal(this.pid, "SIGTERM");
    if (this.killDeadline !== undefined && this.killDeadline <= deadline) return;
    // A second, shorter deletion (e.g. a forced one) brings the SIGKILL forward, as in the kubelet.
    this.killDeadline = deadline;
    clearTimeout(this.killTimer);
    this.killTimer = setTimeout(() => this.groups.signal(this.pid, "SIGKILL"), deadline - Date.now());
  }
}
