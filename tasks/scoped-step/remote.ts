// A ScopedStep from Tekton's remote resolution: `customRef.resolver` and `customRef.params`, as a
// Tekton taskRef carries them. The run's ResolutionRequest is named from the run and what it asks,
// so a pass after a crash finds the request it made instead of making a second. Pure but for
// `resolveRemote`, which reads and creates the request through the ClusterPort.
import { createHash } from "node:crypto";
import { parseAllDocuments } from "yaml";
import { RunFailure } from "./failure.ts";
import { stepFromTask, taskType } from "./packaged-task.ts";
import { labels, managedByValue, ownedBy, runOwnerReference } from "./pod.ts";
import type { ClusterPort } from "./ports.ts";
import { customTask, type CustomRun, type Param } from "./types.ts";

export const resolutionRequestType = {
  apiVersion: "resolution.tekton.dev/v1beta1",
  kind: "ResolutionRequest",
  plural: "resolutionrequests",
} as const;
/** The label Tekton's resolvers select their requests by. */
export const resolverTypeLabel = "resolution.tekton.dev/type";

export interface ResolutionRequest {
  apiVersion?: string;
  kind?: string;
  metadata?: CustomRun["metadata"];
  spec?: { params?: Param[]; url?: string };
  status?: {
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    /** The resolved document, base64. */
    data?: string;
    annotations?: Record<string, string>;
  };
}

export interface ResolverRef {
  resolver: string;
  params: Param[];
}

/** The resolver a run names, or undefined when it names none. */
export function resolverRef(run: CustomRun): ResolverRef | undefined {
  const ref = run.spec.customRef;
  if (!ref?.resolver && !ref?.params) return undefined;
  if (!ref.resolver) {
    throw new RunFailure(
      "InvalidResolverRef",
      "customRef.params is set but customRef.resolver is not: name the resolver (git, cluster, bundles, hub, http)",
    );
  }
  if (ref.name) {
    throw new RunFailure(
      "InvalidResolverRef",
      `customRef sets both name (${ref.name}) and resolver (${ref.resolver}): name a ScopedStep in this namespace, or ask a resolver, not both`,
    );
  }
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ref.resolver) || ref.resolver.length > 63) {
    throw new RunFailure(
      "InvalidResolverRef",
      `customRef.resolver "${ref.resolver}" is not a resolver name (lower-case letters, digits and -)`,
    );
  }
  return { resolver: ref.resolver, params: ref.params ?? [] };
}

/**
 * Deterministic: the same run asking the same resolver for the same thing gets the same name.
 * The run's UID is part of it, so a run re-created under its old name asks again.
 */
export function resolutionRequestName(run: CustomRun, ref: ResolverRef): string {
  const sorted = [...ref.params].sort((a, b) => a.name.localeCompare(b.name));
  const hash = createHash("sha256")
    .update(`${run.metadata.namespace ?? ""}/${run.metadata.name ?? ""}/${run.metadata.uid ?? ""}`)
    .update(JSON.stringify([ref.resolver, sorted]))
    .digest("hex")
    .slice(0, 32);
  return `${ref.resolver.slice(0, 63 - 33)}-${hash}`;
}

export function buildResolutionRequest(run: CustomRun, ref: ResolverRef): ResolutionRequest {
  return {
    apiVersion: resolutionRequestType.apiVersion,
    kind: resolutionRequestType.kind,
    metadata: {
      name: resolutionRequestName(run, ref),
      namespace: run.metadata.namespace ?? "",
      labels: {
        [resolverTypeLabel]: ref.resolver,
        [labels.managedBy]: managedByValue,
      },
      ownerReferences: [runOwnerReference(run, true)],
    },
    spec: { params: ref.params },
  };
}

/** What the resolver answered: still working, or the resolved step's name and spec. */
export type Remote = { pending: string; retryAfterMs: number } | { name: string; spec: unknown };

/**
 * The ScopedStep a resolver returned for the run. Fails with ResolverFailed (the resolver said
 * no), ResolutionTimedOut (no answer within `timeoutMs` of the request's creation) or
 * NotAScopedStep (the document is something else); InvalidResolverRef for a malformed customRef.
 */
export async function resolveRemote(
  run: CustomRun,
  ref: ResolverRef,
  cluster: ClusterPort,
  now: Date,
  timeoutMs: number,
): Promise<Remote> {
  const want = buildResolutionRequest(run, ref);
  const name = want.metadata?.name ?? "";
  const namespace = run.metadata.namespace ?? "";
  const what = `resolver ${ref.resolver} (ResolutionRequest ${name})`;
  const request = await cluster.getResolutionRequest(namespace, name);
  if (!request) {
    await cluster.createResolutionRequest(want);
    return { pending: `waiting for ${what}`, retryAfterMs: timeoutMs };
  }
  if (!ownedBy(request, run) || request.metadata?.labels?.[resolverTypeLabel] !== ref.resolver) {
    throw new RunFailure(
      "ResolutionRequestNotOwned",
      `ResolutionRequest ${name} exists but was not made for this run; delete it and re-run`,
    );
  }
  // The request's params must be what the run asks: its answer is to that question.
  if (JSON.stringify(request.spec?.params ?? []) !== JSON.stringify(ref.params)) {
    throw new RunFailure(
      "ResolutionRequestNotOwned",
      `ResolutionRequest ${name} asks ${ref.resolver} for something other than customRef.params; delete it and re-run`,
    );
  }
  const done = request.status?.conditions?.find((c) => c.type === "Succeeded");
  if (done?.status === "False") {
    throw new RunFailure(
      "ResolverFailed",
      `${what} failed: ${oneLine(done.message ?? done.reason ?? "no message")}; check customRef.params`,
    );
  }
  if (done?.status !== "True") {
    const created = new Date(request.metadata?.creationTimestamp ?? Number.NaN).getTime();
    const left = Number.isNaN(created) ? timeoutMs : created + timeoutMs - now.getTime();
    if (left <= 0) {
      throw new RunFailure(
        "ResolutionTimedOut",
        `${what} did not answer within ${Math.round(timeoutMs / 1000)} s: check that Tekton's resolvers ` +
          `run and that the ${ref.resolver} resolver is enabled (feature flags in tekton-pipelines-resolvers)`,
      );
    }
    return { pending: `waiting for ${what}`, retryAfterMs: left };
  }
  return scopedStepFrom(request.status?.data ?? "", what);
}

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim().slice(0, 400);

/** The only wrapper Tekton's resolvers pass on: their framework returns tekton.dev kinds alone. */
const wrapper = { apiVersion: "tekton.dev/v1beta1", kind: "CustomRun" } as const;

interface Document {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: { name?: unknown };
  spec?: unknown;
}

/**
 * The spec and name of the one ScopedStep in the resolver's answer: a ScopedStep document, a
 * CustomRun whose spec is only a customSpec holding one, or a Task packaging one
 * (packaged-task.ts). Tekton's resolvers (v1.15.1, ValidateResolvedResource) refuse to return
 * anything but a tekton.dev kind, so a catalog keeps its ScopedSteps wrapped or packaged; the
 * cluster resolver serves Tasks alone of the two. What either document says about its namespace is ignored: the
 * step runs in the run's namespace, as if given inline.
 */
export function scopedStepFrom(data: string, what: string): { name: string; spec: unknown } {
  const notOne = (why: string) =>
    new RunFailure("NotAScopedStep", `${what} returned ${why}; point customRef.params at a ScopedStep`);
  const text = Buffer.from(data, "base64").toString("utf8");
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs) || docs.length !== 1) {
    throw notOne(`${Array.isArray(docs) ? docs.length : 0} YAML documents, not one`);
  }
  const [doc] = docs;
  if (!doc || doc.errors.length) throw notOne("a document that is not valid YAML");
  let obj = doc.toJS() as unknown;
  if (!isDocument(obj)) throw notOne("a document that is not an object");
  let outerName = "";
  if (obj.apiVersion === wrapper.apiVersion && obj.kind === wrapper.kind) {
    const spec = obj.spec;
    const inner = isDocument(spec) ? (spec as { customSpec?: unknown }).customSpec : undefined;
    const others = isDocument(spec) ? Object.keys(spec).filter((k) => k !== "customSpec") : [];
    if (!isDocument(inner) || others.length) {
      throw notOne(
        `a CustomRun that is not a wrapped ScopedStep (its spec must hold customSpec alone${others.length ? `, not ${others.join(", ")}` : ""})`,
      );
    }
    outerName = typeof obj.metadata?.name === "string" ? obj.metadata.name : "";
    obj = inner;
  }
  const { apiVersion, kind, metadata, spec } = obj as Document;
  if (kind === taskType.kind && typeof apiVersion === "string" && apiVersion.startsWith("tekton.dev/")) {
    return {
      name: typeof metadata?.name === "string" ? metadata.name : "",
      spec: stepFromTask(obj as Record<string, unknown>, notOne),
    };
  }
  if (apiVersion !== customTask.apiVersion || kind !== customTask.kind) {
    const said = `${typeof kind === "string" ? kind : "an object without kind"}${typeof apiVersion === "string" ? ` (${apiVersion})` : ""}`;
    throw notOne(`a ${said}, not a ${customTask.kind} (${customTask.apiVersion})`);
  }
  const name = typeof metadata?.name === "string" ? metadata.name : outerName;
  return { name, spec };
}

const isDocument = (v: unknown): v is Document => typeof v === "object" && v !== null && !Array.isArray(v);
