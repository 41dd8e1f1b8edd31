// What the test kubelet knows of Tekton's TaskRun pods: their init containers run binaries of
// Tekton's entrypoint and workingdirinit images, which do not exist here (images are ignored and
// commands are the host's). For pods Tekton's controller made, those binaries are provided by
// tekton-entrypoint.sh, bind-mounted where the images have them; `prepare` then copies it to
// /tekton/bin/entrypoint, which every step container runs, as with the real image.
//
// Scoped-step's step pods get the real thing: Tekton's entrypoint built from the pinned module
// (the binary the node's entrypoint image holds, hack/cluster/images.ts), bind-mounted at
// /ko-app/entrypoint, so `prepare` copies it and the step runs it exactly as on a node.
import { chmod, copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { buildTool } from "../../hack/cluster/upstream.ts";
import type { Mount } from "./mounts.ts";

const emulation = fileURLToPath(new URL("./tekton-entrypoint.sh", import.meta.url));
/** Binaries of Tekton's images, at their paths in those images. */
const imageBinaries = new Set(["/ko-app/entrypoint", "/ko-app/workingdirinit"]);

export function isTektonPod(pod: V1Pod): boolean {
  return pod.metadata?.labels?.["app.kubernetes.io/managed-by"] === "tekton-pipelines";
}

function isStepPod(pod: V1Pod): boolean {
  return pod.metadata?.labels?.["app.kubernetes.io/managed-by"] === "scoped-step";
}

let tektonBinaries: Promise<string> | undefined;

/** The mount that puts the emulated binary where the container's command expects it, if any. */
export async function tektonImageMounts(pod: V1Pod, c: V1Container, podDir: string): Promise<Mount[]> {
  const binary = c.command?.[0] ?? "";
  if (isStepPod(pod) && binary === "/ko-app/entrypoint") {
    tektonBinaries ??= buildTool("tekton-images");
    return [{ target: binary, source: path.join(await tektonBinaries, "entrypoint"), readOnly: true }];
  }
  if (!isTektonPod(pod) || !imageBinaries.has(binary)) return [];
  const source = path.join(podDir, "tekton-images", path.basename(binary));
  await mkdir(path.dirname(source), { recursive: true });
  await copyFile(emulation, source);
  await chmod(source, 0o755);
  return [{ target: binary, source, readOnly: true }];
}
