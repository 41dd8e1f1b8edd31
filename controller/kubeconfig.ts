// @kubernetes/client-node 2.0.1 builds a new undici Agent for every API request, so every call
// pays a fresh TCP connection and TLS handshake (measured: about 60% of the controller's CPU under
// load). This keeps one Agent per distinct TLS configuration and reuses its connections.
import { createHash } from "node:crypto";
import type { AgentOptions } from "node:https";
import { KubeConfig, type Cluster } from "@kubernetes/client-node";

type CreateDispatcher = (cluster: Cluster | null, options: AgentOptions) => unknown;

export function pooledConnections(kc: KubeConfig): KubeConfig {
  const target = kc as unknown as { createDispatcher: CreateDispatcher };
  const original = target.createDispatcher.bind(kc);
  const agents = new Map<string, unknown>();
  target.createDispatcher = (cluster, options) => {
    const hash = createHash("sha256").update(
      `${cluster?.server ?? ""}|${cluster?.proxyUrl ?? ""}|${String(options.rejectUnauthorized)}|${options.servername ?? ""}`,
    );
    for (const part of [options.ca, options.cert, options.key, options.pfx]) {
      for (const item of Array.isArray(part) ? part : [part])
        if (item !== undefined) hash.update(item as string | Buffer).update("|");
    }
    const key = hash.digest("hex");
    let agent = agents.get(key);
    if (agent === undefined) {
      agent = original(cluster, options);
      agents.set(key, agent);
    }
    return agent;
  };
  return kc;
}

/** The kubeconfig from the usual places (KUBECONFIG, ~/.kube/config, in-cluster), pooled. */
export function loadKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  return pooledConnections(kc);
}
