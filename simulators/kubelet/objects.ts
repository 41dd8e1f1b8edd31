// What a pod's env and volumes read from the API server: Secrets, ConfigMaps and service account
// tokens. Values are returned as bytes and never logged.
import { readFileSync } from "node:fs";
import { ApiException, type CoreV1Api, type KubeConfig, type V1Pod } from "@kubernetes/client-node";

export type ObjectData = ReadonlyMap<string, Buffer>;

export interface ObjectSource {
  /** The Secret's data, or undefined when it does not exist. */
  secret(namespace: string, name: string): Promise<ObjectData | undefined>;
  /** The ConfigMap's data and binaryData, or undefined when it does not exist. */
  configMap(namespace: string, name: string): Promise<ObjectData | undefined>;
  /** A token for the pod's service account, bound to the pod, through the TokenRequest API. */
  serviceAccountToken(pod: V1Pod, audience: string | undefined, expirationSeconds: number): Promise<string>;
}

// Every namespace of a real cluster holds this ConfigMap (published by kube-controller-manager,
// which does not run here), and the ServiceAccount admission plugin mounts it into every pod that
// automounts a token. When it is missing, the kubelet serves the same content: the cluster's CA.
const rootCaConfigMap = "kube-root-ca.crt";

export function apiObjects(core: CoreV1Api, kc: KubeConfig): ObjectSource {
  return {
    async secret(namespace, name) {
      const secret = await notFoundAsUndefined(core.readNamespacedSecret({ name, namespace }));
      if (!secret) return undefined;
      return new Map(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64")]));
    },
    async configMap(namespace, name) {
      const cm = await notFoundAsUndefined(core.readNamespacedConfigMap({ name, namespace }));
      if (!cm) return name === rootCaConfigMap ? clusterCa(kc) : undefined;
      return new Map([
        ...Object.entries(cm.data ?? {}).map(([k, v]): [string, Buffer] => [k, Buffer.from(v, "utf8")]),
        ...Object.entries(cm.binaryData ?? {}).map(([k, v]): [string, Buffer] => [
          k,
          Buffer.from(v, "base64"),
        ]),
      ]);
    },
    async serviceAccountToken(pod, audience, expirationSeconds) {
      const meta = pod.metadata ?? {};
      const res = await core.createNamespacedServiceAccountToken({
        name: pod.spec?.serviceAccountName ?? "default",
        namespace: meta.namespace ?? "default",
        body: {
          spec: {
            audiences: audience ? [audience] : [],
            expirationSeconds,
            boundObjectRef: { apiVersion: "v1", kind: "Pod", name: meta.name, uid: meta.uid },
          },
        },
      });
      if (!res.status?.token) throw new Error("the TokenRequest returned no token");
      return res.status.token;
    },
  };
}

function clusterCa(kc: KubeConfig): ObjectData | undefined {
  const cluster = kc.getCurrentCluster();
  let pem: Buffer | undefined;
  if (cluster?.caData) pem = Buffer.from(cluster.caData, "base64");
  else if (cluster?.caFile) pem = readFileSync(cluster.caFile);
  return pem ? new Map([["ca.crt", pem]]) : undefined;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof ApiException && err.code === 404;
}

export function isConflict(err: unknown): boolean {
  return err instanceof ApiException && err.code === 409;
}

export async function notFoundAsUndefined<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** A short description of an API error, without response headers or bodies. */
export function describeError(err: unknown): string {
  if (!(err instanceof ApiException)) return err instanceof Error ? err.message : String(err);
  let message = "";
  try {
    const status = JSON.parse(String(err.body)) as { message?: unknown };
    if (typeof status.message === "string") message = status.message;
  } catch {
    // not a Status object: the code alone says enough
  }
  return `HTTP ${err.code}${message ? `: ${message}` : ""}`;
}
