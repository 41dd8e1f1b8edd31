// What a run asks for, read from the API server: the step (params, customSpec or a ScopedStep),
// the scoped-identity trait it names, and what the operator's policy grants for it.
import type { Grant, RunFacts } from "./credentials/types.ts";
import { isRunFailure, RunFailure } from "./failure.ts";
import { withDefaultPodTemplate } from "./default-pod-template.ts";
import { tektonDefaultsNone, type ClusterPort, type PolicyPort, type TektonDefaults } from "./ports.ts";
import { resolveRemote, resolverRef } from "./remote.ts";
import { attemptOf } from "./phase.ts";
import {
  stepFromDefinition,
  stepFromParams,
  stepSource,
  type ResolvedStep,
  type RunContext,
} from "./step.ts";
import { applicationNotFound, resolveTrait } from "./trait.ts";
import type { CustomRun } from "./types.ts";

export interface Resolved {
  step: ResolvedStep;
  grant: Grant;
}

/** A resolver has not answered yet: try again after `retryAfterMs` (or when its request changes). */
export interface Pending {
  pending: string;
  retryAfterMs: number;
}

/**
 * Throws a RunFailure naming what to change when the step, trait or grant cannot be had; Pending
 * while a resolver works on the step.
 */
export async function resolveRun(
  run: CustomRun,
  ports: {
    cluster: ClusterPort;
    policy: PolicyPort;
    now: () => Date;
    tektonDefaults?: () => Promise<TektonDefaults>;
  },
): Promise<Resolved | Pending> {
  const defaults = (await ports.tektonDefaults?.()) ?? tektonDefaultsNone;
  const namespace = run.metadata.namespace ?? "";
  const source = stepSource(run);
  const params = run.spec.params ?? [];
  const ctx: RunContext = {
    workspaces: (run.spec.workspaces ?? []) as RunContext["workspaces"],
    run: { name: run.metadata.name ?? "", namespace, uid: run.metadata.uid ?? "" },
    retryCount: attemptOf(run),
  };
  let step: ResolvedStep;
  const remote = resolverRef(run);
  if (remote) {
    const got = await resolveRemote(run, remote, ports.cluster, ports.now(), defaults.resolutionTimeoutMs);
    if ("pending" in got) return got;
    const where = `ScopedStep ${got.name || "(unnamed)"} from resolver ${remote.resolver}`;
    step = stepFromDefinition(got.spec, params, where, ctx, got.name || ctx.run.name);
  } else if (source.kind === "params") {
    step = stepFromParams(params, ctx);
  } else if (source.kind === "customSpec") {
    step = stepFromDefinition(source.spec, params, "customSpec", ctx);
  } else {
    const definition = await ports.cluster.getScopedStep(namespace, source.name);
    if (!definition) {
      throw new RunFailure(
        "ScopedStepNotFound",
        `ScopedStep ${source.name} not found in namespace ${namespace}; create it there or fix customRef.name`,
      );
    }
    step = stepFromDefinition(definition.spec, params, `ScopedStep ${source.name}`, ctx, source.name);
  }
  const ref = {
    namespace,
    application: step.spec.application,
    component: step.spec.component,
    trait: step.spec.trait,
  };
  const app = await ports.cluster.getApplication(namespace, ref.application);
  if (!app) throw applicationNotFound(ref);
  const trait = resolveTrait(app, ref);
  // The policy caps spec.retries too: every attempt mints a credential of its own.
  const retries = run.spec.retries ?? 0;
  const merged = withDefaultPodTemplate(step.spec.podTemplate, defaults.podTemplate, defaults.source);
  if (merged.template) step = { ...step, spec: { ...step.spec, podTemplate: merged.template } };
  // The policy judges the pod the step will get: the default's fields count as the step's.
  const podTemplateFields = Object.keys(step.spec.podTemplate ?? {});
  try {
    return { step, grant: await ports.policy.decide(namespace, trait, { retries, podTemplateFields }) };
  } catch (err) {
    if (!isRunFailure(err) || err.reason !== "PodTemplateFieldNotAllowed" || !merged.fromDefault.length)
      throw err;
    throw new RunFailure(
      err.reason,
      `${err.message} (${merged.fromDefault.map((f) => `podTemplate.${f}`).join(", ")} come from Tekton's default-pod-template in ${defaults.source})`,
    );
  }
}

/** Facts about the run a credential is minted for; all from the API server, none from the step. */
export function runFacts(run: CustomRun, attempt: number, step: ResolvedStep): RunFacts {
  const l = run.metadata.labels ?? {};
  return {
    namespace: run.metadata.namespace ?? "",
    customRun: run.metadata.name ?? "",
    uid: run.metadata.uid ?? "",
    attempt,
    ...(l["tekton.dev/pipelineRun"] ? { pipelineRun: l["tekton.dev/pipelineRun"] } : {}),
    ...(l["tekton.dev/pipelineTask"] ? { pipelineTask: l["tekton.dev/pipelineTask"] } : {}),
    serviceAccount: run.spec.serviceAccountName ?? "default",
    application: step.spec.application,
    component: step.spec.component,
  };
}
