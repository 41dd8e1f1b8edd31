// A container's environment as the kubelet builds it (makeEnvironmentVariables): envFrom first, then
// env in order, each value expanded against what is defined so far, Secrets and ConfigMaps read at
// start. A missing required Secret, ConfigMap or key is a ConfigError: the container stays Waiting
// with reason CreateContainerConfigError and the kubelet retries.
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { expand, lookupIn } from "./expand.ts";
import type { ObjectSource } from "./objects.ts";

export class ConfigError extends Error {}

/** The address every pod reports: processes share the host's network. */
export const hostIP = "127.0.0.1";

export async function containerEnv(
  pod: V1Pod,
  container: V1Container,
  objects: ObjectSource,
  serviceEnv: ReadonlyMap<string, string>,
): Promise<Map<string, string>> {
  const namespace = pod.metadata?.namespace ?? "default";
  const env = new Map<string, string>();

  for (const from of container.envFrom ?? []) {
    const prefix = from.prefix ?? "";
    let data: ReadonlyMap<string, Buffer> | undefined;
    if (from.secretRef) {
      const name = from.secretRef.name ?? "";
      data = await objects.secret(namespace, name);
      if (!data && !from.secretRef.optional) throw new ConfigError(`secret "${name}" not found`);
    } else if (from.configMapRef) {
      const name = from.configMapRef.name ?? "";
      data = await objects.configMap(namespace, name);
      if (!data && !from.configMapRef.optional) throw new ConfigError(`configmap "${name}" not found`);
    }
    // Like the kubelet, skip keys that cannot be variable names (it records an event instead).
    for (const [key, value] of data ?? []) {
      if (key !== "" && !key.includes("=")) env.set(prefix + key, value.toString("utf8"));
    }
  }

  for (const v of container.env ?? []) {
    if (v.valueFrom === undefined) {
      env.set(v.name, expand(v.value ?? "", lookupIn(env, serviceEnv)));
      continue;
    }
    const { secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef } = v.valueFrom;
    if (secretKeyRef) {
      const name = secretKeyRef.name ?? "";
      const data = await objects.secret(namespace, name);
      const value = data?.get(secretKeyRef.key);
      if (value !== undefined) env.set(v.name, value.toString("utf8"));
      else if (secretKeyRef.optional) continue;
      else if (!data) throw new ConfigError(`secret "${name}" not found`);
      else throw new ConfigError(`couldn't find key ${secretKeyRef.key} in Secret ${namespace}/${name}`);
    } else if (configMapKeyRef) {
      const name = configMapKeyRef.name ?? "";
      const data = await objects.configMap(namespace, name);
      const value = data?.get(configMapKeyRef.key);
      if (value !== undefined) env.set(v.name, value.toString("utf8"));
      else if (configMapKeyRef.optional) continue;
      else if (!data) throw new ConfigError(`configmap "${name}" not found`);
      else
        throw new ConfigError(`couldn't find key ${configMapKeyRef.key} in ConfigMap ${namespace}/${name}`);
    } else if (fieldRef) {
      env.set(v.name, fieldValue(pod, fieldRef.fieldPath, false));
    } else if (resourceFieldRef) {
      throw new ConfigError(`test kubelet: env ${v.name}: resourceFieldRef is not supported`);
    }
  }

  for (const [name, value] of serviceEnv) if (!env.has(name)) env.set(name, value);
  return env;
}

/**
 * The value of a downward API field path. Whole label and annotation maps are only allowed in
 * volumes, formatted like the kubelet's fieldpath.FormatMap.
 */
export function fieldValue(pod: V1Pod, fieldPath: string, inVolume: boolean): string {
  const meta = pod.metadata ?? {};
  const keyed = /^metadata\.(labels|annotations)\['(.*)'\]$/.exec(fieldPath);
  if (keyed) {
    const map = keyed[1] === "labels" ? meta.labels : meta.annotations;
    return map?.[keyed[2] ?? ""] ?? "";
  }
  switch (fieldPath) {
    case "metadata.name":
      return meta.name ?? "";
    case "metadata.namespace":
      return meta.namespace ?? "";
    case "metadata.uid":
      return meta.uid ?? "";
    case "spec.nodeName":
      return pod.spec?.nodeName ?? "";
    case "spec.serviceAccountName":
      return pod.spec?.serviceAccountName ?? "";
    case "status.hostIP":
    case "status.hostIPs":
    case "status.podIP":
    case "status.podIPs":
      return hostIP;
  }
  if (inVolume && (fieldPath === "metadata.labels" || fieldPath === "metadata.annotations")) {
    const map = (fieldPath === "metadata.labels" ? meta.labels : meta.annotations) ?? {};
    return Object.keys(map)
      .sort()
      .map((k) => `${k}=${JSON.stringify(map[k])}`)
      .join("\n");
  }
  throw new ConfigError(`test kubelet: unsupported fieldPath ${fieldPath}`);
}
