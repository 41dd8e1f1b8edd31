// The run's finalizer: while it is there, the run cannot go before its credential is revoked.
import type { ClusterPort } from "./ports.ts";
import type { CustomRun } from "./types.ts";

export const finalizer = "scopedstep.dev/cleanup";

export const hasFinalizer = (run: CustomRun): boolean => (run.metadata.finalizers ?? []).includes(finalizer);

/** Adds the finalizer when it is missing; the run comes back with its new resourceVersion. */
export async function ensureFinalizer(
  cluster: ClusterPort,
  run: CustomRun,
): Promise<{ run: CustomRun; added: boolean }> {
  if (hasFinalizer(run)) return { run, added: false };
  return { run: await cluster.setFinalizer(run, finalizer, true), added: true };
}

export async function releaseFinalizer(cluster: ClusterPort, run: CustomRun): Promise<void> {
  if (hasFinalizer(run)) await cluster.setFinalizer(run, finalizer, false);
}
