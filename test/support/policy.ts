// ScopedStepPolicy objects for tests, the demo and the benchmarks.
import type { CustomObjectsApi } from "@kubernetes/client-node";

/** Creates the cluster-scoped ScopedStepPolicy `name` with this spec. */
export async function createScopedStepPolicy(
  objects: CustomObjectsApi,
  name: string,
  spec: Record<string, unknown>,
): Promise<void> {
  await objects.createClusterCustomObject({
    group: "scopedstep.dev",
    version: "v1alpha1",
    plural: "scopedsteppolicies",
    body: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStepPolicy", metadata: { name }, spec },
  });
}
