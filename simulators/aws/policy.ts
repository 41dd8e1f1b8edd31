// IAM policy documents: parsing with IAM's validation messages, and evaluation the way the IAM
// policy evaluation logic describes it for one account (no SCPs, resource policies or boundaries):
// an explicit Deny anywhere wins; otherwise the identity policies must allow, and, when the session
// has session policies, one of those must allow too (the effective permission is the intersection).

export type PrincipalSpec = "*" | Record<string, string[]>;

export interface Condition {
  /** e.g. StringLike, without the set prefix and the IfExists suffix. */
  operator: string;
  set: "ForAnyValue" | "ForAllValues" | undefined;
  ifExists: boolean;
  key: string;
  values: string[];
}

export interface Statement {
  effect: "Allow" | "Deny";
  principal?: PrincipalSpec;
  notPrincipal?: PrincipalSpec;
  action?: string[];
  notAction?: string[];
  resource?: string[];
  notResource?: string[];
  conditions: Condition[];
}

export interface PolicyDocument {
  version: string;
  statements: Statement[];
}

/** Identity and session policies name no principal; trust policies must, and name no resource. */
export type PolicyKind = "identity" | "trust";

export class PolicyError extends Error {
  /** "json" when the text is not JSON at all, "syntax" for everything IAM's grammar rejects. */
  readonly reason: "json" | "syntax";

  constructor(reason: "json" | "syntax", message: string) {
    super(message);
    this.reason = reason;
  }
}

/** Condition keys are case-insensitive: the context is keyed by the lower-cased name. */
export type RequestContext = Map<string, string[]>;

export interface PolicyRequest {
  action: string;
  resource: string;
  /** Who asks, for trust policies: `{ Federated: <provider ARN> }` and the like. */
  principal?: { type: string; id: string };
  context: RequestContext;
}

export function requestContext(entries: Record<string, string | string[] | undefined>): RequestContext {
  const ctx: RequestContext = new Map();
  for (const [key, value] of Object.entries(entries)) {
    if (value === undefined) continue;
    ctx.set(key.toLowerCase(), Array.isArray(value) ? value : [value]);
  }
  return ctx;
}

// ---- parsing -------------------------------------------------------------------------------------

const VERSIONS = ["2012-10-17", "2008-10-17"];
const STATEMENT_FIELDS = new Set([
  "Sid",
  "Effect",
  "Principal",
  "NotPrincipal",
  "Action",
  "NotAction",
  "Resource",
  "NotResource",
  "Condition",
]);
const CONDITION_OPERATORS = new Set([
  "StringEquals",
  "StringNotEquals",
  "StringEqualsIgnoreCase",
  "StringNotEqualsIgnoreCase",
  "StringLike",
  "StringNotLike",
  "NumericEquals",
  "NumericNotEquals",
  "NumericLessThan",
  "NumericLessThanEquals",
  "NumericGreaterThan",
  "NumericGreaterThanEquals",
  "DateEquals",
  "DateNotEquals",
  "DateLessThan",
  "DateLessThanEquals",
  "DateGreaterThan",
  "DateGreaterThanEquals",
  "Bool",
  "BinaryEquals",
  "IpAddress",
  "NotIpAddress",
  "ArnEquals",
  "ArnLike",
  "ArnNotEquals",
  "ArnNotLike",
  "Null",
]);
const NEGATED = new Set([
  "StringNotEquals",
  "StringNotEqualsIgnoreCase",
  "StringNotLike",
  "NumericNotEquals",
  "DateNotEquals",
  "NotIpAddress",
  "ArnNotEquals",
  "ArnNotLike",
]);

function syntax(message = "Syntax errors in policy."): PolicyError {
  return new PolicyError("syntax", message);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringList(value: unknown, field: string): string[] {
  const list: unknown[] = Array.isArray(value) ? value : [value];
  if (list.length === 0 || !list.every((v) => typeof v === "string")) {
    throw syntax(`Syntax errors in policy. ${field} must be a string or a list of strings.`);
  }
  return list;
}

function parsePrincipal(value: unknown): PrincipalSpec {
  if (value === "*") return "*";
  if (!isRecord(value)) throw syntax("Invalid principal in policy");
  const spec: Record<string, string[]> = {};
  for (const [type, ids] of Object.entries(value)) {
    if (!["AWS", "Federated", "Service", "CanonicalUser"].includes(type)) {
      throw syntax(`Invalid principal in policy: "${type}"`);
    }
    spec[type] = stringList(ids, "Principal");
  }
  return spec;
}

function parseConditions(value: unknown): Condition[] {
  if (!isRecord(value)) throw syntax();
  const conditions: Condition[] = [];
  for (const [rawOperator, block] of Object.entries(value)) {
    let operator = rawOperator;
    let set: Condition["set"];
    const prefix = /^(ForAnyValue|ForAllValues):(.*)$/.exec(operator);
    if (prefix?.[2] !== undefined) {
      set = prefix[1] as Condition["set"];
      operator = prefix[2];
    }
    const ifExists = operator.endsWith("IfExists") && operator !== "IfExists";
    if (ifExists) operator = operator.slice(0, -"IfExists".length);
    if (!CONDITION_OPERATORS.has(operator) || (operator === "Null" && (ifExists || set))) {
      throw syntax(`Invalid Condition type : ${rawOperator}`);
    }
    if (!isRecord(block)) throw syntax();
    for (const [key, raw] of Object.entries(block)) {
      const list: unknown[] = Array.isArray(raw) ? raw : [raw];
      if (!list.every((v) => ["string", "number", "boolean"].includes(typeof v))) throw syntax();
      conditions.push({ operator, set, ifExists, key, values: list.map(String) });
    }
  }
  return conditions;
}

function checkAction(action: string): void {
  if (action !== "*" && !/^[A-Za-z0-9-]+:[A-Za-z0-9*?]*$/.test(action)) {
    throw syntax("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.");
  }
}

function checkResource(resource: string): void {
  if (resource !== "*" && !(resource.startsWith("arn:") && splitArn(resource).length >= 6)) {
    throw syntax(`Resource ${resource} must be in ARN format or "*".`);
  }
}

function parseStatement(value: unknown, kind: PolicyKind): Statement {
  if (!isRecord(value)) throw syntax();
  for (const field of Object.keys(value)) if (!STATEMENT_FIELDS.has(field)) throw syntax();
  const { Effect, Principal, NotPrincipal, Action, NotAction, Resource, NotResource, Condition } = value;
  if (Effect === undefined) throw syntax("Missing required field Effect");
  if (Effect !== "Allow" && Effect !== "Deny") throw syntax(`Invalid effect: ${JSON.stringify(Effect)}`);
  const statement: Statement = { effect: Effect, conditions: [] };
  if (kind === "identity" && (Principal !== undefined || NotPrincipal !== undefined)) {
    throw syntax("Policy document should not specify a principal.");
  }
  if (kind === "trust") {
    if (Principal === undefined && NotPrincipal === undefined)
      throw syntax("Missing required field Principal");
    if (Resource !== undefined || NotResource !== undefined) throw syntax("Has prohibited field Resource");
    if (Principal !== undefined) statement.principal = parsePrincipal(Principal);
    if (NotPrincipal !== undefined) statement.notPrincipal = parsePrincipal(NotPrincipal);
  }
  if ((Action === undefined) === (NotAction === undefined)) {
    throw syntax(Action === undefined ? "Missing required field Action" : "Syntax errors in policy.");
  }
  if (Action !== undefined) statement.action = stringList(Action, "Action");
  if (NotAction !== undefined) statement.notAction = stringList(NotAction, "NotAction");
  [...(statement.action ?? []), ...(statement.notAction ?? [])].forEach(checkAction);
  if (kind === "identity") {
    if ((Resource === undefined) === (NotResource === undefined)) {
      throw syntax(Resource === undefined ? "Missing required field Resource" : "Syntax errors in policy.");
    }
    if (Resource !== undefined) statement.resource = stringList(Resource, "Resource");
    if (NotResource !== undefined) statement.notResource = stringList(NotResource, "NotResource");
    [...(statement.resource ?? []), ...(statement.notResource ?? [])].forEach(checkResource);
  }
  if (Condition !== undefined) statement.conditions = parseConditions(Condition);
  return statement;
}

/** Validates a policy the way IAM does on PutRolePolicy and STS does on a session policy. */
export function parsePolicy(text: string, kind: PolicyKind): PolicyDocument {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new PolicyError("json", "This policy contains invalid Json");
  }
  return parsePolicyValue(value, kind);
}

export function parsePolicyValue(value: unknown, kind: PolicyKind): PolicyDocument {
  if (!isRecord(value)) throw new PolicyError("json", "This policy contains invalid Json");
  for (const field of Object.keys(value)) {
    if (!["Version", "Id", "Statement"].includes(field)) throw syntax();
  }
  const version = value.Version ?? "2008-10-17";
  if (typeof version !== "string" || !VERSIONS.includes(version)) {
    throw syntax("The policy must contain a valid version string");
  }
  const raw = value.Statement;
  if (raw === undefined) throw syntax("Missing required field Statement");
  const list: unknown[] = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0) throw syntax();
  return { version, statements: list.map((s) => parseStatement(s, kind)) };
}

/** IAM counts policy size without the white space outside strings. */
export function packedJson(text: string): string {
  return JSON.stringify(JSON.parse(text));
}

// ---- matching ------------------------------------------------------------------------------------

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/**
 * Turns a policy string into a regex source: `*` and `?` as wildcards when `wildcards`, and, in
 * 2012-10-17 documents, `${key}` / `${key, 'default'}` replaced by the context value, taken
 * literally. Undefined when a variable has no value and no default: nothing can then match.
 */
function patternSource(
  pattern: string,
  ctx: RequestContext,
  variables: boolean,
  wildcards: boolean,
): string | undefined {
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern.charAt(i);
    if (variables && c === "$" && pattern.charAt(i + 1) === "{") {
      const end = pattern.indexOf("}", i);
      if (end > 0) {
        const value = resolveVariable(pattern.slice(i + 2, end), ctx);
        if (value === undefined) return undefined;
        out += escapeRegex(value);
        i = end;
        continue;
      }
    }
    if (wildcards && c === "*") out += ".*";
    else if (wildcards && c === "?") out += ".";
    else out += escapeRegex(c);
  }
  return out;
}

function resolveVariable(expression: string, ctx: RequestContext): string | undefined {
  const special: Record<string, string> = { "*": "*", "?": "?", $: "$" };
  const m = /^\s*([^,\s]+)\s*(?:,\s*'([^']*)'\s*)?$/.exec(expression);
  if (!m?.[1]) return undefined;
  const name = m[1];
  return special[name] ?? ctx.get(name.toLowerCase())?.[0] ?? m[2];
}

function globMatches(
  pattern: string,
  value: string,
  ctx: RequestContext,
  variables: boolean,
  options: { wildcards: boolean; ignoreCase?: boolean },
): boolean {
  const source = patternSource(pattern, ctx, variables, options.wildcards);
  if (source === undefined) return false;
  return new RegExp(`^${source}$`, options.ignoreCase ? "is" : "s").test(value);
}

/** Splits an ARN into its six fields, keeping `${…}` variables (which contain colons) whole. */
function splitArn(arn: string): string[] {
  const parts: string[] = [];
  let current = "";
  for (let i = 0; i < arn.length; i++) {
    const c = arn.charAt(i);
    if (c === "$" && arn.charAt(i + 1) === "{") {
      const end = arn.indexOf("}", i);
      if (end > 0) {
        current += arn.slice(i, end + 1);
        i = end;
        continue;
      }
    }
    if (c === ":" && parts.length < 5) {
      parts.push(current);
      current = "";
    } else current += c;
  }
  parts.push(current);
  return parts;
}

/** ARN matching as IAM does it: field by field, each field a glob; `*` alone matches anything. */
function arnMatches(pattern: string, arn: string, ctx: RequestContext, variables: boolean): boolean {
  if (pattern === "*") return true;
  const p = splitArn(pattern);
  const a = splitArn(arn);
  if (p.length !== 6 || a.length !== 6) return globMatches(pattern, arn, ctx, variables, { wildcards: true });
  return p.every((field, i) => globMatches(field, a[i] ?? "", ctx, variables, { wildcards: true }));
}

function actionMatches(pattern: string, action: string): boolean {
  return globMatches(pattern, action, new Map(), false, { wildcards: true, ignoreCase: true });
}

function principalMatches(spec: PrincipalSpec, principal: PolicyRequest["principal"]): boolean {
  if (spec === "*") return true;
  if (spec.AWS?.includes("*")) return true;
  if (!principal) return false;
  return spec[principal.type]?.includes(principal.id) ?? false;
}

function ipv4(text: string): number | undefined {
  const m = /^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (!m) return undefined;
  const octets = m.slice(1).map(Number);
  if (octets.some((o) => o > 255)) return undefined;
  return octets.reduce((acc, o) => acc * 256 + o, 0);
}

function inCidr(ip: string, cidr: string): boolean {
  const [base = "", bits = "32"] = cidr.split("/");
  const address = ipv4(ip);
  const network = ipv4(base);
  const size = Number(bits);
  if (address === undefined || network === undefined || !(size >= 0 && size <= 32)) return false;
  const block = 2 ** (32 - size);
  return Math.floor(address / block) === Math.floor(network / block);
}

function parseDate(text: string): number {
  return /^\d+(\.\d+)?$/.test(text) ? Number(text) * 1000 : Date.parse(text);
}

/** Does one context value satisfy one policy value, for the positive form of the operator? */
function positiveMatch(
  operator: string,
  value: string,
  policyValue: string,
  ctx: RequestContext,
  variables: boolean,
): boolean {
  const base = operator.replace("Not", "");
  switch (base) {
    case "StringEquals":
      return globMatches(policyValue, value, ctx, variables, { wildcards: false });
    case "StringEqualsIgnoreCase":
      return globMatches(policyValue, value, ctx, variables, { wildcards: false, ignoreCase: true });
    case "StringLike":
      return globMatches(policyValue, value, ctx, variables, { wildcards: true });
    case "ArnEquals":
    case "ArnLike":
      return arnMatches(policyValue, value, ctx, variables);
    case "Bool":
      return value.toLowerCase() === policyValue.toLowerCase();
    case "BinaryEquals":
      return value === policyValue;
    case "IpAddress":
      return inCidr(value, policyValue);
  }
  const numeric = base.startsWith("Numeric");
  const a = numeric ? Number(value) : parseDate(value);
  const b = numeric ? Number(policyValue) : parseDate(policyValue);
  if (Number.isNaN(a) || Number.isNaN(b)) return false;
  if (base.endsWith("LessThanEquals")) return a <= b;
  if (base.endsWith("LessThan")) return a < b;
  if (base.endsWith("GreaterThanEquals")) return a >= b;
  if (base.endsWith("GreaterThan")) return a > b;
  return a === b;
}

function conditionHolds(condition: Condition, ctx: RequestContext, variables: boolean): boolean {
  const values = ctx.get(condition.key.toLowerCase()) ?? [];
  const present = values.length > 0;
  if (condition.operator === "Null") {
    return condition.values.some((v) => (v.toLowerCase() === "true") === !present);
  }
  const negated = NEGATED.has(condition.operator);
  if (!present) {
    if (condition.ifExists) return true;
    if (condition.set === "ForAnyValue") return false;
    if (condition.set === "ForAllValues") return true;
    // A key missing from the request matches nothing, so a negated operator holds.
    return negated;
  }
  const satisfies = (value: string): boolean => {
    const any = condition.values.some((pv) => positiveMatch(condition.operator, value, pv, ctx, variables));
    return negated ? !any : any;
  };
  if (condition.set === "ForAllValues") return values.every(satisfies);
  if (condition.set === "ForAnyValue") return values.some(satisfies);
  // A single-valued operator on a multi-valued key: positive operators need one value to match,
  // negated ones need every value to miss.
  return negated ? values.every(satisfies) : values.some(satisfies);
}

function statementApplies(statement: Statement, doc: PolicyDocument, req: PolicyRequest): boolean {
  const variables = doc.version === "2012-10-17";
  const ctx = req.context;
  if (statement.principal && !principalMatches(statement.principal, req.principal)) return false;
  if (statement.notPrincipal && principalMatches(statement.notPrincipal, req.principal)) return false;
  if (statement.action && !statement.action.some((a) => actionMatches(a, req.action))) return false;
  if (statement.notAction?.some((a) => actionMatches(a, req.action))) return false;
  if (statement.resource && !statement.resource.some((r) => arnMatches(r, req.resource, ctx, variables))) {
    return false;
  }
  if (statement.notResource?.some((r) => arnMatches(r, req.resource, ctx, variables))) return false;
  return statement.conditions.every((c) => conditionHolds(c, ctx, variables));
}

/** "Deny" if any statement denies, "Allow" if one allows, undefined when none applies. */
export function evaluate(docs: PolicyDocument[], req: PolicyRequest): "Allow" | "Deny" | undefined {
  let result: "Allow" | undefined;
  for (const doc of docs) {
    for (const statement of doc.statements) {
      if (!statementApplies(statement, doc, req)) continue;
      if (statement.effect === "Deny") return "Deny";
      result = "Allow";
    }
  }
  return result;
}

export type Decision = { allowed: true } | { allowed: false; because: string };

/**
 * The decision for a principal with identity policies and, for a session that was given some,
 * session policies. `because` completes AWS's "… is not authorized to perform: X on resource: Y"
 * message the way AWS does.
 */
export function authorize(
  identityPolicies: PolicyDocument[],
  sessionPolicies: PolicyDocument[],
  req: PolicyRequest,
): Decision {
  const identity = evaluate(identityPolicies, req);
  const session = sessionPolicies.length > 0 ? evaluate(sessionPolicies, req) : "Allow";
  if (identity === "Deny")
    return { allowed: false, because: "with an explicit deny in an identity-based policy" };
  if (session === "Deny") return { allowed: false, because: "with an explicit deny in a session policy" };
  if (identity !== "Allow") {
    return { allowed: false, because: `because no identity-based policy allows the ${req.action} action` };
  }
  if (session !== "Allow") {
    return { allowed: false, because: `because no session policy allows the ${req.action} action` };
  }
  return { allowed: true };
}
