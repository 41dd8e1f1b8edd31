// What the scoped-step lifecycle needs from the outside world. The engine implements these on
// the Kubernetes API (controller/kube.ts); the lifecycle never touches a client directly.
import type { V1Pod, V1Secret } from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { CredentialProvider, Grant } from "./credentials/types.ts";
import type { LedgerEntry } from "./ledger.ts";
import type { ResolutionRequest } from "./remote.ts";
import type { ResolvedTrait } from "./trait.ts";
import type { Application, CustomRun, CustomRunStatus } from "./types.ts";

/** Optimistic concurrency lost: someone else wrote the object; re-read and try again. */
export class ConflictError extends Error {
  constructor(what: string) {
    super(`conflict writing ${what}`);
    this.name = "ConflictError";
  }
}

export interface ClusterPort {
  /** The run as last seen (a cache that already holds this process's own writes). */
  getRun(namespace: string, name: string): Promise<CustomRun | undefined>;
  /** Replaces status through the status subresource, guarded by the run's resourceVersion. */
  writeStatus(run: CustomRun, status: CustomRunStatus): Promise<CustomRun>;
  setFinalizer(run: CustomRun, finalizer: string, present: boolean): Promise<CustomRun>;
  getApplication(namespace: string, name: string): Promise<Application | undefined>;
  /** The spec of a ScopedStep object, or undefined when there is none by that name. */
  getScopedStep(namespace: string, name: string): Promise<{ spec?: unknown } | undefined>;
  /** The ResolutionRequest as last seen (a cache of the requests the controller labels). */
  getResolutionRequest(namespace: string, name: string): Promise<ResolutionRequest | undefined>;
  /** Creates the request; false when one by that name already exists. */
  createResolutionRequest(request: ResolutionRequest): Promise<boolean>;
  /**
   * The step pod as last seen (a cache of the pods the controller labels, which holds its own
   * creations at once); `live` asks the API server instead, for a pod of any labels.
   */
  getPod(namespace: string, name: string, opts?: { live?: boolean }): Promise<V1Pod | undefined>;
  listRunPods(namespace: string, runName: string): Promise<V1Pod[]>;
  /** The last lines a container of the pod wrote; undefined when the pod is gone. */
  podLogTail(namespace: string, name: string, container: string, lines: number): Promise<string | undefined>;
  /** Creates the pod; false when one by that name already exists. */
  createPod(pod: V1Pod): Promise<boolean>;
  deletePod(namespace: string, name: string): Promise<void>;
  createSecret(secret: V1Secret): Promise<boolean>;
  getSecret(namespace: string, name: string): Promise<V1Secret | undefined>;
  deleteSecret(namespace: string, name: string): Promise<void>;
}

/**
 * The credential ledger in the controller's own namespace (see ledger.ts). Every write is
 * confirmed by the API server before it returns: a mint never happens without its entry.
 */
export interface LedgerPort {
  /** Creates the entry, or moves an existing entry's notAfter later (never earlier). */
  recordIntent(entry: LedgerEntry): Promise<void>;
  /** Merges a change into the entry of a run attempt; nothing to do when there is no entry. */
  update(
    uid: string,
    attempt: number,
    change: Partial<Pick<LedgerEntry, "state" | "expiresAt" | "secretDigest" | "revokedAt" | "revocation">>,
  ): Promise<void>;
  /** The entry of a run attempt, if there is one. */
  get(uid: string, attempt: number): Promise<LedgerEntry | undefined>;
  /** Every entry, or those of one run (by namespace and name, any UID). */
  list(run?: { namespace: string; name: string }): Promise<LedgerEntry[]>;
  remove(entry: LedgerEntry): Promise<void>;
}

export interface EventPort {
  emit(run: CustomRun, type: "Normal" | "Warning", reason: string, message: string): void;
}

/** The operator's policy: grants the trait for the namespace, or throws a RunFailure naming the rule. */
export interface PolicyPort {
  /**
   * `run.retries` is the run's spec.retries, which the policy caps; `run.podTemplateFields` the
   * podTemplate fields its step sets, which the policy may forbid.
   */
  decide(
    namespace: string,
    trait: ResolvedTrait,
    run?: { retries?: number; podTemplateFields?: string[] },
  ): Promise<Grant>;
}

export interface RunMetricsPort {
  runStarted(): void;
  runFinished(outcome: "succeeded" | "failed", reason: string): void;
  podRunSeconds(seconds: number): void;
  credentialMinted(provider: string, seconds: number): void;
  credentialRevoked(provider: string, seconds: number): void;
  credentialFailed(provider: string, reason: string): void;
}

/** What Tekton's installation sets for every TaskRun (its config-defaults ConfigMap). */
export interface TektonDefaults {
  /** default-pod-template, as parsed YAML; undefined when none is set. */
  podTemplate?: unknown;
  /** default-maximum-resolution-timeout: how long a resolver may take (Tekton's default 1m). */
  resolutionTimeoutMs: number;
  /** Where they come from, for messages: "ConfigMap tekton-pipelines/config-defaults". */
  source: string;
}

export const tektonDefaultsNone: TektonDefaults = { resolutionTimeoutMs: 60_000, source: "none" };

export interface TaskContext {
  cluster: ClusterPort;
  events: EventPort;
  credentials: CredentialProvider;
  ledger: LedgerPort;
  policy: PolicyPort;
  log: Logger;
  now: () => Date;
  metrics?: RunMetricsPort;
  /**
   * Named points between the lifecycle's side effects. The crash-safety tests make the process
   * kill itself at one of them; in production it does nothing.
   */
  failpoint?: (name: Failpoint) => void;
  /** Tekton's config-defaults, once first read; none when unset. */
  tektonDefaults?: () => Promise<TektonDefaults>;
  /** Used when spec.timeout is not set; Tekton's own default is 60 minutes. */
  defaultTimeoutMs: number;
  /** The image of Tekton's entrypoint the step pod's `prepare` runs; default that of Tekton's release. */
  entrypointImage?: string;
}

export const failpoints = [
  "after-finalizer",
  "after-intent",
  "after-mint",
  "after-secret",
  "after-pod",
  "after-failure",
  "after-revoke",
  "after-terminal",
] as const;
export type Failpoint = (typeof failpoints)[number];

export interface Next {
  /** Reconcile this run again after this many milliseconds (timers such as timeouts). */
  requeueAfterMs?: number;
}
