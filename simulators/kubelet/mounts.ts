// The shell preamble that turns a host process into something like a container: it runs inside a
// private mount namespace (`unshare --mount --propagation private`, plus a UTS namespace for the
// hostname), bind-mounts each volume at its mountPath, remounts read-only ones, changes to the
// working directory, then execs the command, as another user through setpriv when asked.
//
// Mountpoints must exist before anything can be mounted on them, and creating them is the only
// thing that touches the host's view of the filesystem. The rules, so the host stays clean:
// - a mountpoint below one already mounted for this container is created inside the namespace, in
//   the pod's volume or scratch tmpfs (as runc creates mountpoints inside a parent volume);
// - an existing host path is mounted over as it is (e.g. `/tmp`): only this namespace sees it;
// - a missing directory is created on the host (one empty directory, e.g. `/workspace`);
// - when a missing mountpoint lies deeper (e.g. `/tekton/results`, or the file `/tekton/termination`),
//   its top missing directory (or an existing empty one, like a `/tekton` left from an earlier run)
//   gets a scratch tmpfs inside the namespace and the rest is created there, so nothing is written
//   into host directories beyond one empty directory;
// - a missing file directly in an existing host directory is only created in `/dev` (a devtmpfs,
//   not persistent): that is the default terminationMessagePath `/dev/termination-log`. Anywhere
//   else (e.g. a file straight in `/etc`) the container fails to start rather than write there.
//
// readOnlyRootFilesystem is not honoured: remounting `/` read-only, even in a private namespace,
// is not safe enough on a shared test host to be worth it, and the tests do not need it.
import { mkdir, readdir, stat, open } from "node:fs/promises";
import path from "node:path";

export class MountError extends Error {}

export interface Mount {
  /** Path inside the container. */
  target: string;
  /** Host file or directory to bind there. */
  source: string;
  readOnly: boolean;
}

export interface RunAs {
  uid: number;
  gid: number;
  groups: number[];
  noNewPrivs: boolean;
}

export interface Tools {
  mount: string;
  mkdir: string;
  setpriv: string;
}

export interface Preamble {
  hostname: string;
  /** The pod's directory on the host, which holds the sources of its mounts. */
  podDir: string;
  mounts: Mount[];
  workingDir: string;
  runAs?: RunAs;
}

/** Quotes a string for sh. */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * Prepares the host-side mountpoints and returns the preamble for `sh -c`, whose positional
 * parameters are the command and its arguments. It writes `started` to fd 3 and closes it just
 * before the final exec, so the kubelet can tell a start failure from the command's own exit.
 */
export async function buildPreamble(p: Preamble, tools: Tools): Promise<string> {
  const lines = [`fail() { printf 'test kubelet: %s\\n' "$1" >&2; exit 128; }`];
  const run = (cmd: string, what: string) => lines.push(`${cmd} || fail ${shQuote(what)}`);
  run(`printf %s ${shQuote(p.hostname)} > /proc/sys/kernel/hostname`, "cannot set the hostname");

  // A mount over an ancestor of the pod's directory (`/tmp`, say) would hide the sources of later
  // mounts, so they are reached through a descriptor opened on it first: /proc/self/fd/4 resolves to
  // the directory itself whatever is mounted over its path since (hence --no-canonicalize).
  run(`exec 4< ${shQuote(p.podDir)}`, `cannot open ${p.podDir}`);
  const source = (s: string) =>
    s.startsWith(`${p.podDir}/`)
      ? `--no-canonicalize ${shQuote(`/proc/self/fd/4/${path.relative(p.podDir, s)}`)}`
      : shQuote(s);
  const mounted: string[] = [];
  const ensure = async (target: string, dir: boolean) => {
    for (const step of await mountpoint(target, dir, mounted)) {
      if (step.kind === "scratch") {
        run(
          `${tools.mount} -t tmpfs -o mode=755 tmpfs ${shQuote(step.path)}`,
          `cannot mount tmpfs at ${step.path}`,
        );
        mounted.push(step.path);
      } else if (step.kind === "dir") {
        run(`${tools.mkdir} -p ${shQuote(step.path)}`, `cannot create ${step.path}`);
      } else {
        run(`${tools.mkdir} -p ${shQuote(path.dirname(step.path))}`, `cannot create ${step.path}`);
        run(`: >> ${shQuote(step.path)}`, `cannot create ${step.path}`);
      }
    }
  };

  // Parents before children, as containerd orders mounts.
  const mounts = p.mounts
    .map((m) => ({ ...m, target: path.posix.resolve("/", m.target) }))
    .sort((a, b) => depth(a.target) - depth(b.target));
  for (const m of mounts) {
    if (m.target === "/") throw new MountError("cannot mount a volume over /");
    const isDir = (await stat(m.source)).isDirectory();
    await ensure(m.target, isDir);
    run(`${tools.mount} --bind ${source(m.source)} ${shQuote(m.target)}`, `cannot mount ${m.target}`);
    mounted.push(m.target);
  }
  for (const m of mounts.filter((m) => m.readOnly)) {
    run(`${tools.mount} -o remount,bind,ro ${shQuote(m.target)}`, `cannot make ${m.target} read-only`);
  }

  const workingDir = path.posix.resolve("/", p.workingDir);
  await ensure(workingDir, true);
  run(`cd ${shQuote(workingDir)}`, `cannot change to the working directory ${workingDir}`);
  lines.push(
    `command -v "$1" >/dev/null 2>&1 || fail "exec: \\"$1\\": executable file not found in \\$PATH"`,
    "printf started >&3",
    "exec 3>&- 4<&-",
  );
  if (p.runAs) {
    const { uid, gid, groups, noNewPrivs } = p.runAs;
    const groupFlag = groups.length > 0 ? `--groups=${groups.join(",")}` : "--clear-groups";
    const nnp = noNewPrivs ? " --no-new-privs" : "";
    lines.push(`exec ${tools.setpriv} --reuid=${uid} --regid=${gid} ${groupFlag}${nnp} -- "$@"`);
  } else {
    lines.push(`exec "$@"`);
  }
  return lines.join("\n");
}

type Step = { kind: "scratch" | "dir" | "file"; path: string };

/** What creating the mountpoint `target` takes; host-side parts are done here and now. */
async function mountpoint(target: string, dir: boolean, mounted: readonly string[]): Promise<Step[]> {
  const create: Step = { kind: dir ? "dir" : "file", path: target };
  if (mounted.some((m) => target === m || target.startsWith(`${m}/`))) return [create];

  const existing = await stat(target).catch(() => undefined);
  if (existing) {
    if (existing.isDirectory() !== dir) {
      throw new MountError(`${target} exists on the host as a ${dir ? "file" : "directory"}`);
    }
    return [];
  }

  let ancestor = path.posix.dirname(target);
  while (!(await stat(ancestor).catch(() => undefined))) ancestor = path.posix.dirname(ancestor);
  if (ancestor !== "/" && (await readdir(ancestor).catch(() => ["?"])).length === 0) {
    return [{ kind: "scratch", path: ancestor }, create];
  }
  const top = path.posix.join(ancestor, target.slice(ancestor.length).split("/").find(Boolean) ?? "");
  if (top === target && dir) {
    await mkdir(target).catch(ignoreExists);
    return [];
  }
  if (top === target) {
    if (ancestor !== "/dev")
      throw new MountError(`will not create the file ${target} in the host's ${ancestor}`);
    await (await open(target, "a")).close();
    return [];
  }
  await mkdir(top).catch(ignoreExists);
  return [{ kind: "scratch", path: top }, create];
}

function depth(p: string): number {
  return p.split("/").filter(Boolean).length;
}

function ignoreExists(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
}
