// Everything a cluster with a real node needs that comes from outside: Debian packages (apt), Go
// modules (the module proxy) and the images built from them. Runs before entering the cluster's
// namespaces, which have no way out.
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { buildControllerImage } from "./controller-image.ts";
import { buildImages, type NodeImages } from "./images.ts";
import { buildTool, hackDir } from "./upstream.ts";

const run = promisify(execFile);

export async function prepareNode(log: (l: string) => void = () => undefined): Promise<NodeImages> {
  const packages = run(path.join(hackDir, "cluster", "ensure-packages.sh"), { maxBuffer: 16 << 20 });
  packages.child.stderr?.pipe(process.stderr);
  await packages;
  for (const tool of ["etcd", "kube-apiserver", "kubernetes", "containerd"] as const) await buildTool(tool);
  const images = await buildImages(log);
  const controller = await buildControllerImage(log);
  return { ...images, controller: controller.ref, archives: [...images.archives, controller.archive] };
}
