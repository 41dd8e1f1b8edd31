// What it takes to start one container as a host process: the checks the kubelet makes first, the
// user to run as, the termination message file, the mounts and the final argv and environment.
import { chmod, chown, mkdir, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { expand, lookupIn } from "./expand.ts";
import { buildPreamble, MountError, type Mount, type RunAs, type Tools } from "./mounts.ts";
import { tektonImageMounts } from "./tekton.ts";
import type { PreparedVolume } from "./volumes.ts";

/** `never-start`: bound, then Pending in ContainerCreating; `image-pull-error`: ErrImagePull. */
export const behaviourAnnotation = "test.scopedstep.dev/kubelet";
// The same behaviours chosen by image, for pods a test does not write itself (e.g. a controller's):
// `kubelet.test/never-start`, `kubelet.test/image-pull-error` (.test is a reserved TLD).
const behaviourImage = /^kubelet\.test\/(never-start|image-pull-error)(?:[:@].*)?$/;

export type Behaviour = { kind: "never-start" } | { kind: "image-pull-error"; container: string } | undefined;

export function behaviourOf(pod: V1Pod): Behaviour {
  const containers = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  const annotation = pod.metadata?.annotations?.[behaviourAnnotation];
  if (annotation === "never-start") return { kind: "never-start" };
  if (annotation === "image-pull-error")
    return { kind: "image-pull-error", container: containers[0]?.name ?? "" };
  for (const c of containers) {
    const kind = behaviourImage.exec(c.image ?? "")?.[1];
    if (kind === "never-start") return { kind };
    if (kind === "image-pull-error") return { kind, container: c.name };
  }
  return undefined;
}

/** A reason the kubelet would not create the container, or undefined. */
export function unstartable(pod: V1Pod, c: V1Container): { reason: string; message: string } | undefined {
  const nonRoot = c.securityContext?.runAsNonRoot ?? pod.spec?.securityContext?.runAsNonRoot;
  if (nonRoot && (runAsFor(pod, c)?.uid ?? 0) === 0) {
    const { name, namespace, uid } = pod.metadata ?? {};
    const which = `pod: "${name ?? ""}_${namespace ?? ""}(${uid ?? ""})", container: ${c.name}`;
    return {
      reason: "CreateContainerConfigError",
      message: `container has runAsNonRoot and image will run as root (${which})`,
    };
  }
  if (!c.command?.length) {
    const message = "test kubelet: the container has no command, and image entrypoints are unknown here";
    return { reason: "CreateContainerError", message };
  }
  return undefined;
}

/** Who the process runs as, when that is not plain root. */
export function runAsFor(pod: V1Pod, c: V1Container): RunAs | undefined {
  const podSc = pod.spec?.securityContext ?? {};
  const sc = c.securityContext ?? {};
  const uid = sc.runAsUser ?? podSc.runAsUser ?? 0;
  const gid = sc.runAsGroup ?? podSc.runAsGroup ?? 0;
  const groups = [
    ...(podSc.fsGroup !== undefined ? [podSc.fsGroup] : []),
    ...(podSc.supplementalGroups ?? []),
  ];
  const noNewPrivs = sc.allowPrivilegeEscalation === false;
  if (uid === 0 && gid === 0 && groups.length === 0 && !noNewPrivs) return undefined;
  return { uid, gid, groups, noNewPrivs };
}

export function hostnameOf(pod: V1Pod): string {
  return (pod.spec?.hostname ?? pod.metadata?.name ?? "").slice(0, 63).replace(/[-.]+$/, "");
}

export interface Launch {
  preamble: string;
  argv: string[];
  env: Record<string, string>;
  /** The host file behind terminationMessagePath. */
  terminationFile: string;
}

// What a container runtime puts in an environment the image does not set.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export async function prepareLaunch(
  pod: V1Pod,
  c: V1Container,
  env: ReadonlyMap<string, string>,
  podDir: string,
  volumes: ReadonlyMap<string, PreparedVolume>,
  tools: Tools,
): Promise<Launch> {
  const runAs = runAsFor(pod, c);
  const lookup = lookupIn(env);
  const containerDir = path.join(podDir, "containers", c.name);
  await mkdir(containerDir, { recursive: true });
  // The kubelet makes the file world-writable, since the container's user is not known in advance.
  const terminationFile = path.join(containerDir, "termination-log");
  await writeFile(terminationFile, "");
  await chmod(terminationFile, 0o666);
  if (runAs) await chown(terminationFile, runAs.uid, runAs.gid);

  const mounts: Mount[] = [];
  for (const vm of c.volumeMounts ?? []) {
    const volume = volumes.get(vm.name);
    if (!volume) throw new MountError(`volume ${vm.name} is not defined in the pod`);
    const sub = vm.subPathExpr ? expand(vm.subPathExpr, lookup) : (vm.subPath ?? "");
    const source = path.resolve(volume.hostPath, sub);
    if (sub && !source.startsWith(`${volume.hostPath}/`)) throw new MountError(`invalid subPath ${sub}`);
    if (sub && !(await stat(source).catch(() => undefined))) {
      // Like the kubelet, create a missing subPath, but only inside the pod's own volumes.
      if (!source.startsWith(`${podDir}/`)) throw new MountError(`subPath ${source} does not exist`);
      await mkdir(source, { recursive: true, mode: 0o777 });
    }
    mounts.push({ target: vm.mountPath, source, readOnly: Boolean(vm.readOnly) || volume.apiData });
  }
  mounts.push(...(await tektonImageMounts(pod, c, podDir)));
  mounts.push({
    target: c.terminationMessagePath ?? "/dev/termination-log",
    source: terminationFile,
    readOnly: false,
  });

  const hostname = hostnameOf(pod);
  const preamble = await buildPreamble(
    { hostname, podDir, mounts, workingDir: c.workingDir ?? "/", ...(runAs ? { runAs } : {}) },
    tools,
  );
  return {
    preamble,
    argv: [...(c.command ?? []), ...(c.args ?? [])].map((a) => expand(a, lookup)),
    env: {
      PATH: defaultPath,
      HOSTNAME: hostname,
      HOME: runAs && runAs.uid !== 0 ? "/" : "/root",
      ...Object.fromEntries(env),
    },
    terminationFile,
  };
}
