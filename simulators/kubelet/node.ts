// The host side of the test kubelet: its Node object, the tools it needs, the service variables.
import { access, constants as fsConstants } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  PatchStrategy,
  VersionApi,
  setHeaderOptions,
  type CoreV1Api,
  type KubeConfig,
} from "@kubernetes/client-node";
import { hostIP } from "./env.ts";
import { isConflict, notFoundAsUndefined } from "./objects.ts";
import type { RunnerContext } from "./pod.ts";

/** Creates the Node if missing and reports it Ready, as a registering kubelet does. */
export async function registerNode(
  kc: KubeConfig,
  core: CoreV1Api,
  name: string,
  logPort: number,
): Promise<void> {
  const version = await kc
    .makeApiClient(VersionApi)
    .getCode()
    .then((v) => v.gitVersion)
    .catch(() => "v0.0.0");
  const resources = {
    cpu: String(os.cpus().length),
    memory: `${Math.floor(os.totalmem() / 1024)}Ki`,
    pods: "110",
  };
  if (!(await notFoundAsUndefined(core.readNode({ name })))) {
    try {
      await core.createNode({
        body: {
          metadata: {
            name,
            labels: {
              "kubernetes.io/hostname": name,
              "kubernetes.io/os": "linux",
              "kubernetes.io/arch": os.arch() === "x64" ? "amd64" : os.arch(),
            },
          },
        },
      });
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
  }
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  const ready = { lastHeartbeatTime: now, lastTransitionTime: now };
  await core.patchNodeStatus(
    {
      name,
      body: {
        status: {
          conditions: [
            {
              type: "Ready",
              status: "True",
              reason: "KubeletReady",
              message: "test kubelet is ready",
              ...ready,
            },
            { type: "MemoryPressure", status: "False", reason: "KubeletHasSufficientMemory", ...ready },
            { type: "DiskPressure", status: "False", reason: "KubeletHasNoDiskPressure", ...ready },
            { type: "PIDPressure", status: "False", reason: "KubeletHasSufficientPID", ...ready },
          ],
          // Where the API server reaches the log endpoint (logs.ts), for pods/log.
          daemonEndpoints: { kubeletEndpoint: { Port: logPort } },
          addresses: [
            { type: "InternalIP", address: hostIP },
            { type: "Hostname", address: name },
          ],
          capacity: resources,
          allocatable: resources,
          nodeInfo: {
            machineID: "",
            systemUUID: "",
            bootID: "",
            kernelVersion: os.release(),
            osImage: "test kubelet host",
            containerRuntimeVersion: "test-kubelet://0.1.0",
            kubeletVersion: version,
            kubeProxyVersion: "",
            operatingSystem: "linux",
            architecture: os.arch() === "x64" ? "amd64" : os.arch(),
          },
        },
      },
    },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
}

/**
 * The `kubernetes` service variables the kubelet gives every container. No service proxy runs
 * here, so they point at the API server's real address.
 */
export function serviceEnv(kc: KubeConfig): Map<string, string> {
  const server = new URL(kc.getCurrentCluster()?.server ?? "https://127.0.0.1:443");
  const host = server.hostname.replace(/^\[|\]$/g, "");
  const port = server.port || "443";
  return new Map([
    ["KUBERNETES_SERVICE_HOST", host],
    ["KUBERNETES_SERVICE_PORT", port],
    ["KUBERNETES_SERVICE_PORT_HTTPS", port],
    ["KUBERNETES_PORT", `tcp://${host}:${port}`],
  ]);
}

export async function findTools(): Promise<RunnerContext["tools"]> {
  const find = async (name: string) => {
    for (const dir of ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
      const candidate = path.join(dir, name);
      if (
        await access(candidate, fsConstants.X_OK).then(
          () => true,
          () => false,
        )
      )
        return candidate;
    }
    throw new Error(`the test kubelet needs ${name} (util-linux / coreutils)`);
  };
  if (process.getuid?.() !== 0)
    throw new Error("the test kubelet needs root, for mount namespaces and setpriv");
  return {
    unshare: await find("unshare"),
    setpriv: await find("setpriv"),
    mount: await find("mount"),
    mkdir: await find("mkdir"),
    sh: await find("sh"),
  };
}
