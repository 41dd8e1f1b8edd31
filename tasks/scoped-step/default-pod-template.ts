// Tekton's default-pod-template (its config-defaults ConfigMap) merged under a step's own
// podTemplate as Tekton merges a TaskRun's (MergePodTemplateWithDefault): field by field, the
// step's field wins whole when it sets one. Only the step vocabulary is taken from the default;
// what would give the step the node's namespaces or root is refused, never dropped in silence.
import { RunFailure } from "./failure.ts";
import { checkPodTemplate, podTemplateFields, type PodTemplate } from "./schema.ts";

/** Fields of a Tekton pod template that would share the node's namespaces with the step. */
const hostFields = ["hostNetwork", "hostPID", "hostIPC"] as const;

/** Fields of Tekton's pod template a scoped step does not take from the default (logged by the controller). */
export function notAppliedDefaultFields(template: unknown): string[] {
  if (!isObject(template)) return [];
  return Object.keys(template).filter(
    (k) =>
      !(podTemplateFields as readonly string[]).includes(k) && !(hostFields as readonly string[]).includes(k),
  );
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

export interface MergedPodTemplate {
  template?: PodTemplate;
  /** The fields the merged template took from the default. */
  fromDefault: string[];
}

/** `source` names where the default lives, for messages (e.g. "ConfigMap tekton-pipelines/config-defaults"). */
export function withDefaultPodTemplate(
  own: PodTemplate | undefined,
  defaults: unknown,
  source: string,
): MergedPodTemplate {
  if (!isObject(defaults)) return { ...(own ? { template: own } : {}), fromDefault: [] };
  const refuse = (what: string) =>
    new RunFailure(
      "DefaultPodTemplateNotAllowed",
      `Tekton's default-pod-template (${source}) ${what}, which a scoped step never runs with: ` +
        `the operator must remove it from the default, or the step must set its own podTemplate field`,
    );
  for (const f of hostFields) if (defaults[f] === true) throw refuse(`sets ${f}: true`);
  const merged: Record<string, unknown> = { ...own };
  const fromDefault: string[] = [];
  for (const f of podTemplateFields) {
    if (merged[f] !== undefined || defaults[f] === undefined || defaults[f] === null) continue;
    let value = defaults[f];
    if (f === "securityContext" && isObject(value)) {
      // Every step pod runs as non-root whatever the template says: true changes nothing.
      const { runAsNonRoot, ...rest } = value;
      if (runAsNonRoot === false) throw refuse("sets securityContext.runAsNonRoot: false");
      value = rest;
    }
    merged[f] = value;
    fromDefault.push(f);
  }
  if (fromDefault.length === 0) return { ...(own ? { template: own } : {}), fromDefault };
  const checked = checkPodTemplate(merged, "podTemplate");
  if (!checked.ok) throw refuse(`gives ${checked.message}`);
  return { template: checked.value, fromDefault };
}
