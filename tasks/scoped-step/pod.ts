// The step pod for one attempt of a run. Pure: the same run and attempt always give the same pod.
import type {
  V1EnvVar,
  V1ObjectMeta,
  V1OwnerReference,
  V1Affinity,
  V1Pod,
  V1PodSpec,
  V1Volume,
  V1VolumeMount,
} from "@kubernetes/client-node";
import { credentialsMountPath, type CredentialMount } from "./credentials/types.ts";
import { boundedName } from "./names.ts";
import type { ResolvedStep } from "./step.ts";
import { resultsDir } from "./step.ts";
import type { CustomRun } from "./types.ts";
import {
  binDir,
  defaultEntrypointImage,
  entrypointCommand,
  prepareContainer,
  runDir,
  scriptFileContent,
  scriptsDir,
  stepsDir,
  terminationMessagePath,
} from "./entrypoint.ts";

export const labels = {
  managedBy: "app.kubernetes.io/managed-by",
  customRun: "tekton.dev/customRun",
  attempt: "scopedstep.dev/attempt",
} as const;
export const managedByValue = "scoped-step";
export const annotations = {
  results: "scopedstep.dev/declared-results",
  arrayResults: "scopedstep.dev/array-results",
  /** JSON: each object result's name and the keys it declares. */
  objectResults: "scopedstep.dev/object-results",
  source: "scopedstep.dev/step-source",
  /** The step's script, which the downward API puts in /tekton/scripts/step. */
  script: "scopedstep.dev/script",
} as const;
export const stepUid = 65532;

export { boundedName };

export function podName(runName: string, attempt: number): string {
  return boundedName(attempt === 0 ? `${runName}-pod` : `${runName}-pod-retry${attempt}`, 63);
}

export function credentialSecretName(runName: string, attempt: number): string {
  return boundedName(`${runName}-credentials-${attempt}`, 253);
}

/** Marks an object as the run's own: only objects carrying it are ever adopted, mounted or read. */
export function runOwnerReference(run: CustomRun, blockOwnerDeletion = false): V1OwnerReference {
  return {
    ...(blockOwnerDeletion ? { blockOwnerDeletion } : {}),
    apiVersion: run.apiVersion,
    kind: run.kind,
    name: run.metadata.name ?? "",
    uid: run.metadata.uid ?? "",
    controller: true,
  };
}

/** True when the object's controller is this run (by UID): anything else is not the run's to use. */
export function ownedBy(obj: { metadata?: V1ObjectMeta }, run: CustomRun): boolean {
  const owner = obj.metadata?.ownerReferences?.find((r) => r.controller === true);
  return owner !== undefined && owner.uid === run.metadata.uid && owner.kind === run.kind;
}

function objectResults(results: NonNullable<ResolvedStep["spec"]["results"]>): Record<string, string> {
  const objects = results.filter((r) => r.type === "object");
  if (!objects.length) return {};
  return {
    [annotations.objectResults]: JSON.stringify(
      Object.fromEntries(objects.map((r) => [r.name, Object.keys(r.properties ?? {})])),
    ),
  };
}

/** The step's pod template, but for securityContext and affinity, which are merged with ours. */
function placement(template: ResolvedStep["spec"]["podTemplate"]): Partial<V1PodSpec> {
  const { securityContext: _own, affinity: _merged, ...rest } = template ?? {};
  return rest as Partial<V1PodSpec>;
}

/** The annotation Tekton puts on a run whose workspaces live on one node's claim. */
export const affinityAssistantAnnotation = "pipeline.tekton.dev/affinity-assistant";

/** An affinity as the step's pod template gives it: a plain object, passed on as written. */
interface Affinity {
  podAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: unknown[]; [k: string]: unknown };
  [k: string]: unknown;
}

/**
 * Beside the PipelineRun's affinity assistant, as Tekton places a TaskRun pod that shares its
 * claims: required pod affinity to the assistant's pod, on the same node.
 */
function withAffinityAssistant(template: Affinity | undefined, run: CustomRun): Pick<V1PodSpec, "affinity"> {
  const name = run.metadata.annotations?.[affinityAssistantAnnotation];
  if (!name) return template ? { affinity: template as V1Affinity } : {};
  const beside = {
    labelSelector: {
      matchLabels: {
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "affinity-assistant",
      },
    },
    topologyKey: "kubernetes.io/hostname",
  };
  const affinity: Affinity = {
    ...template,
    podAffinity: {
      ...template?.podAffinity,
      requiredDuringSchedulingIgnoredDuringExecution: [
        ...(template?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []),
        beside,
      ],
    },
  };
  return { affinity: affinity as V1Affinity };
}

// Labels Tekton's pipeline controller puts on a CustomRun, passed on to the step pod.
const inheritedLabel = /^(tekton\.dev|app\.kubernetes\.io)\//;

export interface PodInputs {
  run: CustomRun;
  step: ResolvedStep;
  attempt: number;
  credential?: { secretName: string; mount: CredentialMount };
  /** The image of Tekton's entrypoint; default the one of Tekton's release. */
  entrypointImage?: string;
}

const hardened = () => ({
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  privileged: false,
  capabilities: { drop: ["ALL"] },
});

export function buildStepPod({ run, step, attempt, credential, entrypointImage }: PodInputs): V1Pod {
  const name = run.metadata.name ?? "";
  const spec = step.spec;
  const env: V1EnvVar[] = (spec.env ?? []).map((e) => ({ name: e.name, value: e.value ?? "" }));
  const volumes: V1Volume[] = [
    { name: "tekton-internal-bin", emptyDir: {} },
    { name: "tekton-internal-steps", emptyDir: {} },
    { name: "tekton-internal-run", emptyDir: {} },
    { name: "tekton-results", emptyDir: {} },
    { name: "tmp", emptyDir: {} },
    { name: "workspace", emptyDir: {} },
  ];
  // The entrypoint and the script are read-only to the step: it runs them, it cannot replace them.
  const mounts: V1VolumeMount[] = [
    { name: "tekton-internal-bin", mountPath: binDir, readOnly: true },
    { name: "tekton-internal-steps", mountPath: stepsDir, readOnly: true },
    { name: "tekton-internal-run", mountPath: runDir },
    { name: "tekton-results", mountPath: resultsDir },
    { name: "tmp", mountPath: "/tmp" },
    { name: "workspace", mountPath: "/workspace" },
  ];
  if (spec.script) {
    const fieldPath = `metadata.annotations['${annotations.script}']`;
    volumes.push({
      name: "tekton-scripts",
      downwardAPI: { items: [{ path: "step", fieldRef: { fieldPath }, mode: 0o555 }] },
    });
    mounts.push({ name: "tekton-scripts", mountPath: scriptsDir, readOnly: true });
  }
  volumes.push(...step.workspaces.volumes);
  mounts.push(...step.workspaces.mounts);
  if (credential) {
    for (const [envName, key] of Object.entries(credential.mount.secretEnv)) {
      env.push({ name: envName, valueFrom: { secretKeyRef: { name: credential.secretName, key } } });
    }
    for (const [envName, value] of Object.entries(credential.mount.env)) env.push({ name: envName, value });
    const files = Object.entries(credential.mount.files);
    if (files.length > 0) {
      volumes.push({
        name: "scoped-step-credentials",
        secret: {
          secretName: credential.secretName,
          defaultMode: 0o440,
          items: files.map(([key, path]) => ({ key, path })),
        },
      });
      mounts.push({ name: "scoped-step-credentials", mountPath: credentialsMountPath, readOnly: true });
    }
  }
  const inherited = Object.fromEntries(
    Object.entries(run.metadata.labels ?? {}).filter(([k]) => inheritedLabel.test(k)),
  );
  const results = spec.results ?? [];
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: podName(name, attempt),
      namespace: run.metadata.namespace ?? "",
      labels: {
        ...inherited,
        [labels.managedBy]: managedByValue,
        [labels.customRun]: boundedName(name, 63),
        [labels.attempt]: String(attempt),
      },
      annotations: {
        [annotations.results]: results.map((r) => r.name).join(","),
        [annotations.arrayResults]: results
          .filter((r) => r.type === "array")
          .map((r) => r.name)
          .join(","),
        ...objectResults(results),
        [annotations.source]: step.source,
        ...(spec.script ? { [annotations.script]: scriptFileContent(spec.script) } : {}),
      },
      ownerReferences: [runOwnerReference(run, true)],
    },
    spec: {
      restartPolicy: "Never",
      serviceAccountName: run.spec.serviceAccountName ?? "default",
      automountServiceAccountToken: spec.automountServiceAccountToken ?? false,
      enableServiceLinks: false,
      ...placement(spec.podTemplate),
      securityContext: {
        runAsUser: stepUid,
        runAsGroup: stepUid,
        fsGroup: stepUid,
        seccompProfile: { type: "RuntimeDefault" },
        ...spec.podTemplate?.securityContext,
        // Whatever the template says, never root.
        runAsNonRoot: true,
      },
      ...withAffinityAssistant(spec.podTemplate?.affinity, run),
      volumes,
      initContainers: [prepareContainer(entrypointImage ?? defaultEntrypointImage, hardened())],
      containers: [
        {
          name: "step",
          image: spec.image,
          ...entrypointCommand(
            spec,
            results.map((r) => r.name),
          ),
          ...(spec.workingDir ? { workingDir: spec.workingDir } : {}),
          env,
          resources: {
            ...(spec.resources?.requests ? { requests: spec.resources.requests } : {}),
            ...(spec.resources?.limits ? { limits: spec.resources.limits } : {}),
          },
          volumeMounts: mounts,
          terminationMessagePath,
          terminationMessagePolicy: "FallbackToLogsOnError",
          securityContext: hardened(),
        },
      ],
    },
  };
}
