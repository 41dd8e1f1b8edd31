// A pod's volumes, set up on the host before any container starts, as the kubelet's volume manager
// does: emptyDir as a world-writable directory, Secret, ConfigMap, downward API and projected
// volumes as files written in the kubelet's atomic layout (`..data` symlinked to a timestamped
// directory), hostPath as the host's own path. A missing required object is a VolumeError: the pod
// stays in ContainerCreating and the kubelet retries.
import { randomBytes } from "node:crypto";
import {
  chmod,
  lchown,
  lstat,
  mkdir,
  readdir,
  readlink,
  rm,
  stat,
  symlink,
  rename,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import type { V1KeyToPath, V1Pod, V1Volume, V1VolumeProjection } from "@kubernetes/client-node";
import { ConfigError, fieldValue } from "./env.ts";
import { describeError, type ObjectSource } from "./objects.ts";

export class VolumeError extends Error {}

export interface PreparedVolume {
  name: string;
  /** Where the volume's content lives on the host. */
  hostPath: string;
  /** Secret, ConfigMap, downward API and projected volumes are always mounted read-only. */
  apiData: boolean;
}

interface PayloadFile {
  path: string;
  data: Buffer;
  mode: number;
}

export async function prepareVolumes(
  pod: V1Pod,
  podDir: string,
  objects: ObjectSource,
): Promise<Map<string, PreparedVolume>> {
  const fsGroup = pod.spec?.securityContext?.fsGroup;
  const prepared = new Map<string, PreparedVolume>();
  for (const volume of pod.spec?.volumes ?? []) {
    prepared.set(volume.name, await prepareVolume(pod, volume, podDir, objects, fsGroup));
  }
  return prepared;
}

async function prepareVolume(
  pod: V1Pod,
  volume: V1Volume,
  podDir: string,
  objects: ObjectSource,
  fsGroup: number | undefined,
): Promise<PreparedVolume> {
  const { name } = volume;
  if (volume.emptyDir) {
    const dir = path.join(podDir, "volumes", "empty-dir", name);
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o777);
    if (fsGroup !== undefined) await applyFsGroup(dir, fsGroup, false);
    return { name, hostPath: dir, apiData: false };
  }
  if (volume.hostPath) {
    const exists = await stat(volume.hostPath.path).then(
      () => true,
      () => false,
    );
    // Creating host paths (type DirectoryOrCreate) would write to the host: not done here.
    if (!exists) throw new VolumeError(`hostPath ${volume.hostPath.path} does not exist on the test host`);
    return { name, hostPath: volume.hostPath.path, apiData: false };
  }
  const files = await apiDataFiles(pod, volume, objects);
  const dir = path.join(podDir, "volumes", "api-data", name);
  await rm(dir, { recursive: true, force: true });
  await writeAtomicPayload(dir, files);
  if (fsGroup !== undefined) await applyFsGroup(dir, fsGroup, true);
  return { name, hostPath: dir, apiData: true };
}

async function apiDataFiles(pod: V1Pod, volume: V1Volume, objects: ObjectSource): Promise<PayloadFile[]> {
  const failed = (why: string) =>
    new VolumeError(`MountVolume.SetUp failed for volume "${volume.name}": ${why}`);
  const namespace = pod.metadata?.namespace ?? "default";
  const fromObject = async (kind: "secret" | "configmap", source: ObjectRef, defaultMode: number) => {
    const name = source.name ?? source.secretName ?? "";
    const data =
      kind === "secret" ? await objects.secret(namespace, name) : await objects.configMap(namespace, name);
    if (!data) {
      if (source.optional) return [];
      throw failed(`${kind} "${name}" not found`);
    }
    const items: V1KeyToPath[] = source.items ?? [...data.keys()].map((key) => ({ key, path: key }));
    const files: PayloadFile[] = [];
    for (const item of items) {
      const value = data.get(item.key);
      if (value === undefined) {
        if (source.optional) continue;
        throw failed(`${kind} ${namespace}/${name} has no key ${item.key}`);
      }
      files.push({ path: item.path, data: value, mode: item.mode ?? defaultMode });
    }
    return files;
  };
  const downward = (
    items: { path: string; fieldRef?: { fieldPath: string }; mode?: number }[],
    mode: number,
  ) =>
    items.map((item) => {
      if (!item.fieldRef) throw failed(`item ${item.path}: only fieldRef is supported by the test kubelet`);
      try {
        const data = Buffer.from(fieldValue(pod, item.fieldRef.fieldPath, true));
        return { path: item.path, data, mode: item.mode ?? mode };
      } catch (err) {
        throw failed(err instanceof ConfigError ? err.message : String(err));
      }
    });

  if (volume.secret) return fromObject("secret", volume.secret, volume.secret.defaultMode ?? 0o644);
  if (volume.configMap)
    return fromObject("configmap", volume.configMap, volume.configMap.defaultMode ?? 0o644);
  if (volume.downwardAPI)
    return downward(volume.downwardAPI.items ?? [], volume.downwardAPI.defaultMode ?? 0o644);
  if (volume.projected) {
    const mode = volume.projected.defaultMode ?? 0o644;
    const files: PayloadFile[] = [];
    for (const source of volume.projected.sources ?? []) {
      files.push(...(await projection(source, mode)));
    }
    return files;
  }
  throw failed("the test kubelet supports emptyDir, hostPath, secret, configMap, downwardAPI and projected");

  async function projection(source: V1VolumeProjection, mode: number): Promise<PayloadFile[]> {
    if (source.secret) return fromObject("secret", source.secret, mode);
    if (source.configMap) return fromObject("configmap", source.configMap, mode);
    if (source.downwardAPI) return downward(source.downwardAPI.items ?? [], mode);
    if (source.serviceAccountToken) {
      const { audience, expirationSeconds, path: tokenPath } = source.serviceAccountToken;
      try {
        const token = await objects.serviceAccountToken(pod, audience, expirationSeconds ?? 3600);
        return [{ path: tokenPath, data: Buffer.from(token), mode }];
      } catch (err) {
        throw failed(`service account token: ${describeError(err)}`);
      }
    }
    throw failed("projected source not supported by the test kubelet");
  }
}

interface ObjectRef {
  name?: string;
  secretName?: string;
  optional?: boolean;
  items?: V1KeyToPath[];
}

/**
 * The kubelet's AtomicWriter layout: the files live in `..<timestamp>`, `..data` points there, and
 * each top-level entry is a symlink through `..data`, so a reader never sees a half-written set.
 */
async function writeAtomicPayload(dir: string, files: PayloadFile[]): Promise<void> {
  const previous = await readlink(path.join(dir, "..data")).catch(() => undefined);
  let stamp = `..${new Date().toISOString().replace(/[-:]/g, "_").replace("T", "_").replace("Z", "")}`;
  if (stamp === previous) stamp += `_${randomBytes(3).toString("hex")}`;
  const dataDir = path.join(dir, stamp);
  await mkdir(dataDir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  const topLevel = new Set<string>();
  for (const file of files) {
    const target = path.join(dataDir, file.path);
    if (!target.startsWith(dataDir + path.sep)) throw new VolumeError(`invalid item path ${file.path}`);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
    await writeFile(target, file.data);
    await chmod(target, file.mode);
    topLevel.add(file.path.split("/")[0] ?? file.path);
  }
  await symlink(stamp, path.join(dir, "..data_tmp"));
  await rename(path.join(dir, "..data_tmp"), path.join(dir, "..data"));
  for (const name of topLevel) {
    await symlink(path.join("..data", name), path.join(dir, name)).catch(ignoreExists);
  }
  if (previous) await rm(path.join(dir, previous), { recursive: true, force: true });
}

function ignoreExists(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
}

/**
 * What the kubelet does when the pod object changes: rewrite its downward API volumes (labels and
 * annotations may have changed) in place, atomically, so running containers see the new content.
 * Tekton's controller, for one, releases a pod's first step through an annotation read this way.
 */
export async function refreshDownwardVolumes(
  pod: V1Pod,
  prepared: ReadonlyMap<string, PreparedVolume>,
  objects: ObjectSource,
): Promise<void> {
  const fsGroup = pod.spec?.securityContext?.fsGroup;
  for (const volume of pod.spec?.volumes ?? []) {
    const hostPath = prepared.get(volume.name)?.hostPath;
    if (!volume.downwardAPI || !hostPath) continue;
    await writeAtomicPayload(hostPath, await apiDataFiles(pod, volume, objects));
    if (fsGroup !== undefined) await applyFsGroup(hostPath, fsGroup, true);
  }
}

/** What the kubelet does for `fsGroup`: group ownership and group access, setgid directories. */
async function applyFsGroup(dir: string, gid: number, readOnly: boolean): Promise<void> {
  const st = await lstat(dir);
  if (st.isSymbolicLink()) return;
  await lchown(dir, st.uid, gid);
  const mask = (readOnly ? 0o440 : 0o660) | (st.isDirectory() ? 0o2110 : 0);
  await chmod(dir, (st.mode & 0o7777) | mask);
  if (st.isDirectory()) {
    for (const entry of await readdir(dir)) await applyFsGroup(path.join(dir, entry), gid, readOnly);
  }
}
