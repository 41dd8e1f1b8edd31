// The lifecycle's ClusterPort on the Kubernetes API. Runs and step pods are read from the
// engine's informer caches (which see this process's own writes at once); everything else is read
// live, and only when a pass needs it.
import type { V1Pod, V1Secret } from "@kubernetes/client-node";
import { labels, managedByValue, boundedName } from "../tasks/scoped-step/pod.ts";
import { ConflictError, type ClusterPort } from "../tasks/scoped-step/ports.ts";
import type { Application, CustomRun, CustomRunStatus } from "../tasks/scoped-step/types.ts";
import { resolutionRequestType, type ResolutionRequest } from "../tasks/scoped-step/remote.ts";
import type { Store } from "./engine.ts";
import type { KubernetesObject } from "./informer.ts";
import { resourcePath, statusCode, type Kube } from "./kube-client.ts";

export const customRunType = { apiVersion: "tekton.dev/v1beta1", kind: "CustomRun", plural: "customruns" };
export const podType = { apiVersion: "v1", kind: "Pod", plural: "pods" };
export const secretType = { apiVersion: "v1", plural: "secrets" };
const scopedSteps = { apiVersion: "scopedstep.dev/v1alpha1", plural: "scopedsteps" };
const applications = { apiVersion: "core.oam.dev/v1beta1", plural: "applications" };

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

/** The caches the port reads: the engine's, once it runs. */
export interface ClusterCaches {
  runs: () => Store<CustomRun>;
  pods: () => Store<KubernetesObject>;
  resolutionRequests: () => Store<KubernetesObject>;
}

export function kubeClusterPort(kube: Kube, caches: ClusterCaches): ClusterPort {
  const runPath = (run: CustomRun, sub?: string) =>
    resourcePath(customRunType, run.metadata.namespace ?? "", run.metadata.name ?? "", sub);
  const runSelector = (runName: string) =>
    `${labels.managedBy}=${managedByValue},${labels.customRun}=${boundedName(runName, 63)}`;

  return {
    getRun: (namespace, name) => Promise.resolve(caches.runs().get(namespace, name)),

    async writeStatus(run, status: CustomRunStatus) {
      try {
        const written = await kube.request<CustomRun>("PUT", runPath(run, "status"), {
          body: { ...run, status },
        });
        caches.runs().wrote(written);
        return written;
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
        const written = await kube.request<CustomRun>("PATCH", runPath(run), {
          body: { metadata: { finalizers, resourceVersion: run.metadata.resourceVersion } },
          mergePatch: true,
        });
        caches.runs().wrote(written);
        return written;
      } catch (err) {
        if (statusCode(err) === 409)
          throw new ConflictError(`finalizers of CustomRun ${run.metadata.name ?? ""}`);
        if (statusCode(err) === 404 && !present) return run;
        throw err;
      }
    },

    getApplication: (namespace, name) =>
      orUndefined(kube.request<Application>("GET", resourcePath(applications, namespace, name))),

    getScopedStep: (namespace, name) =>
      orUndefined(kube.request<{ spec?: unknown }>("GET", resourcePath(scopedSteps, namespace, name))),

    getResolutionRequest: (namespace, name) =>
      Promise.resolve(caches.resolutionRequests().get(namespace, name)),

    async createResolutionRequest(request: ResolutionRequest) {
      const path = resourcePath(resolutionRequestType, request.metadata?.namespace ?? "");
      try {
        const created = await kube.request<ResolutionRequest>("POST", path, { body: request });
        caches.resolutionRequests().wrote(created);
        return true;
      } catch (err) {
        if (statusCode(err) === 409) return false;
        throw err;
      }
    },

    async getPod(namespace, name, opts = {}) {
      if (!opts.live) return caches.pods().get(namespace, name);
      return orUndefined(kube.request<V1Pod>("GET", resourcePath(podType, namespace, name)));
    },

    podLogTail: (namespace, name, container, lines) =>
      orUndefined(
        kube.request<string>("GET", `${resourcePath(podType, namespace, name)}/log`, {
          query: { container, tailLines: lines, limitBytes: 16384 },
          text: true,
        }),
      ),

    async listRunPods(namespace, runName) {
      const list = await kube.request<{ items: V1Pod[] }>("GET", resourcePath(podType, namespace), {
        query: { labelSelector: runSelector(runName) },
      });
      return list.items;
    },

    async createPod(pod: V1Pod) {
      const path = resourcePath(podType, pod.metadata?.namespace ?? "");
      try {
        caches.pods().wrote(await kube.request<V1Pod>("POST", path, { body: pod }));
        return true;
      } catch (err) {
        if (statusCode(err) === 409) return false;
        throw err;
      }
    },

    async deletePod(namespace, name) {
      await ignoring([404], kube.request("DELETE", resourcePath(podType, namespace, name)));
    },

    createSecret: (secret: V1Secret) =>
      ignoring(
        [409],
        kube.request("POST", resourcePath(secretType, secret.metadata?.namespace ?? ""), { body: secret }),
      ),

    getSecret: (namespace, name) =>
      orUndefined(kube.request<V1Secret>("GET", resourcePath(secretType, namespace, name))),

    async deleteSecret(namespace, name) {
      await ignoring([404], kube.request("DELETE", resourcePath(secretType, namespace, name)));
    },
  };
}
