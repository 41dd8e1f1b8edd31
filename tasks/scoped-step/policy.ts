// Whether a step's trait is allowed by the operator's ScopedStepPolicy objects. Pure: the caller
// supplies the (validated) policies and the namespace's labels; controller/policies.ts does the I/O.
//
// Rules, in short (docs/policy.md has the operator's version):
// - A policy selects a namespace when every selector it has matches: `namespaces` lists names,
//   `namespaceSelector` is a Kubernetes label selector (`{}` selects all). No policy: deny.
// - The request is allowed by the first selecting policy, in name order, that allows every aspect.
// - Otherwise the denial names the rule that blocked the policy that came closest, checked in the
//   order role, managed policy ARNs, audience, delivery, token lifetime, session duration, session
//   policy; the message lists what those policies would allow, so the author knows what to change.
// - Role and policy ARN patterns are globs (see globMatch), never regular expressions.
import { RunFailure } from "./failure.ts";
import {
  defaultSubjectTemplate,
  type DeliveryMode,
  type LabelSelector,
  type Revocation,
  type ScopedStepPolicy,
} from "./policy-schema.ts";
import type { TraitProperties } from "./schema.ts";

export interface PolicyRequest {
  namespace: string;
  namespaceLabels: Record<string, string>;
  trait: TraitProperties;
  /** Where the trait is, for messages: "trait scoped-identity on component api of Application payments". */
  traitRef: string;
}

/** What the step may have: the allowing policy's settings and the trait's (now allowed) requests. */
export interface PolicyGrant {
  allowed: true;
  /** Name of the ScopedStepPolicy that allowed the request. */
  policy: string;
  revocation: Revocation;
  subjectTemplate: string;
  audience: string;
  delivery: DeliveryMode;
  tokenExpirationSeconds: number;
  maxTokenLifetimeSeconds: number;
  /** The STS session duration to ask for; undefined when the trait has no aws block. */
  sessionDuration: number | undefined;
  maxSessionDuration: number;
}

export type PolicyDenialReason =
  | "PolicyNotFound"
  | "RoleNotAllowed"
  | "PolicyArnNotAllowed"
  | "AudienceNotAllowed"
  | "DeliveryNotAllowed"
  | "TokenLifetimeNotAllowed"
  | "SessionDurationNotAllowed"
  | "SessionPolicyRequired";

export interface PolicyDenial {
  allowed: false;
  reason: PolicyDenialReason;
  message: string;
  /** The policies whose rule the message is about (none for PolicyNotFound). */
  policies: string[];
}

export type PolicyDecision = PolicyGrant | PolicyDenial;

/** The denial as the failure a run ends with. */
export const denialFailure = (d: PolicyDenial): RunFailure => new RunFailure(d.reason, d.message);

/** Returns the grant, or throws the denial as a RunFailure. */
export function requireGrant(decision: PolicyDecision): PolicyGrant {
  if (!decision.allowed) throw denialFailure(decision);
  return decision;
}

/**
 * Anchored glob match on the whole value: `*` is any run of characters, `/` and `:` included;
 * `?` is exactly one character; everything else is literal (`.` too). Case-sensitive, like IAM's
 * ArnLike. No regular expression is built: the scan backtracks only to the last `*`, so the cost is
 * at most pattern length × value length whatever the pattern. ARNs and their patterns are ASCII
 * (the schemas say so), so UTF-16 units are characters.
 */
export function globMatch(pattern: string, value: string): boolean {
  let p = 0;
  let v = 0;
  let star = -1;
  let resume = 0;
  while (v < value.length) {
    const c = pattern[p];
    if (c === "*") {
      star = p++;
      resume = v;
    } else if (c !== undefined && (c === "?" || c === value[v])) {
      p++;
      v++;
    } else if (star >= 0) {
      p = star + 1;
      v = ++resume;
    } else {
      return false;
    }
  }
  while (pattern[p] === "*") p++;
  return p === pattern.length;
}

/** Kubernetes label selector semantics; `{}` matches everything. */
export function selectorMatches(selector: LabelSelector, labels: Record<string, string>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) return false;
  }
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const present = Object.hasOwn(labels, key);
    const value = labels[key] ?? "";
    const ok =
      operator === "In"
        ? present && values.includes(value)
        : operator === "NotIn"
          ? !present || !values.includes(value)
          : operator === "Exists"
            ? present
            : !present;
    if (!ok) return false;
  }
  return true;
}

export function policySelects(
  policy: ScopedStepPolicy,
  namespace: string,
  labels: Record<string, string>,
): boolean {
  const { namespaces, namespaceSelector } = policy.spec;
  if (!namespaces && !namespaceSelector) return false;
  if (namespaces && !namespaces.includes(namespace)) return false;
  if (namespaceSelector && !selectorMatches(namespaceSelector, labels)) return false;
  return true;
}

/** A short list for a message: at most five items, then "and N more". */
export function shortList(items: readonly string[], max = 5): string {
  const unique = [...new Set(items)];
  if (unique.length <= max) return unique.join(", ");
  return `${unique.slice(0, max).join(", ")} and ${unique.length - max} more`;
}

const checkOrder = [
  "RoleNotAllowed",
  "PolicyArnNotAllowed",
  "AudienceNotAllowed",
  "DeliveryNotAllowed",
  "TokenLifetimeNotAllowed",
  "SessionDurationNotAllowed",
  "SessionPolicyRequired",
] as const satisfies readonly PolicyDenialReason[];

type Check = (typeof checkOrder)[number];

/** The first rule of `policy` the trait breaks, or undefined when the policy allows it all. */
function firstBrokenRule(policy: ScopedStepPolicy, trait: TraitProperties): Check | undefined {
  const spec = policy.spec;
  const aws = trait.aws;
  if (aws) {
    const roles = spec.aws?.allowedRoleArns ?? [];
    if (!roles.some((p) => globMatch(p, aws.roleArn))) return "RoleNotAllowed";
    const allowedArns = spec.aws?.allowedPolicyArns ?? [];
    if ((aws.policyArns ?? []).some((arn) => !allowedArns.some((p) => globMatch(p, arn)))) {
      return "PolicyArnNotAllowed";
    }
  }
  if (!spec.audiences.includes(trait.audience)) return "AudienceNotAllowed";
  if (!spec.deliveryModes.includes(trait.delivery)) return "DeliveryNotAllowed";
  if (trait.tokenExpirationSeconds > spec.maxTokenLifetimeSeconds) return "TokenLifetimeNotAllowed";
  if (aws) {
    if (aws.sessionDuration > (spec.aws?.maxSessionDuration ?? 900)) return "SessionDurationNotAllowed";
    if (spec.aws?.requireSessionPolicy && aws.sessionPolicy === undefined) return "SessionPolicyRequired";
  }
  return undefined;
}

const byName = (a: ScopedStepPolicy, b: ScopedStepPolicy) =>
  a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;

export function evaluatePolicy(
  policies: readonly ScopedStepPolicy[],
  request: PolicyRequest,
): PolicyDecision {
  const { namespace, trait } = request;
  const candidates = policies
    .filter((p) => policySelects(p, namespace, request.namespaceLabels))
    .sort(byName);
  if (candidates.length === 0) {
    return {
      allowed: false,
      reason: "PolicyNotFound",
      message:
        `no ScopedStepPolicy selects namespace ${namespace}, so steps there get no identity; ` +
        `a platform operator must create a ScopedStepPolicy selecting it`,
      policies: [],
    };
  }
  let furthest = -1;
  let blocked: ScopedStepPolicy[] = [];
  for (const policy of candidates) {
    const broken = firstBrokenRule(policy, trait);
    if (broken === undefined) return grant(policy, trait);
    const at = checkOrder.indexOf(broken);
    if (at > furthest) [furthest, blocked] = [at, [policy]];
    else if (at === furthest) blocked.push(policy);
  }
  const reason = checkOrder[furthest] ?? "RoleNotAllowed";
  return {
    allowed: false,
    reason,
    message: denialMessage(reason, blocked, request),
    policies: blocked.map((p) => p.metadata.name),
  };
}

function grant(policy: ScopedStepPolicy, trait: TraitProperties): PolicyGrant {
  const spec = policy.spec;
  return {
    allowed: true,
    policy: policy.metadata.name,
    revocation: spec.revocation,
    subjectTemplate: spec.subjectTemplate || defaultSubjectTemplate,
    audience: trait.audience,
    delivery: trait.delivery,
    tokenExpirationSeconds: trait.tokenExpirationSeconds,
    maxTokenLifetimeSeconds: spec.maxTokenLifetimeSeconds,
    sessionDuration: trait.aws?.sessionDuration,
    maxSessionDuration: spec.aws?.maxSessionDuration ?? 900,
  };
}

function denialMessage(reason: Check, blocked: ScopedStepPolicy[], request: PolicyRequest): string {
  const { trait, traitRef, namespace } = request;
  const names = blocked.map((p) => p.metadata.name);
  const by = `for namespace ${namespace} by ${names.length === 1 ? "policy" : "policies"} ${shortList(names)}`;
  const ask = "or ask a platform operator to allow it in a ScopedStepPolicy";
  const specs = blocked.map((p) => p.spec);
  switch (reason) {
    case "RoleNotAllowed": {
      const patterns = specs.flatMap((s) => s.aws?.allowedRoleArns ?? []);
      const allowed = patterns.length
        ? `allowed roles: ${shortList(patterns)}`
        : "no AWS role is allowed there";
      return `role ${trait.aws?.roleArn ?? ""} is not allowed ${by}; ${allowed}. Set aws.roleArn in ${traitRef} to an allowed role ${ask}`;
    }
    case "PolicyArnNotAllowed": {
      const patterns = specs.flatMap((s) => s.aws?.allowedPolicyArns ?? []);
      // Those some blocking policy refuses: no single one of them allows the whole list.
      const refused = (trait.aws?.policyArns ?? []).filter((arn) =>
        specs.some((s) => !(s.aws?.allowedPolicyArns ?? []).some((p) => globMatch(p, arn))),
      );
      const allowed = patterns.length
        ? `allowed managed policies: ${shortList(patterns)}`
        : "no managed session policy is allowed there";
      return `managed session ${refused.length === 1 ? "policy" : "policies"} ${shortList(refused)} ${refused.length === 1 ? "is" : "are"} not allowed ${by}; ${allowed}. Change aws.policyArns in ${traitRef} ${ask}`;
    }
    case "AudienceNotAllowed":
      return `audience ${trait.audience} is not allowed ${by}; allowed audiences: ${shortList(specs.flatMap((s) => s.audiences))}. Change audience in ${traitRef} ${ask}`;
    case "DeliveryNotAllowed":
      return `delivery ${trait.delivery} is not allowed ${by}; allowed delivery modes: ${shortList(specs.flatMap((s) => s.deliveryModes))}. Change delivery in ${traitRef} ${ask}`;
    case "TokenLifetimeNotAllowed": {
      const max = Math.max(...specs.map((s) => s.maxTokenLifetimeSeconds));
      return `token lifetime ${trait.tokenExpirationSeconds} s is more than the ${max} s allowed ${by}. Lower tokenExpirationSeconds in ${traitRef} ${ask}`;
    }
    case "SessionDurationNotAllowed": {
      const max = Math.max(...specs.map((s) => s.aws?.maxSessionDuration ?? 900));
      return `session duration ${trait.aws?.sessionDuration ?? 0} s is more than the ${max} s allowed ${by}. Lower aws.sessionDuration in ${traitRef} ${ask}`;
    }
    case "SessionPolicyRequired":
      return `an inline session policy is required ${by}. Add aws.sessionPolicy to ${traitRef} to scope the session down`;
  }
}
