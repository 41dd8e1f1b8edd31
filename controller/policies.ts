// The operator's ScopedStepPolicy objects, kept current by a list+watch informer so edits apply to
// the next decision without a restart. Each object is validated as it arrives: an invalid one is
// left out of matching (and marked Ready=False in its status), so a bad edit can only deny, never
// widen access. Namespace labels, for namespaceSelector, are read on demand with a short cache.
import type { V1Namespace } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { Informer, type KubernetesObject } from "./informer.ts";
import { resourcePath, statusCode, type Kube } from "./kube-client.ts";
import {
  evaluatePolicy,
  requireGrant,
  type PolicyDecision,
  type PolicyGrant,
} from "../tasks/scoped-step/policy.ts";
import {
  checkPolicy,
  policyApi,
  type PolicyStatus,
  type ScopedStepPolicy,
} from "../tasks/scoped-step/policy-schema.ts";
import type { TraitProperties } from "../tasks/scoped-step/schema.ts";
import { describeRef, traitBaseName, type ResolvedTrait } from "../tasks/scoped-step/trait.ts";

export interface PolicyStoreOptions {
  kube: Kube;
  log: Logger;
  /** How often every policy is re-judged (and its status re-checked); default 5 minutes. */
  resyncMs?: number;
  /** How long a namespace's labels are trusted before being read again; default 10 s. */
  namespaceLabelsTtlMs?: number;
  /** Write status.conditions[Ready] and observedGeneration; default true. */
  writeStatus?: boolean;
  /** How long decide() waits for the first list before giving up (a transient error); default 10 s. */
  syncTimeoutMs?: number;
}

type Condition = NonNullable<PolicyStatus["conditions"]>[number];

/** Always present on a namespace since Kubernetes 1.21; added here too so selectors on it work anywhere. */
const nameLabel = "kubernetes.io/metadata.name";
const policies = { apiVersion: `${policyApi.group}/${policyApi.version}`, plural: policyApi.plural };
const namespaces = { apiVersion: "v1", plural: "namespaces" };

export class PolicyStore {
  private readonly informer: Informer<KubernetesObject>;
  private readonly log: Logger;
  private readonly opts: PolicyStoreOptions;
  private readonly valid = new Map<string, ScopedStepPolicy>();
  /** Invalid policies naming a namespace in spec.namespaces -> their problem, for PolicyNotFound. */
  private readonly invalid = new Map<string, { namespaces: string[]; problem: string }>();
  /** name -> resourceVersion last judged, so a resync does not log the same verdict again. */
  private readonly judged = new Map<string, string>();
  private readonly labels = new Map<string, { labels: Record<string, string>; expires: number }>();

  constructor(opts: PolicyStoreOptions) {
    this.opts = opts;
    this.log = opts.log.child({ informer: "scopedsteppolicies" });
    this.informer = new Informer<KubernetesObject>({
      kube: opts.kube,
      log: this.log,
      resyncMs: opts.resyncMs ?? 300_000,
      path: resourcePath(policies),
      onChange: (obj, kind) => {
        this.observe(obj, kind);
      },
    });
  }

  /** True once the first list has been loaded. */
  get synced(): boolean {
    return this.informer.synced;
  }

  start(): void {
    this.informer.start();
  }

  stop(): void {
    this.informer.stop();
  }

  /** The valid policies, defaults filled; invalid ones are left out. */
  policies(): ScopedStepPolicy[] {
    return [...this.valid.values()];
  }

  /**
   * A namespace's labels, plus kubernetes.io/metadata.name; cached for namespaceLabelsTtlMs unless
   * `fresh`.
   */
  async namespaceLabels(name: string, fresh = false): Promise<Record<string, string>> {
    const cached = this.labels.get(name);
    if (!fresh && cached && cached.expires > Date.now()) return { ...cached.labels };
    let labels: Record<string, string>;
    try {
      const ns = await this.opts.kube.request<V1Namespace>("GET", resourcePath(namespaces, undefined, name));
      labels = { ...ns.metadata?.labels, [nameLabel]: name };
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
      labels = { [nameLabel]: name };
    }
    this.labels.set(name, { labels, expires: Date.now() + (this.opts.namespaceLabelsTtlMs ?? 10_000) });
    return { ...labels };
  }

  /**
   * The policy decision for a trait in a namespace. Throws a plain (transient) error when the
   * policies have not been loaded yet, so the run is retried rather than failed.
   */
  async decide(
    namespace: string,
    trait: TraitProperties,
    traitRef: string,
    retries = 0,
    podTemplateFields: string[] = [],
  ): Promise<PolicyDecision> {
    await this.whenSynced();
    const policies = this.policies();
    const needsLabels = policies.some(
      (p) => p.spec.namespaceSelector && (p.spec.namespaces ?? [namespace]).includes(namespace),
    );
    const evaluate = (namespaceLabels: Record<string, string>) =>
      evaluatePolicy(policies, { namespace, namespaceLabels, trait, traitRef, retries, podTemplateFields });
    let decision = evaluate(needsLabels ? await this.namespaceLabels(namespace) : { [nameLabel]: namespace });
    // Cached labels only ever speed up a grant: a denial is decided again on the labels the
    // namespace has now, so a label an operator has just set counts at once.
    if (!decision.allowed && needsLabels) decision = evaluate(await this.namespaceLabels(namespace, true));
    if (decision.allowed || decision.reason !== "PolicyNotFound") return decision;
    // The operator meant to select this namespace, but the policy is ignored: say why.
    const ignored = [...this.invalid].filter(([, p]) => p.namespaces.includes(namespace));
    if (ignored.length === 0) return decision;
    const [name, { problem }] = ignored[0] ?? ["", { problem: "" }];
    return {
      ...decision,
      message: `${decision.message} (policy ${name} names it but is invalid and ignored: ${problem})`,
    };
  }

  /**
   * For the run lifecycle: the grant together with the trait it is for, or a thrown RunFailure
   * naming the missing rule.
   */
  async grantFor(namespace: string, trait: ResolvedTrait): Promise<PolicyGrant & { trait: ResolvedTrait }> {
    const where = `the ${traitBaseName(trait.type)} trait on ${describeRef(trait.ref)}`;
    return { ...requireGrant(await this.decide(namespace, trait.properties, where)), trait };
  }

  private async whenSynced(): Promise<void> {
    const deadline = Date.now() + (this.opts.syncTimeoutMs ?? 10_000);
    while (!this.synced) {
      if (Date.now() > deadline) {
        throw new Error(
          "ScopedStepPolicy objects are not loaded yet: is the scopedsteppolicies.scopedstep.dev CRD " +
            "installed, and may the controller list and watch it?",
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private observe(obj: KubernetesObject, kind: "added" | "modified" | "deleted" | "resync"): void {
    const name = obj.metadata?.name ?? "";
    if (kind === "deleted") {
      if (this.valid.delete(name)) this.log.info({ policy: name }, "policy removed");
      this.invalid.delete(name);
      this.judged.delete(name);
      return;
    }
    const checked = checkPolicy(obj);
    const version = obj.metadata?.resourceVersion ?? "";
    const news = this.judged.get(name) !== version;
    this.judged.set(name, version);
    if (checked.ok) {
      this.invalid.delete(name);
      this.valid.set(name, checked.value);
      if (news) this.log.info({ policy: name, resourceVersion: version }, "policy loaded");
    } else {
      this.valid.delete(name);
      const listed = (obj as { spec?: { namespaces?: unknown } }).spec?.namespaces;
      const namespaces = Array.isArray(listed)
        ? listed.filter((n): n is string => typeof n === "string")
        : [];
      this.invalid.set(name, { namespaces, problem: checked.message });
      if (news) {
        this.log.warn(
          { policy: name, resourceVersion: version, problem: checked.message },
          "invalid policy ignored: it allows nothing until fixed",
        );
      }
    }
    if (this.opts.writeStatus ?? true) {
      void this.writeReady(obj, checked.ok ? undefined : checked.message);
    }
  }

  /** Sets the Ready condition when it differs from what the object already says. */
  private async writeReady(obj: KubernetesObject, problem: string | undefined): Promise<void> {
    const name = obj.metadata?.name ?? "";
    const generation = obj.metadata?.generation;
    const status = (obj as { status?: PolicyStatus }).status ?? {};
    const others = (status.conditions ?? []).filter((c) => c.type !== "Ready");
    const current = status.conditions?.find((c) => c.type === "Ready");
    const want: Condition = problem
      ? {
          type: "Ready",
          status: "False",
          reason: "InvalidSpec",
          message: `${problem}; the policy is ignored and allows nothing`,
        }
      : { type: "Ready", status: "True", reason: "Valid", message: "the policy is in use" };
    if (
      status.observedGeneration === generation &&
      current?.observedGeneration === generation &&
      current?.status === want.status &&
      current.reason === want.reason &&
      current.message === want.message
    ) {
      return;
    }
    const ready: Condition = {
      ...want,
      ...(generation === undefined ? {} : { observedGeneration: generation }),
      lastTransitionTime:
        current?.status === want.status && current.lastTransitionTime
          ? current.lastTransitionTime
          : new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    };
    try {
      await this.opts.kube.request("PATCH", resourcePath(policies, undefined, name, "status"), {
        body: { status: { observedGeneration: generation, conditions: [...others, ready] } },
        mergePatch: true,
      });
    } catch (err) {
      // The next resync tries again; the decision does not depend on status.
      if (statusCode(err) !== 404) this.log.warn({ err, policy: name }, "could not write policy status");
    }
  }
}
