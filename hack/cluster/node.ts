// A real node for a local control plane: containerd v2 with Debian's runc and CNI bridge plugin,
// a kubelet, kube-controller-manager, kube-scheduler and kube-proxy, all built from their Go
// modules. It runs only inside the namespaces hack/cluster/netns.sh makes: the node address, the
// pod bridge, iptables rules, mounts and files all go with them.
import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { CoreV1Api } from "@kubernetes/client-node";
import type { ControlPlane } from "./control-plane.ts";
import { importImages, type NodeImages } from "./images.ts";
import { freePorts, startSupervised, stopSupervised, waitFor, type Supervised } from "./processes.ts";
import { buildTool } from "./upstream.ts";

const run = promisify(execFile);

export const nodeName = "scoped-step-node";
export const podCidr = "10.244.0.0/24";

export interface Node {
  name: string;
  ip: string;
  images: NodeImages;
  /** The containerd socket, for `ctr --address`. */
  containerdSocket: string;
  stop(): Promise<void>;
}

/** Where the namespace puts the node (hack/cluster/in-netns.sh); refuses to run anywhere else. */
export function nodeNetwork(): { ip: string; serviceCidr: string; cgroupRoot: string } {
  const { SCOPED_STEP_IN_NETNS, SCOPED_STEP_NODE_IP, SCOPED_STEP_SERVICE_CIDR, SCOPED_STEP_CGROUP_ROOT } =
    process.env;
  if (!SCOPED_STEP_IN_NETNS || !SCOPED_STEP_NODE_IP || !SCOPED_STEP_SERVICE_CIDR || !SCOPED_STEP_CGROUP_ROOT)
    throw new Error("a real node runs only inside hack/cluster/netns.sh (make cluster-up, make test)");
  return {
    ip: SCOPED_STEP_NODE_IP,
    serviceCidr: SCOPED_STEP_SERVICE_CIDR,
    cgroupRoot: SCOPED_STEP_CGROUP_ROOT,
  };
}

function containerdConfig(dir: string, socket: string, pauseImage: string): string {
  const cri = `plugins."io.containerd.cri.v1.runtime"`;
  return `version = 3
root = "${dir}/root"
state = "${dir}/state"
[grpc]
  address = "${socket}"
[ttrpc]
  address = "${socket}.ttrpc"
[metrics]
  address = ""
[${cri}]
  # No CAP_SYS_RESOURCE on these machines: without this every sandbox fails in runc create.
  restrict_oom_score_adj = true
  [${cri}.containerd]
    default_runtime_name = "runc"
    [${cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [${cri}.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [${cri}.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "${dir}/cni"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "${pauseImage}"
`;
}

function cniConfig(dir: string): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: "pods",
    plugins: [
      {
        type: "bridge",
        bridge: "cni0",
        isGateway: true,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: podCidr }]],
          routes: [{ dst: "0.0.0.0/0" }],
          dataDir: path.join(dir, "ipam"),
        },
      },
    ],
  });
}

function kubeletConfig(cp: ControlPlane, dir: string, socket: string, cgroupRoot: string, ip: string) {
  return JSON.stringify({
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    address: ip,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort: 0,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: false },
      x509: { clientCAFile: cp.pki.caCert },
    },
    authorization: { mode: "AlwaysAllow" },
    containerRuntimeEndpoint: `unix://${socket}`,
    cgroupDriver: "cgroupfs",
    cgroupRoot,
    // This machine has cgroup v1 only, which the kubelet refuses by default since 1.35.
    failCgroupV1: false,
    failSwapOn: false,
    podLogsDirectory: path.join(dir, "pod-logs"),
    evictionHard: {
      "memory.available": "100Mi",
      "nodefs.available": "1%",
      "imagefs.available": "1%",
      "nodefs.inodesFree": "1%",
    },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    serializeImagePulls: false,
    resolvConf: "/etc/resolv.conf",
    maxPods: 110,
  });
}

/**
 * Ends every container: runc shims outlive containerd by design, and their mounts keep the node's
 * folder busy. Lists and kills tasks until none is left, since the kubelet may still have been
 * starting one.
 */
async function removeContainers(ctr: string, socket: string): Promise<void> {
  const ctrArgs = ["--address", socket, "-n", "k8s.io"];
  for (let round = 0; round < 5; round++) {
    const { stdout } = await run(ctr, [...ctrArgs, "tasks", "ls", "-q"]).catch(() => ({ stdout: "" }));
    const tasks = stdout.split("\n").filter(Boolean);
    if (!tasks.length) return;
    for (const id of tasks) {
      await run(ctr, [...ctrArgs, "tasks", "kill", "-s", "SIGKILL", id]).catch(() => undefined);
      await run(ctr, [...ctrArgs, "tasks", "delete", "-f", id]).catch(() => undefined);
    }
  }
}

/** The kubelet's bind mount on its root folder and the pods' volumes: innermost first. */
async function unmountUnder(dir: string): Promise<void> {
  const unescape = (p: string) =>
    p.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const mounts = (await readFile("/proc/self/mountinfo", "utf8"))
    .split("\n")
    .map((l) => unescape(l.split(" ")[4] ?? ""))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .reverse();
  for (const m of mounts) await run("umount", ["--lazy", m]).catch(() => undefined);
}

export async function startNode(
  cp: ControlPlane,
  opts: { images: NodeImages; log?: (l: string) => void },
): Promise<Node> {
  const log = opts.log ?? (() => undefined);
  const net = nodeNetwork();
  const dir = path.join(cp.dir, "node");
  for (const sub of ["containerd/cni", "kubelet", "pod-logs"])
    await mkdir(path.join(dir, sub), { recursive: true });
  const kube = await buildTool("kubernetes");
  const containerdDir = await buildTool("containerd");
  const socket = path.join(dir, "containerd", "containerd.sock");
  const ctr = path.join(containerdDir, "ctr");
  const started: Supervised[] = [];
  const stopAll = async () => {
    const [containerd, ...rest] = started;
    for (const p of rest.reverse()) await stopSupervised(p);
    if (containerd) {
      await removeContainers(ctr, socket);
      await stopSupervised(containerd);
    }
    await unmountUnder(dir);
  };
  try {
    await writeFile(
      path.join(dir, "containerd", "config.toml"),
      containerdConfig(path.join(dir, "containerd"), socket, opts.images.pause),
    );
    await writeFile(
      path.join(dir, "containerd", "cni", "10-pods.conflist"),
      cniConfig(path.join(dir, "containerd")),
    );
    log("starting containerd");
    // The runc shim is found on PATH, next to containerd.
    const containerd = startSupervised(
      "containerd",
      "/usr/bin/env",
      [
        `PATH=${containerdDir}:${process.env.PATH ?? ""}`,
        path.join(containerdDir, "containerd"),
        `--config=${path.join(dir, "containerd", "config.toml")}`,
      ],
      cp.dir,
    );
    started.push(containerd);
    await waitFor(
      "containerd",
      async () => (await run(ctr, ["--address", socket, "version"])).stdout.includes("Server"),
      { alive: containerd },
    );
    await importImages(ctr, socket, opts.images, log);

    const [schedulerPort, proxyHealth, proxyMetrics] = (await freePorts(3)) as [number, number, number];
    const kubeconfig = cp.kubeconfigPath;
    await writeFile(path.join(dir, "kubelet.json"), kubeletConfig(cp, dir, socket, net.cgroupRoot, net.ip));
    log("starting kubelet, kube-controller-manager, kube-scheduler, kube-proxy");
    // prettier-ignore
    const commands: [string, string[]][] = [
      ["kubelet", [
        `--config=${path.join(dir, "kubelet.json")}`, `--kubeconfig=${kubeconfig}`,
        `--root-dir=${path.join(dir, "kubelet")}`, `--hostname-override=${nodeName}`, `--node-ip=${net.ip}`, "--v=1",
      ]],
      ["kube-controller-manager", [
        `--kubeconfig=${kubeconfig}`, "--leader-elect=false", "--secure-port=0",
        `--service-account-private-key-file=${cp.pki.serviceAccountKey}`, `--root-ca-file=${cp.pki.caCert}`,
        `--cluster-signing-cert-file=${cp.pki.caCert}`, `--cluster-signing-key-file=${cp.pki.caKey}`,
        "--use-service-account-credentials=false", `--service-cluster-ip-range=${net.serviceCidr}`, "--v=1",
      ]],
      ["kube-scheduler", [
        `--kubeconfig=${kubeconfig}`, "--leader-elect=false",
        "--bind-address=127.0.0.1", `--secure-port=${schedulerPort}`, "--v=1",
      ]],
      ["kube-proxy", [
        `--kubeconfig=${kubeconfig}`, `--hostname-override=${nodeName}`, "--proxy-mode=iptables",
        `--cluster-cidr=${podCidr}`, `--bind-address=${net.ip}`,
        `--healthz-bind-address=127.0.0.1:${proxyHealth}`, `--metrics-bind-address=127.0.0.1:${proxyMetrics}`,
        // Leave the kernel-wide conntrack settings as they are.
        "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0s", "--conntrack-tcp-timeout-close-wait=0s",
        "--v=1",
      ]],
    ];
    for (const [name, args] of commands) started.push(startSupervised(name, kube, [name, ...args], cp.dir));

    const core = cp.kubeConfig.makeApiClient(CoreV1Api);
    await waitFor(
      `node ${nodeName} to be Ready`,
      async () => {
        const node = await core.readNode({ name: nodeName });
        return node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
      },
      { intervalMs: 500, alive: started[1] },
    );
    await waitFor(
      "the default ServiceAccount",
      async () => Boolean(await core.readNamespacedServiceAccount({ name: "default", namespace: "default" })),
      { intervalMs: 500, alive: started[2] },
    );
    log(`node ${nodeName} Ready at ${net.ip}`);
    return { name: nodeName, ip: net.ip, images: opts.images, containerdSocket: socket, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
