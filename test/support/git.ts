// A git repository served read-only by `git daemon`, for Tekton's git resolver to clone: on the
// node's address, so the resolvers' pod reaches it.
import { after } from "node:test";
import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { freePorts } from "../../hack/cluster/processes.ts";
import { eventually } from "./wait.ts";

const run = promisify(execFile);

/**
 * Where Tekton's git resolver finds `https://github.com/example/` on the test cluster: the git
 * daemon `gitDaemon(nodeIp, files, examplesGitPort)` starts, through git's `url.<base>.insteadOf`
 * in the resolvers' environment, as an installation without internet access mirrors a git host.
 */
export const examplesGitHost = "https://github.com/example/";
export const examplesGitPort = 9418;
export const examplesGitMirror = (nodeIp: string) => ({
  [examplesGitHost]: `git://${nodeIp}:${examplesGitPort}/`,
});

/**
 * A bare repository `catalog.git` whose `main` holds `files` (path in the repository → content),
 * served by git daemon on `host` (a free port unless `port` is given) until the test file ends.
 * Returns its git:// URL.
 */
export async function gitDaemon(host: string, files: Record<string, string>, port?: number): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "scoped-step-git-"));
  const work = path.join(dir, "work");
  for (const [file, content] of Object.entries(files)) {
    await mkdir(path.join(work, path.dirname(file)), { recursive: true });
    await writeFile(path.join(work, file), content);
  }
  const git = (cwd: string, ...args: string[]) =>
    run("git", ["-c", "user.name=catalog", "-c", "user.email=catalog@example.com", ...args], { cwd });
  await git(work, "init", "-q", "-b", "main");
  await git(work, "add", ".");
  await git(work, "commit", "-q", "-m", "catalog");
  await git(dir, "clone", "-q", "--bare", work, path.join(dir, "catalog.git"));
  const listen = port ?? ((await freePorts(1, host)) as [number])[0];
  // prettier-ignore
  const daemon = spawn("git", ["daemon", "--reuseaddr", "--export-all", `--base-path=${dir}`,
    `--listen=${host}`, `--port=${listen}`, dir], { stdio: "ignore" });
  after(() => daemon.kill());
  await eventually(
    `git daemon on ${host}:${listen}`,
    () =>
      new Promise<true | undefined>((resolve) => {
        if (daemon.exitCode !== null) throw new Error(`git daemon exited (${daemon.exitCode})`);
        const c = net.connect(listen, host, () => (c.end(), resolve(true)));
        c.on("error", () => resolve(undefined));
      }),
  );
  return `git://${host}:${listen}/catalog.git`;
}
