// Whether a step's trait is allowed by the operator's ScopedStepPolicy objects. Pure: the caller
// supplies the (validated) policies and the namespace's labels; controller/policies.ts does the I/O.
//
// Rules, in short (docs/policy.md has the operator's version):
// - A policy selects a namespace when every selector it has matches: `namespaces` lists names,
//   `namespaceSelector` is a Kubernetes label selector (`{}` selects all). No policy: deny.
// - The request is allowed by the first selecting policy, in name order, that allows every aspect.
// - Otherwise the denial names the rule that blocked the policy that came closest, checked in the
//   order of checkOrder below; the message lists what those policies would allow, so the author
//   knows what to change.
// - Role, policy ARN and tag value patterns are globs (see globMatch), never regular expressions.
// - token-only is the one mode where the step holds a token itself: it needs its own rule per
//   audience, a short lifetime, and an explicit opt-in for audiences STS accepts.
import { RunFailure } from "./failure.ts";
import {
  defaultSubjectTemplate,
  isReservedTagKey,
  type DeliveryMode,
  type LabelSelector,
  type PolicySpec,
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
  /** The run's spec.retries; 0 when unset. */
  retries?: number;
  /** The podTemplate fields the step sets. */
  podTemplateFields?: string[];
}

/** What the step may have: the allowing policy's settings and the trait's (now allowed) requests. */
export interface PolicyGrant {
  allowed: true;
  /** Name of the ScopedStepPolicy that allowed the request. */
  policy: string;
  revocation: Revocation;
  /** The issuer the policy requires its runs' tokens from; undefined: either. */
  issuer?: NonNullable<PolicySpec["issuer"]>;
  subjectTemplate: string;
  allowTenantSuppliedSubjectFacts: boolean;
  audience: string;
  delivery: DeliveryMode;
  /** The token lifetime to sign: the trait's, or the default for its delivery mode. */
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
  | "TokenOnlyAudienceNotAllowed"
  | "UnscopedStsTokenNotAllowed"
  | "TokenLifetimeNotAllowed"
  | "SessionDurationNotAllowed"
  | "SessionPolicyRequired"
  | "SessionTagNotAllowed"
  | "TransitiveTagKeyNotAllowed"
  | "RetriesNotAllowed"
  | "PodTemplateFieldNotAllowed";

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
  "TokenOnlyAudienceNotAllowed",
  "UnscopedStsTokenNotAllowed",
  "TokenLifetimeNotAllowed",
  "SessionDurationNotAllowed",
  "SessionPolicyRequired",
  "SessionTagNotAllowed",
  "TransitiveTagKeyNotAllowed",
  "RetriesNotAllowed",
  "PodTemplateFieldNotAllowed",
] as const satisfies readonly PolicyDenialReason[];

type Check = (typeof checkOrder)[number];

/** The token lifetime when the trait names none; never above what the policy allows. */
const defaultTokenLifetimeSeconds = 600;

/** The longest token lifetime the policy allows for the trait's delivery mode. */
function maxLifetime(spec: PolicySpec, trait: TraitProperties): number {
  return trait.delivery === "token-only"
    ? (spec.tokenOnly?.maxTokenLifetimeSeconds ?? 300)
    : spec.maxTokenLifetimeSeconds;
}

function tokenLifetime(spec: PolicySpec, trait: TraitProperties): number {
  return trait.tokenExpirationSeconds ?? Math.min(defaultTokenLifetimeSeconds, maxLifetime(spec, trait));
}

/** Whether a token-only trait's audience is one STS accepts, so the step could mint sessions itself. */
const isStsAudience = (spec: PolicySpec, audience: string) =>
  (spec.tokenOnly?.stsAudiences ?? ["sts.amazonaws.com"]).includes(audience);

/** The trait's session tags some policy rule does not allow, as "key=value". */
function refusedTags(spec: PolicySpec, trait: TraitProperties): string[] {
  const allowed = Object.entries(spec.aws?.allowedSessionTags ?? {});
  return Object.entries(trait.aws?.sessionTags ?? {})
    .filter(([key, value]) => {
      if (isReservedTagKey(key)) return true;
      const patterns = allowed.find(([k]) => k.toLowerCase() === key.toLowerCase())?.[1] ?? [];
      return !patterns.some((p) => globMatch(p, value));
    })
    .map(([key, value]) => `${key}=${value}`);
}

function refusedTransitiveKeys(spec: PolicySpec, trait: TraitProperties): string[] {
  const allowed = new Set((spec.aws?.allowedTransitiveTagKeys ?? []).map((k) => k.toLowerCase()));
  return (trait.aws?.transitiveTagKeys ?? []).filter((k) => !allowed.has(k.toLowerCase()));
}

const forbiddenFields = (spec: PolicySpec, request: PolicyRequest): string[] =>
  (request.podTemplateFields ?? []).filter((f) => (spec.forbiddenPodTemplateFields as string[]).includes(f));

/** The first rule of `policy` the request breaks, or undefined when the policy allows it all. */
function firstBrokenRule(policy: ScopedStepPolicy, request: PolicyRequest): Check | undefined {
  const spec = policy.spec;
  const trait = request.trait;
  const aws = trait.aws;
  const tokenOnly = trait.delivery === "token-only";
  if (aws) {
    const roles = spec.aws?.allowedRoleArns ?? [];
    if (!roles.some((p) => globMatch(p, aws.roleArn))) return "RoleNotAllowed";
    const allowedArns = spec.aws?.allowedPolicyArns ?? [];
    if ((aws.policyArns ?? []).some((arn) => !allowedArns.some((p) => globMatch(p, arn)))) {
      return "PolicyArnNotAllowed";
    }
  }
  // A raw token's audiences are the tokenOnly rule's; `audiences` is for tokens the controller exchanges.
  if (!tokenOnly && !spec.audiences.includes(trait.audience)) return "AudienceNotAllowed";
  if (!spec.deliveryModes.includes(trait.delivery)) return "DeliveryNotAllowed";
  if (tokenOnly) {
    if (!spec.tokenOnly?.audiences.includes(trait.audience)) return "TokenOnlyAudienceNotAllowed";
    if (isStsAudience(spec, trait.audience) && !spec.tokenOnly.allowUnscopedUnrevocableStsSessions) {
      return "UnscopedStsTokenNotAllowed";
    }
  }
  if (tokenLifetime(spec, trait) > maxLifetime(spec, trait)) return "TokenLifetimeNotAllowed";
  if (aws) {
    if (aws.sessionDuration > (spec.aws?.maxSessionDuration ?? 900)) return "SessionDurationNotAllowed";
    if (spec.aws?.requireSessionPolicy && aws.sessionPolicy === undefined) return "SessionPolicyRequired";
    if (refusedTags(spec, trait).length > 0) return "SessionTagNotAllowed";
    if (refusedTransitiveKeys(spec, trait).length > 0) return "TransitiveTagKeyNotAllowed";
  }
  if ((request.retries ?? 0) > spec.maxRetries) return "RetriesNotAllowed";
  if (forbiddenFields(spec, request).length > 0) return "PodTemplateFieldNotAllowed";
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
    const broken = firstBrokenRule(policy, request);
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
    ...(spec.issuer ? { issuer: spec.issuer } : {}),
    subjectTemplate: spec.subjectTemplate || defaultSubjectTemplate,
    allowTenantSuppliedSubjectFacts: spec.allowTenantSuppliedSubjectFacts,
    audience: trait.audience,
    delivery: trait.delivery,
    tokenExpirationSeconds: tokenLifetime(spec, trait),
    maxTokenLifetimeSeconds: maxLifetime(spec, trait),
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
    case "TokenOnlyAudienceNotAllowed": {
      const audiences = specs.flatMap((s) => s.tokenOnly?.audiences ?? []);
      const allowed = audiences.length
        ? `token-only is allowed for audiences ${shortList(audiences)}`
        : "token-only is allowed for no audience there";
      return `token-only delivery for audience ${trait.audience} is not allowed ${by}; ${allowed}. Use delivery env or file in ${traitRef}, or ask a platform operator to list the audience in the policy's tokenOnly.audiences`;
    }
    case "UnscopedStsTokenNotAllowed":
      return (
        `token-only delivery for audience ${trait.audience}, which AWS STS accepts, is not allowed ${by}: the step ` +
        `could assume roles itself with no session policy, its own duration and no revocation. Use delivery env or ` +
        `file in ${traitRef} (the controller exchanges the token and scopes the session), or another audience`
      );
    case "TokenLifetimeNotAllowed": {
      const max = Math.max(...specs.map((s) => maxLifetime(s, trait)));
      const lifetime = trait.tokenExpirationSeconds ?? defaultTokenLifetimeSeconds;
      const mode = trait.delivery === "token-only" ? " for token-only delivery" : "";
      return `token lifetime ${lifetime} s is more than the ${max} s allowed${mode} ${by}. Lower tokenExpirationSeconds in ${traitRef} ${ask}`;
    }
    case "SessionDurationNotAllowed": {
      const max = Math.max(...specs.map((s) => s.aws?.maxSessionDuration ?? 900));
      return `session duration ${trait.aws?.sessionDuration ?? 0} s is more than the ${max} s allowed ${by}. Lower aws.sessionDuration in ${traitRef} ${ask}`;
    }
    case "SessionPolicyRequired":
      return `an inline session policy is required ${by}. Add aws.sessionPolicy to ${traitRef} to scope the session down`;
    case "SessionTagNotAllowed": {
      const refused = [...new Set(specs.flatMap((s) => refusedTags(s, trait)))];
      const rules = specs.flatMap((s) =>
        Object.entries(s.aws?.allowedSessionTags ?? {}).map(([k, v]) => `${k}=${v.join("|")}`),
      );
      const allowed = rules.length ? `allowed tags: ${shortList(rules)}` : "no session tag is allowed there";
      return `session ${refused.length === 1 ? "tag" : "tags"} ${shortList(refused)} not allowed ${by}; ${allowed}. Change aws.sessionTags in ${traitRef} ${ask}`;
    }
    case "TransitiveTagKeyNotAllowed": {
      const refused = [...new Set(specs.flatMap((s) => refusedTransitiveKeys(s, trait)))];
      const keys = specs.flatMap((s) => s.aws?.allowedTransitiveTagKeys ?? []);
      const allowed = keys.length
        ? `allowed transitive keys: ${shortList(keys)}`
        : "no transitive tag key is allowed there";
      return `transitive tag ${refused.length === 1 ? "key" : "keys"} ${shortList(refused)} not allowed ${by}; ${allowed}. Change aws.transitiveTagKeys in ${traitRef} ${ask}`;
    }
    case "RetriesNotAllowed": {
      const max = Math.max(...specs.map((s) => s.maxRetries));
      return `retries ${request.retries ?? 0} is more than the ${max} allowed ${by}: each attempt mints a credential of its own. Lower the task's retries ${ask}`;
    }
    case "PodTemplateFieldNotAllowed": {
      const refused = [...new Set(specs.flatMap((s) => forbiddenFields(s, request)))];
      return `podTemplate.${refused.join(", podTemplate.")} may not be set ${by}: remove ${refused.length === 1 ? "it" : "them"} from the step ${ask}`;
    }
  }
}
