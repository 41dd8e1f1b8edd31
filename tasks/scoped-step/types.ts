// The shapes of the Tekton and KubeVela objects this task type reads and writes.
import type { V1ObjectMeta } from "@kubernetes/client-node";

export const customTask = { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" } as const;

export type ParamValue = string | string[] | Record<string, string>;

export interface Param {
  name: string;
  value: ParamValue;
}

export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface RunResult {
  name: string;
  value: string;
}

export interface CustomRunStatus {
  conditions?: Condition[];
  startTime?: string;
  completionTime?: string;
  observedGeneration?: number;
  results?: RunResult[];
  retriesStatus?: CustomRunStatus[];
  extraFields?: Record<string, unknown>;
}

export interface CustomRunSpec {
  /** `resolver` and `params` ask Tekton's remote resolution for the ScopedStep, as a taskRef does. */
  customRef?: { apiVersion?: string; kind?: string; name?: string; resolver?: string; params?: Param[] };
  customSpec?: { apiVersion?: string; kind?: string; metadata?: Record<string, unknown>; spec?: unknown };
  params?: Param[];
  serviceAccountName?: string;
  timeout?: string;
  retries?: number;
  status?: string;
  statusMessage?: string;
  workspaces?: unknown[];
}

export interface CustomRun {
  apiVersion: "tekton.dev/v1beta1";
  kind: "CustomRun";
  metadata: V1ObjectMeta;
  spec: CustomRunSpec;
  status?: CustomRunStatus;
}

export interface ApplicationTrait {
  type: string;
  properties?: Record<string, unknown>;
}

export interface ApplicationComponent {
  name: string;
  type?: string;
  properties?: Record<string, unknown>;
  traits?: ApplicationTrait[];
}

export interface Application {
  apiVersion: string;
  kind: "Application";
  metadata: V1ObjectMeta;
  spec: { components?: ApplicationComponent[] };
}

/** True when the CustomRun names this task type (by customRef or customSpec). */
export function isScopedStepRun(run: Pick<CustomRun, "spec">): boolean {
  const ref = run.spec.customRef ?? run.spec.customSpec;
  return ref?.apiVersion === customTask.apiVersion && ref.kind === customTask.kind;
}

export function runKey(run: { metadata: V1ObjectMeta }): string {
  return `${run.metadata.namespace ?? ""}/${run.metadata.name ?? ""}`;
}
