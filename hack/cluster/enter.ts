// Runs the calling script inside namespaces of its own (netns.sh), where a cluster with a real node
// can start. Outside them, it first fetches and builds what such a node needs (the only steps that
// reach outside: packages, Go modules, images), then starts the same script again in there and
// exits with its code. Inside, it returns the images that were built.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { NodeImages } from "./images.ts";
import { prepareNode } from "./prepare.ts";

/** Runs a command with this terminal, passing SIGINT and SIGTERM on; resolves to its exit code. */
export function runChild(command: string, argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const child = spawn(command, argv, { stdio: "inherit", env });
  const stop = () => child.kill("SIGTERM");
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return new Promise<number>((resolve) => child.once("exit", (c, sig) => resolve(c ?? (sig ? 1 : 0))));
}

/**
 * `node`: build the node's images first (a script that needs a control plane only skips that).
 * Returns, inside the namespaces, the images if they were built; never returns outside them.
 */
export async function inOwnNamespaces(opts: {
  node: boolean;
  log?: (line: string) => void;
}): Promise<NodeImages | undefined> {
  if (process.env.SCOPED_STEP_IN_NETNS) {
    const images = process.env.SCOPED_STEP_NODE_IMAGES;
    return images ? (JSON.parse(images) as NodeImages) : undefined;
  }
  const images = opts.node ? await prepareNode(opts.log) : undefined;
  const netns = fileURLToPath(new URL("netns.sh", import.meta.url));
  const code = await runChild(
    netns,
    ["--watch", String(process.pid), process.execPath, ...process.argv.slice(1)],
    { ...process.env, SCOPED_STEP_NODE_IMAGES: images ? JSON.stringify(images) : "" },
  );
  process.exit(code);
}
