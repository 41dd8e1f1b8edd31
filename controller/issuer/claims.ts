// What goes into a token, and AWS's limits on it. Everything here is checked before signing, so a
// run fails with a reason its author can act on instead of an opaque STS rejection.

/** A token request the issuer refuses; `reason` becomes the CustomRun condition's reason. */
export class ClaimError extends Error {
  readonly reason: ClaimErrorReason;
  constructor(reason: ClaimErrorReason, message: string) {
    super(message);
    this.name = "ClaimError";
    this.reason = reason;
  }
}

export type ClaimErrorReason =
  | "InvalidSubject"
  | "InvalidAudience"
  | "InvalidTokenLifetime"
  | "InvalidSessionTags"
  | "InvalidSourceIdentity"
  | "TokenTooLarge";

/** The issuer's own settings are wrong: found at start-up, never per run. */
export class IssuerConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IssuerConfigError";
  }
}

/**
 * Facts about a run, read by the controller from the API server, never from params or the trait.
 * Two kinds, kept apart in the token and in subject templates:
 * - asserted: the platform's word. The namespace and the two UIDs are set by Kubernetes; the
 *   Application and component are objects the controller resolved in that namespace and the
 *   policy allowed. They are flat top-level claims and AWS session tags under `scoped-step:`.
 * - tenant-supplied: copied as the run's creator wrote them. A CustomRun created directly (not by
 *   a PipelineRun) has whatever name, tekton.dev labels and serviceAccountName its author chose.
 *   They go into the `unverified` claim, and into a subject only when the policy opts in.
 */
export interface RunFacts {
  namespace: string;
  /** The namespace's UID: a namespace deleted and re-created under the same name gets a new one. */
  namespaceUid?: string | undefined;
  customRunUid?: string | undefined;
  application: string;
  component: string;
  customRun: string;
  pipelineRun?: string | undefined;
  pipelineTask?: string | undefined;
  serviceAccount?: string | undefined;
}

export const assertedFacts = [
  "namespace",
  "namespaceUid",
  "customRunUid",
  "application",
  "component",
] as const satisfies readonly (keyof RunFacts)[];
export const tenantSuppliedFacts = [
  "customRun",
  "pipelineRun",
  "pipelineTask",
  "serviceAccount",
] as const satisfies readonly (keyof RunFacts)[];
export const factNames = [...assertedFacts, ...tenantSuppliedFacts] as const;

type FactName = (typeof factNames)[number];

/** The claim holding the tenant-supplied facts, named so no verifier takes them for the platform's. */
export const unverifiedClaim = "unverified";

/**
 * AWS session tags the issuer sets from asserted facts. A request's own tags may not use the
 * prefix, so a trust policy condition on `aws:RequestTag/scoped-step:namespace-uid` (or a
 * permission on `aws:PrincipalTag/...`) sees only what the controller vouches for.
 */
export const assertedTagPrefix = "scoped-step:";
const assertedTags: [FactName, string][] = [
  ["namespace", "namespace"],
  ["namespaceUid", "namespace-uid"],
  ["application", "application"],
  ["component", "component"],
  ["customRunUid", "run-uid"],
];

export function assertedSessionTags(facts: RunFacts): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const [fact, key] of assertedTags) {
    const value = facts[fact];
    if (value !== undefined && value !== "") tags[`${assertedTagPrefix}${key}`] = value;
  }
  return tags;
}

export const defaultSubjectTemplate = "system:scoped-step:{namespace}:{application}:{component}";

export const tagsClaim = "https://aws.amazon.com/tags";
export const sourceIdentityClaim = "https://aws.amazon.com/source_identity";

/** Every claim a token may carry, for the discovery document's `claims_supported`. */
export const claimsSupported: readonly string[] = [
  "iss",
  "sub",
  "aud",
  "iat",
  "nbf",
  "exp",
  "jti",
  ...assertedFacts,
  unverifiedClaim,
  tagsClaim,
  sourceIdentityClaim,
];

export const limits = {
  // OpenID Connect Core §2: sub is at most 255 ASCII characters; STS returns it as
  // SubjectFromWebIdentityToken. IAM OIDC provider client IDs (our aud) are 1..255 characters.
  subjectMaxLength: 255,
  audienceMaxLength: 255,
  // STS AssumeRoleWithWebIdentity: WebIdentityToken is 4..20000 characters.
  tokenMaxLength: 20_000,
  // STS session tags: up to 50, key 1..128, value 0..256, same character set for both.
  sessionTagsMax: 50,
  tagKeyMaxLength: 128,
  tagValueMaxLength: 256,
  // STS SourceIdentity: 2..64 characters of [\w+=,.@-], not starting with "aws:".
  sourceIdentityMinLength: 2,
  sourceIdentityMaxLength: 64,
  tokenLifetimeMinSeconds: 60,
  tokenLifetimeMaxSeconds: 3600,
} as const;

const tagCharacters = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;
const sourceIdentityCharacters = /^[\w+=,.@-]+$/;
const printableAscii = /^[\x20-\x7e]+$/;
// Kubernetes names and label values fit; ':' would make subjects ambiguous and '*' '?' are IAM
// wildcards, so a fact carrying them could widen what a trust policy matches.
const factCharacters = /^[A-Za-z0-9._-]+$/;
const placeholder = /\{([^{}]*)\}/g;

/**
 * Checks a subject template: only known facts may be placeholders, and tenant-supplied ones only
 * when the operator allowed them.
 */
export function checkSubjectTemplate(template: string, allowTenantSupplied = false): void {
  if (template.length === 0) throw new IssuerConfigError("the subject template is empty");
  const unknown = [...template.matchAll(placeholder)]
    .map((m) => m[1] ?? "")
    .filter((name) => !(factNames as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new IssuerConfigError(
      `subject template ${JSON.stringify(template)} uses unknown placeholder(s) ` +
        `${unknown.map((n) => `{${n}}`).join(", ")}; allowed: ${factNames.map((n) => `{${n}}`).join(", ")}`,
    );
  }
  const stripped = template.replace(placeholder, "");
  if (stripped.includes("{") || stripped.includes("}")) {
    throw new IssuerConfigError(`subject template ${JSON.stringify(template)} has an unbalanced brace`);
  }
  const tenantSupplied = [...template.matchAll(placeholder)]
    .map((m) => m[1] ?? "")
    .filter((name) => (tenantSuppliedFacts as readonly string[]).includes(name));
  if (tenantSupplied.length > 0 && !allowTenantSupplied) {
    throw new IssuerConfigError(
      `subject template ${JSON.stringify(template)} uses ${tenantSupplied.map((n) => `{${n}}`).join(", ")}, ` +
        `which whoever creates the run chooses; use only ${assertedFacts.map((n) => `{${n}}`).join(", ")}, ` +
        `or have the policy set allowTenantSuppliedSubjectFacts`,
    );
  }
}

/** The token subject for a run: the template with each placeholder replaced by its fact. */
export function renderSubject(template: string, facts: RunFacts, allowTenantSupplied = false): string {
  try {
    checkSubjectTemplate(template, allowTenantSupplied);
  } catch (err) {
    // A template refused per request (the policy's) is that run's failure, not the issuer's.
    if (err instanceof IssuerConfigError) throw new ClaimError("InvalidSubject", err.message);
    throw err;
  }
  const subject = template.replace(placeholder, (_match, name: FactName) => {
    const value = facts[name];
    if (value === undefined || value === "") {
      throw new ClaimError(
        "InvalidSubject",
        `the subject template uses {${name}} but the run has no ${name}` +
          (name === "pipelineRun" || name === "pipelineTask"
            ? ` (the CustomRun has no tekton.dev/${name} label: was it created outside a PipelineRun?)`
            : ""),
      );
    }
    if (!factCharacters.test(value)) {
      throw new ClaimError(
        "InvalidSubject",
        `${name} ${JSON.stringify(value)} cannot go into the token subject: only letters, digits, '.', '_' and '-' are allowed`,
      );
    }
    return value;
  });
  checkSubject(subject);
  return subject;
}

export function checkSubject(subject: string): void {
  if (subject.length === 0 || subject.length > limits.subjectMaxLength || !printableAscii.test(subject)) {
    throw new ClaimError(
      "InvalidSubject",
      `the token subject must be 1..${limits.subjectMaxLength} printable ASCII characters, ` +
        `got ${subject.length} characters; shorten the names or the issuer's subject template`,
    );
  }
}

export function checkAudience(audience: string): void {
  if (audience.length === 0 || audience.length > limits.audienceMaxLength || !printableAscii.test(audience)) {
    throw new ClaimError(
      "InvalidAudience",
      `the token audience must be 1..${limits.audienceMaxLength} printable ASCII characters ` +
        `(for AWS usually "sts.amazonaws.com"), got ${JSON.stringify(audience.slice(0, 300))}`,
    );
  }
}

export function checkLifetime(seconds: number, maxSeconds: number): void {
  if (!Number.isInteger(seconds) || seconds < limits.tokenLifetimeMinSeconds || seconds > maxSeconds) {
    throw new ClaimError(
      "InvalidTokenLifetime",
      `tokenExpirationSeconds must be a whole number from ${limits.tokenLifetimeMinSeconds} to ${maxSeconds}, got ${seconds}`,
    );
  }
}

/**
 * AWS's rules for session tags passed in a web identity token: the request's own tags, which may
 * not use the asserted prefix, and the issuer's asserted tags, which count toward the limits.
 */
export function checkSessionTags(
  tags: Readonly<Record<string, string>>,
  transitive: readonly string[],
  asserted: Readonly<Record<string, string>> = {},
): void {
  const fail = (message: string): never => {
    throw new ClaimError("InvalidSessionTags", `aws.sessionTags: ${message}`);
  };
  const keys = Object.keys(tags);
  const total = keys.length + Object.keys(asserted).length;
  if (total > limits.sessionTagsMax) {
    fail(
      `at most ${limits.sessionTagsMax} session tags are allowed, got ${total}` +
        (Object.keys(asserted).length
          ? ` (${Object.keys(asserted).length} of them set by the controller)`
          : ""),
    );
  }
  for (const key of keys) {
    if (key.toLowerCase().startsWith(assertedTagPrefix))
      fail(
        `tag key ${JSON.stringify(key)} uses the prefix ${assertedTagPrefix}, which only the controller sets`,
      );
  }
  const seen = new Set<string>();
  for (const [key, value] of [...Object.entries(tags), ...Object.entries(asserted)]) {
    if (key.length === 0 || key.length > limits.tagKeyMaxLength) {
      fail(`tag key ${JSON.stringify(key.slice(0, 140))} must be 1..${limits.tagKeyMaxLength} characters`);
    }
    if (!tagCharacters.test(key)) {
      fail(`tag key ${JSON.stringify(key)} may contain only letters, digits, spaces and _ . : / = + - @`);
    }
    if (key.toLowerCase().startsWith("aws:"))
      fail(`tag key ${JSON.stringify(key)} uses the reserved prefix aws:`);
    // AWS treats tag keys case-insensitively: "Team" and "team" are the same tag.
    if (seen.has(key.toLowerCase()))
      fail(`tag keys must differ in more than letter case: ${JSON.stringify(key)}`);
    seen.add(key.toLowerCase());
    if (typeof value !== "string" || value.length > limits.tagValueMaxLength) {
      fail(
        `the value of tag ${JSON.stringify(key)} must be a string of at most ${limits.tagValueMaxLength} characters`,
      );
    }
    if (!tagCharacters.test(value)) {
      fail(
        `the value of tag ${JSON.stringify(key)} may contain only letters, digits, spaces and _ . : / = + - @`,
      );
    }
  }
  const transitiveSeen = new Set<string>();
  for (const key of transitive) {
    if (!Object.hasOwn(tags, key))
      fail(`transitive tag key ${JSON.stringify(key)} is not one of the session tags`);
    if (transitiveSeen.has(key)) fail(`transitive tag key ${JSON.stringify(key)} is listed twice`);
    transitiveSeen.add(key);
  }
}

export function checkSourceIdentity(value: string): void {
  const { sourceIdentityMinLength: min, sourceIdentityMaxLength: max } = limits;
  if (value.length < min || value.length > max || !sourceIdentityCharacters.test(value)) {
    throw new ClaimError(
      "InvalidSourceIdentity",
      `source identity ${JSON.stringify(value.slice(0, 80))} must be ${min}..${max} characters of letters, digits and _ + = , . @ -`,
    );
  }
  if (value.toLowerCase().startsWith("aws:")) {
    throw new ClaimError(
      "InvalidSourceIdentity",
      `source identity ${JSON.stringify(value)} may not start with aws:`,
    );
  }
}

/** The AWS session-tags claim: every value is a one-element array, as STS expects. */
export function sessionTagsClaim(
  tags: Readonly<Record<string, string>>,
  transitive: readonly string[],
): { principal_tags: Record<string, [string]>; transitive_tag_keys?: string[] } {
  const principalTags: Record<string, [string]> = {};
  for (const [key, value] of Object.entries(tags)) principalTags[key] = [value];
  return transitive.length > 0
    ? { principal_tags: principalTags, transitive_tag_keys: [...transitive] }
    : { principal_tags: principalTags };
}

export function checkTokenSize(token: string): void {
  if (token.length > limits.tokenMaxLength) {
    throw new ClaimError(
      "TokenTooLarge",
      `the signed token is ${token.length} characters, more than the ${limits.tokenMaxLength} AWS accepts; ` +
        `use fewer or shorter session tags`,
    );
  }
}
