// A whole local cluster: the control plane (etcd, kube-apiserver) and one real node (node.ts),
// inside the namespaces of hack/cluster/netns.sh. The images must be built before entering them
// (images.ts buildImages), since podman and the package lists live outside.
import { startControlPlane, type ControlPlane, type StartOptions } from "./control-plane.ts";
import type { NodeImages } from "./images.ts";
import { nodeNetwork, startNode, type Node } from "./node.ts";

export interface Cluster extends ControlPlane {
  node: Node;
}

export async function startCluster(opts: StartOptions & { images: NodeImages }): Promise<Cluster> {
  const { ip, serviceCidr } = nodeNetwork();
  const cp = await startControlPlane({ ...opts, node: { ip, serviceCidr } });
  try {
    const node = await startNode(cp, { images: opts.images, log: opts.log });
    return {
      ...cp,
      node,
      async stop(stopOpts = {}) {
        await node.stop();
        await cp.stop(stopOpts);
      },
    };
  } catch (err) {
    await cp.stop({ keepDir: true });
    throw err;
  }
}
