// What the controller keeps in memory of the objects it watches: only scoped-step CustomRuns, and of
// each only what the lifecycle reads. A run that has settled (finished, revoked, finalizer
// released) is not kept at all. A finished run whose credential is revoked but whose finalizer is
// still on keeps a tombstone (who it is, that it ended, its credential record and finalizer) for
// the pass that releases it; its spec, results and history are dropped. Step pods keep their
// identity, the annotations that declare results, the step image and their status. Pure.
import type { V1Pod } from "@kubernetes/client-node";
import { hasFinalizer } from "./finalizer.ts";
import { annotations } from "./pod.ts";
import { isDone, stepState } from "./status.ts";
import { customTask, isScopedStepRun, type CustomRun } from "./types.ts";

/** The metadata any cached object keeps: identity, ownership, deletion and finalizers. */
function meta<M extends CustomRun["metadata"]>(m: M | undefined): M {
  const out: Record<string, unknown> = {};
  const fields: (keyof M)[] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "finalizers",
    "ownerReferences",
  ];
  for (const f of fields) if (m?.[f] !== undefined) out[f as string] = m[f];
  return out as M;
}

/**
 * A run that needs no more passes: finished, its credential (if any) revoked, our finalizer
 * released, not being deleted. The controller forgets it; the ledger sweep still reads the API
 * server for the runs it revokes for, so nothing depends on the run being cached.
 */
export function settledRun(run: CustomRun): boolean {
  if (!isScopedStepRun(run) || run.metadata.deletionTimestamp || hasFinalizer(run)) return false;
  return endedAndRevoked(run);
}

/** Finished, and its credential (if any) revoked: nothing is left but releasing the run. */
function endedAndRevoked(run: CustomRun): boolean {
  const credential = stepState(run.status ?? {}).credential;
  return isDone(run.status) && (!credential || credential.state === "revoked");
}

/** The cached form of a CustomRun, or undefined when it is not a scoped-step run. */
export function keepRun(run: CustomRun): CustomRun | undefined {
  if (!run.spec || !isScopedStepRun(run)) return undefined;
  if (!endedAndRevoked(run)) {
    const { managedFields: _managed, ...metadata } = run.metadata;
    return { ...run, metadata };
  }
  const status = run.status ?? {};
  const succeeded = status.conditions?.find((c) => c.type === "Succeeded");
  return {
    apiVersion: run.apiVersion,
    kind: run.kind,
    metadata: meta(run.metadata),
    spec: { customRef: { ...customTask } },
    status: {
      ...(succeeded ? { conditions: [succeeded] } : {}),
      // Only how many attempts there were: finalize looks for one credential Secret per attempt.
      ...(status.retriesStatus ? { retriesStatus: status.retriesStatus.map(() => ({})) } : {}),
      ...(status.extraFields ? { extraFields: status.extraFields } : {}),
    },
  };
}

/** The cached form of a step pod: what podOutcome, ownedBy and stepRunSeconds read. */
export function keepPod(pod: V1Pod): V1Pod {
  const status = pod.status ?? {};
  const step = status.containerStatuses?.find((c) => c.name === "step");
  const image = pod.spec?.containers.find((c) => c.name === "step")?.image ?? pod.spec?.containers[0]?.image;
  // Why a pod waits for a node: the run's message says it.
  const unscheduled = status.conditions?.find((c) => c.type === "PodScheduled" && c.status === "False");
  const declared = Object.entries(pod.metadata?.annotations ?? {}).filter(
    ([k]) => k === annotations.results || k === annotations.arrayResults || k === annotations.objectResults,
  );
  return {
    metadata: Object.assign(
      meta(pod.metadata ?? {}),
      declared.length ? { annotations: Object.fromEntries(declared) } : {},
    ),
    ...(image ? { spec: { containers: [{ name: "step", image }] } } : {}),
    status: {
      ...(status.phase ? { phase: status.phase } : {}),
      ...(status.reason ? { reason: status.reason } : {}),
      ...(status.message ? { message: status.message } : {}),
      ...(step ? { containerStatuses: [step] } : {}),
      ...(unscheduled ? { conditions: [unscheduled] } : {}),
    },
  };
}
