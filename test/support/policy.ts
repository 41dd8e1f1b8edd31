// ScopedStepPolicy objects for tests, the demo and the benchmarks.
import type { CustomObjectsApi } from "@kubernetes/client-node";
import { eventually } from "./wait.ts";

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

/**
 * Waits until the controller has taken the policy into use (its Ready condition is True for the
 * current generation): a run created sooner may be judged without it, as having no policy at all.
 * Every controller on the cluster writes that condition; with `log`, the output of the one that
 * will judge the runs, also until that one has logged loading it.
 */
export async function policyInUse(
  objects: CustomObjectsApi,
  name: string,
  log?: () => string,
): Promise<void> {
  if (log) {
    await eventually(
      `the controller to load ScopedStepPolicy ${name}`,
      () =>
        Promise.resolve(
          log()
            .split("\n")
            .some((l) => l.includes('"msg":"policy loaded"') && l.includes(`"policy":"${name}"`)) ||
            undefined,
        ),
      { timeoutMs: 60_000 },
    );
  }
  await eventually(
    `ScopedStepPolicy ${name} to be in use`,
    async () => {
      const policy = (await objects.getClusterCustomObject({
        group: "scopedstep.dev",
        version: "v1alpha1",
        plural: "scopedsteppolicies",
        name,
      })) as {
        metadata: { generation?: number };
        status?: { observedGeneration?: number; conditions?: { type: string; status: string }[] };
      };
      const ready = policy.status?.conditions?.find((c) => c.type === "Ready");
      return ready?.status === "True" && policy.status?.observedGeneration === policy.metadata.generation
        ? true
        : undefined;
    },
    { timeoutMs: 60_000 },
  );
}
