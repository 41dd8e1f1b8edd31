// The lifecycle's ClusterPort on the Kubernetes API, through @kubernetes/client-node.
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Pod,
  type V1Secret,
} from "@kubernetes/client-node";
import { labels, managedByValue, boundedName } from "../tasks/scoped-step/pod.ts";
import { ConflictError, type ClusterPort } from "../tasks/scoped-step/ports.ts";
import type { Application, CustomRun, CustomRunStatus } from "../tasks/scoped-step/types.ts";

export const customRuns = { group: "tekton.dev", version: "v1beta1", plural: "customruns" } as const;
export const customRunType = { apiVersion: "tekton.dev/v1beta1", kind: "CustomRun", plural: "customruns" };
export const podType = { apiVersion: "v1", kind: "Pod", plural: "pods" };
export const scopedSteps = { group: "scopedstep.dev", version: "v1alpha1", plural: "scopedsteps" } as const;
export const applications = { group: "core.oam.dev", version: "v1beta1", plural: "applications" } as const;

export const statusCode = (err: unknown): number | undefined =>
  err instanceof ApiException ? err.code : undefined;

/** The API server's own words for a failed request (its Status message), else the error's first line. */
export function apiErrorMessage(err: unknown): string {
  if (err instanceof ApiException) {
    try {
      const body: unknown = typeof err.body === "string" ? JSON.parse(err.body) : err.body;
      if (body && typeof body === "object" && "message" in body && typeof body.message === "string") {
        return `${body.message} (HTTP ${err.code})`;
      }
    } catch {
      // not a Status object
    }
    return `HTTP ${err.code}`;
  }
  return err instanceof Error ? (err.message.split("\n")[0] ?? err.message) : String(err);
}

async function orUndefined<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (statusCode(err) === 404) return undefined;
    throw err;
  }
}

async function ignoring(codes: number[], p: Promise<unknown>): Promise<boolean> {
  try {
    await p;
    return true;
  } catch (err) {
    if (codes.includes(statusCode(err) ?? 0)) return false;
    throw err;
  }
}

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

export function kubeClusterPort(kc: KubeConfig): ClusterPort {
  const objects = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const runSelector = (runName: string) =>
    `${labels.managedBy}=${managedByValue},${labels.customRun}=${boundedName(runName, 63)}`;

  return {
    getRun: (namespace, name) =>
      orUndefined(
        objects.getNamespacedCustomObject({ ...customRuns, namespace, name }) as Promise<CustomRun>,
      ),

    async writeStatus(run, status: CustomRunStatus) {
      try {
        return (await objects.replaceNamespacedCustomObjectStatus({
          ...customRuns,
          namespace: run.metadata.namespace ?? "",
          name: run.metadata.name ?? "",
          body: { ...run, status },
        })) as CustomRun;
      } catch (err) {
        if (statusCode(err) === 409)
          throw new ConflictError(`status of CustomRun ${run.metadata.name ?? ""}`);
        throw err;
      }
    },

    async setFinalizer(run, finalizer, present) {
      const current = run.metadata.finalizers ?? [];
      const finalizers = present
        ? [...new Set([...current, finalizer])]
        : current.filter((f) => f !== finalizer);
      try {
        return (await objects.patchNamespacedCustomObject(
          {
            ...customRuns,
            namespace: run.metadata.namespace ?? "",
            name: run.metadata.name ?? "",
            body: { metadata: { finalizers, resourceVersion: run.metadata.resourceVersion } },
          },
          mergePatch,
        )) as CustomRun;
      } catch (err) {
        if (statusCode(err) === 409)
          throw new ConflictError(`finalizers of CustomRun ${run.metadata.name ?? ""}`);
        if (statusCode(err) === 404 && !present) return run;
        throw err;
      }
    },

    getApplication: (namespace, name) =>
      orUndefined(
        objects.getNamespacedCustomObject({ ...applications, namespace, name }) as Promise<Application>,
      ),

    getScopedStep: (namespace, name) =>
      orUndefined(
        objects.getNamespacedCustomObject({ ...scopedSteps, namespace, name }) as Promise<{ spec?: unknown }>,
      ),

    getPod: (namespace, name) => orUndefined(core.readNamespacedPod({ namespace, name })),

    async listRunPods(namespace, runName) {
      return (await core.listNamespacedPod({ namespace, labelSelector: runSelector(runName) })).items;
    },

    createPod: (pod: V1Pod) =>
      ignoring([409], core.createNamespacedPod({ namespace: pod.metadata?.namespace ?? "", body: pod })),

    async deletePod(namespace, name) {
      await ignoring([404], core.deleteNamespacedPod({ namespace, name }));
    },

    createSecret: (secret: V1Secret) =>
      ignoring(
        [409],
        core.createNamespacedSecret({ namespace: secret.metadata?.namespace ?? "", body: secret }),
      ),

    getSecret: (namespace, name) => orUndefined(core.readNamespacedSecret({ namespace, name })),

    async deleteSecret(namespace, name) {
      await ignoring([404], core.deleteNamespacedSecret({ namespace, name }));
    },
  };
}
