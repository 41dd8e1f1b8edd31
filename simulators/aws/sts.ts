// STS: AssumeRoleWithWebIdentity (unsigned, the token is the credential), AssumeRole (signed: a
// principal of one account takes a role, possibly in another) and GetCallerIdentity.
import { randomBytes } from "node:crypto";
import { deflateRawSync } from "node:zlib";
import { authorizeRequest, principalArn, principalUserId } from "./auth.ts";
import type { Principal } from "./auth.ts";
import { SOURCE_IDENTITY_CLAIM, TAGS_CLAIM, sessionClaims, verifyWebIdentityToken } from "./oidc.ts";
import type { VerifiedToken } from "./oidc.ts";
import { PolicyError, evaluate, packedJson, parsePolicy, requestContext } from "./policy.ts";
import type { PolicyDocument } from "./policy.ts";
import { awsId, now, parseRoleArn, principalAccount, secretKey } from "./state.ts";
import type { CallRecord, PeerState, Role, Session } from "./state.ts";
import { AwsError, isoSeconds, leaf, node } from "./wire.ts";

/**
 * STS carries the session policy, the policy ARNs and the session tags inside the session token in
 * a packed (compressed) form, so they make the token grow, and refuses a token over its maximum
 * size with PackedPolicyTooLarge; SessionTokenUtilization (and the older PackedPolicySize) report
 * the share of that maximum used. The format is not public, so the peer builds its tokens the same
 * way in spirit: a fixed random part of about the size of a plain STS token, followed by those
 * inputs packed with raw DEFLATE, base64-encoded and measured against MAX_SESSION_TOKEN_BYTES. A
 * 2048-character policy of ordinary text stays far under the limit; dozens of long random tags
 * go over it, as with AWS.
 */
export const MAX_SESSION_TOKEN_BYTES = 4096;
const TOKEN_BASE_BYTES = 672;

export function packedSessionData(
  policy: string | undefined,
  policyArns: string[],
  tags: Record<string, string>,
  transitiveTagKeys: string[],
  sourceIdentity: string | undefined,
): Buffer {
  const parts = [
    policy === undefined ? "" : packedJson(policy),
    ...policyArns,
    ...Object.entries(tags).map(([k, v]) => `${k}=${v}`),
    ...transitiveTagKeys,
    sourceIdentity ?? "",
  ];
  return deflateRawSync(Buffer.from(parts.join("\n")), { level: 9 });
}

/** An opaque session token that carries the packed data, padded to the requested minimum size. */
function mintSessionToken(packed: Buffer, minimumSize: number): string {
  const raw = Buffer.concat([randomBytes(TOKEN_BASE_BYTES), packed]);
  const padding = Math.max(0, Math.ceil((minimumSize * 3) / 4) - raw.length);
  return Buffer.concat([raw, randomBytes(padding)]).toString("base64");
}

/** Collects constraint violations into AWS's "N validation errors detected: …" message. */
class Validation {
  readonly problems: string[] = [];

  check(ok: boolean, field: string, value: string | undefined, rule: string): void {
    if (ok) return;
    const shown = value === undefined ? "" : ` '${value}'`;
    this.problems.push(`Value${shown} at '${field}' failed to satisfy constraint: Member must ${rule}`);
  }

  required(value: string | null, field: string): value is string {
    if (value !== null) return true;
    this.problems.push(`Value null at '${field}' failed to satisfy constraint: Member must not be null`);
    return false;
  }

  length(value: string, field: string, min: number, max: number, show = true): void {
    const shown = show ? value : undefined;
    this.check(value.length >= min, field, shown, `have length greater than or equal to ${min}`);
    this.check(value.length <= max, field, shown, `have length less than or equal to ${max}`);
  }

  throwIfAny(): void {
    const n = this.problems.length;
    if (n === 0) return;
    const head = `${n} validation error${n > 1 ? "s" : ""} detected: `;
    throw new AwsError("ValidationError", head + this.problems.join("; "));
  }
}

function policyArnsOf(params: URLSearchParams): string[] {
  const arns: string[] = [];
  for (let i = 1; params.has(`PolicyArns.member.${i}.arn`); i++) {
    arns.push(params.get(`PolicyArns.member.${i}.arn`) ?? "");
  }
  return arns;
}

function malformedPolicy(err: unknown): never {
  if (err instanceof PolicyError) throw new AwsError("MalformedPolicyDocument", err.message);
  throw err;
}

function trustDenied(action: string): AwsError {
  return new AwsError("AccessDenied", `Not authorized to perform ${action}`, 403);
}

/** RoleArn, RoleSessionName and DurationSeconds, checked as both AssumeRole calls check them. */
function roleParams(v: Validation, params: URLSearchParams, record: Partial<CallRecord>) {
  const roleArn = params.get("RoleArn");
  const roleSessionName = params.get("RoleSessionName");
  const durationText = params.get("DurationSeconds");
  if (roleArn !== null) record.roleArn = roleArn;
  if (roleSessionName !== null) record.roleSessionName = roleSessionName;
  if (v.required(roleArn, "roleArn")) v.length(roleArn, "roleArn", 20, 2048);
  if (v.required(roleSessionName, "roleSessionName")) {
    v.length(roleSessionName, "roleSessionName", 2, 64);
    v.check(
      /^[\w+=,.@-]*$/.test(roleSessionName),
      "roleSessionName",
      roleSessionName,
      "satisfy regular expression pattern: [\\w+=,.@-]*",
    );
  }
  const duration = durationText === null ? 3600 : Number(durationText);
  if (durationText !== null) {
    v.check(
      Number.isInteger(duration) && duration >= 900,
      "durationSeconds",
      durationText,
      "have value greater than or equal to 900",
    );
    v.check(duration <= 43200, "durationSeconds", durationText, "have value less than or equal to 43200");
  }
  return { roleArn, roleSessionName, duration };
}

/** Evaluates the role's trust policy for every action the call implies, as STS does. */
function checkTrust(
  role: Role,
  token: VerifiedToken,
  roleSessionName: string,
  claims: ReturnType<typeof sessionClaims>,
  at: Date,
): void {
  const hp = token.provider.hostPath;
  const azp = typeof token.claims.azp === "string" ? token.claims.azp : undefined;
  const amr = token.claims.amr;
  const requestTags: Record<string, string> = {};
  for (const [k, v] of Object.entries(claims.tags)) requestTags[`aws:RequestTag/${k}`] = v;
  const tagKeys = Object.keys(claims.tags);
  const context = requestContext({
    ...requestTags,
    [`${hp}:sub`]: token.subject,
    [`${hp}:aud`]: azp ?? token.audiences,
    [`${hp}:oaud`]: azp === undefined ? undefined : token.audiences,
    [`${hp}:amr`]: Array.isArray(amr) ? amr.map(String) : typeof amr === "string" ? amr : undefined,
    "aws:FederatedProvider": token.provider.arn,
    "aws:PrincipalType": "WebIdentityUser",
    "aws:TagKeys": tagKeys.length > 0 ? tagKeys : undefined,
    "sts:TransitiveTagKeys": claims.transitiveTagKeys.length > 0 ? claims.transitiveTagKeys : undefined,
    "sts:RoleSessionName": roleSessionName,
    "sts:SourceIdentity": claims.sourceIdentity,
    "aws:CurrentTime": isoSeconds(at),
    "aws:EpochTime": String(Math.floor(at.getTime() / 1000)),
    "aws:SecureTransport": "false",
    "aws:SourceIp": "127.0.0.1",
  });
  const actions = ["sts:AssumeRoleWithWebIdentity"];
  if (token.claims[TAGS_CLAIM] !== undefined) actions.push("sts:TagSession");
  if (token.claims[SOURCE_IDENTITY_CLAIM] !== undefined) actions.push("sts:SetSourceIdentity");
  for (const action of actions) {
    const principal = { type: "Federated", id: token.provider.arn };
    if (evaluate([role.trustPolicy], { action, resource: role.arn, principal, context }) !== "Allow") {
      throw trustDenied(action);
    }
  }
}

export async function assumeRoleWithWebIdentity(
  state: PeerState,
  params: URLSearchParams,
  record: Partial<CallRecord>,
): Promise<string> {
  const v = new Validation();
  const { roleArn, roleSessionName, duration } = roleParams(v, params, record);
  const token = params.get("WebIdentityToken");
  const policy = params.get("Policy") ?? undefined;
  const policyArns = policyArnsOf(params);
  if (v.required(token, "webIdentityToken")) v.length(token, "webIdentityToken", 4, 20000, false);
  if (policy !== undefined) v.length(policy, "policy", 1, 2048, false);
  const minimumText = params.get("MinimumSessionTokenSize");
  const minimumTokenSize = minimumText === null ? 0 : Number(minimumText);
  if (minimumText !== null) {
    const ok = Number.isInteger(minimumTokenSize) && minimumTokenSize >= 0;
    v.check(ok, "minimumSessionTokenSize", minimumText, "have value greater than or equal to 0");
    v.check(
      minimumTokenSize <= MAX_SESSION_TOKEN_BYTES,
      "minimumSessionTokenSize",
      minimumText,
      `have value less than or equal to ${MAX_SESSION_TOKEN_BYTES}`,
    );
  }
  v.check(policyArns.length <= 10, "policyArns", undefined, "have length less than or equal to 10");
  policyArns.forEach((arn, i) => v.length(arn, `policyArns.${i + 1}.member.arn`, 20, 2048));
  v.throwIfAny();
  // "The plaintext that you use for both inline and managed session policies can't exceed 2,048
  // characters": the ARNs count with the inline document.
  const plaintext = (policy?.length ?? 0) + policyArns.reduce((n, arn) => n + arn.length, 0);
  if (plaintext > 2048) {
    throw new AwsError(
      "ValidationError",
      `The plaintext of the inline and managed session policies (${plaintext} characters) exceeds 2048 characters.`,
    );
  }
  if (roleArn === null || roleSessionName === null || token === null) throw new Error("unreachable");

  const sessionPolicies: PolicyDocument[] = [];
  if (policy !== undefined) {
    try {
      sessionPolicies.push(parsePolicy(policy, "identity"));
    } catch (err) {
      malformedPolicy(err);
    }
  }
  for (const arn of policyArns) {
    const managed = state.managedPolicies.get(arn);
    if (!managed) throw new AwsError("ValidationError", `Policy ${arn} does not exist or is not attachable.`);
    sessionPolicies.push(managed);
  }

  const at = now(state);
  // Only the providers registered in the role's own account can vouch for its callers.
  const account = parseRoleArn(roleArn)?.accountId ?? "";
  const providers = new Map(
    [...state.providers.values()].filter((p) => p.accountId === account).map((p) => [p.hostPath, p]),
  );
  state.tokensSeen.add(token);
  const verified = await verifyWebIdentityToken(token, providers, at, state.fetchTimeoutMs, state.keyCache);
  const claims = sessionClaims(verified.claims);
  const role = state.roles.get(roleArn);
  // STS does not tell a missing role from one that does not trust the caller.
  if (!role) throw trustDenied("sts:AssumeRoleWithWebIdentity");
  checkTrust(role, verified, roleSessionName, claims, at);
  if (duration > role.maxSessionDuration) {
    throw new AwsError(
      "ValidationError",
      "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
    );
  }

  const packed = packedSessionData(
    policy,
    policyArns,
    claims.tags,
    claims.transitiveTagKeys,
    claims.sourceIdentity,
  );
  const unpaddedSize = Math.ceil((TOKEN_BASE_BYTES + packed.length) / 3) * 4;
  if (unpaddedSize > MAX_SESSION_TOKEN_BYTES) {
    throw new AwsError(
      "PackedPolicyTooLarge",
      `The session token would be ${unpaddedSize} bytes, over the maximum allowed size of ${MAX_SESSION_TOKEN_BYTES} bytes. Session policies and session tags add to the session token size.`,
    );
  }
  const sessionToken = mintSessionToken(packed, minimumTokenSize);
  const utilization = Math.ceil((sessionToken.length * 100) / MAX_SESSION_TOKEN_BYTES);

  const session: Session = {
    accessKeyId: awsId("ASIA"),
    secretAccessKey: secretKey(),
    sessionToken,
    role,
    roleSessionName,
    assumedRoleId: `${role.id}:${roleSessionName}`,
    assumedRoleArn: `arn:aws:sts::${role.accountId}:assumed-role/${role.name}/${roleSessionName}`,
    subject: verified.subject,
    audience: verified.audience,
    provider: verified.provider.arn,
    sourceIdentity: claims.sourceIdentity,
    tags: claims.tags,
    transitiveTagKeys: claims.transitiveTagKeys,
    sessionPolicy: policy,
    policyArns,
    sessionPolicies,
    issuedAt: at,
    expiration: new Date(at.getTime() + duration * 1000),
    sessionTokenSize: sessionToken.length,
    sessionTokenUtilization: utilization,
  };
  state.sessions.set(session.accessKeyId, session);
  record.accessKeyId = session.accessKeyId;
  record.principal = session.assumedRoleArn;

  return [
    node(
      "Credentials",
      leaf("AccessKeyId", session.accessKeyId),
      leaf("SecretAccessKey", session.secretAccessKey),
      leaf("SessionToken", session.sessionToken),
      leaf("Expiration", isoSeconds(session.expiration)),
    ),
    leaf("SubjectFromWebIdentityToken", session.subject),
    node(
      "AssumedRoleUser",
      leaf("Arn", session.assumedRoleArn),
      leaf("AssumedRoleId", session.assumedRoleId),
    ),
    // PackedPolicySize is the deprecated name of SessionTokenUtilization; AWS still sends both.
    leaf("PackedPolicySize", session.sessionTokenUtilization),
    leaf("SessionTokenUtilization", session.sessionTokenUtilization),
    leaf("SessionTokenSize", session.sessionTokenSize),
    leaf("Provider", session.provider),
    leaf("Audience", session.audience),
    leaf("SourceIdentity", session.sourceIdentity),
  ].join("");
}

/** Needs no permission: AWS answers it even when a policy denies sts:GetCallerIdentity. */
export function getCallerIdentity(state: PeerState, principal: Principal): string {
  return [
    leaf("Arn", principalArn(principal)),
    leaf("UserId", principalUserId(principal)),
    leaf("Account", principalAccount(principal, state)),
  ].join("");
}

/** Role chaining (a role session assuming a role) is limited to one hour, as in AWS. */
const CHAINED_MAX_SECONDS = 3600;

/**
 * AssumeRole for a signed caller: the caller's own policies must allow sts:AssumeRole on the role,
 * and the role's trust policy must name the caller (its ARN, its role's ARN for a role session, or
 * its account's root or id). Session policies, tags and source identity are not implemented.
 */
export function assumeRole(
  state: PeerState,
  params: URLSearchParams,
  principal: Principal,
  record: Partial<CallRecord>,
): string {
  const v = new Validation();
  const { roleArn, roleSessionName, duration } = roleParams(v, params, record);
  for (const unsupported of ["Policy", "PolicyArns.member.1.arn", "SourceIdentity", "Tags.member.1.Key"]) {
    if (params.has(unsupported))
      throw new Error(`aws peer: AssumeRole with ${unsupported} is not implemented`);
  }
  v.throwIfAny();
  if (roleArn === null || roleSessionName === null) throw new Error("unreachable");

  const caller = principalArn(principal);
  const denied = () =>
    new AwsError(
      "AccessDenied",
      `User: ${caller} is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`,
      403,
    );
  const role = state.roles.get(roleArn);
  if (!role) throw denied();
  if (!authorizeRequest(state, principal, "sts:AssumeRole", role.arn).allowed) throw denied();
  const account = principalAccount(principal, state);
  const names = [caller, `arn:aws:iam::${account}:root`, account];
  if (principal.kind === "session") names.push(principal.session.role.arn);
  const at = now(state);
  const context = requestContext({
    "aws:PrincipalAccount": account,
    "aws:PrincipalArn": principal.kind === "session" ? principal.session.role.arn : caller,
    "sts:RoleSessionName": roleSessionName,
    "aws:CurrentTime": isoSeconds(at),
    "aws:EpochTime": String(Math.floor(at.getTime() / 1000)),
  });
  const trusts = (id: string) =>
    evaluate([role.trustPolicy], {
      action: "sts:AssumeRole",
      resource: role.arn,
      principal: { type: "AWS", id },
      context,
    });
  const verdicts = names.map(trusts);
  if (verdicts.includes("Deny") || !verdicts.includes("Allow")) throw denied();
  const limit = principal.kind === "session" ? CHAINED_MAX_SECONDS : role.maxSessionDuration;
  if (duration > limit) {
    throw new AwsError(
      "ValidationError",
      principal.kind === "session"
        ? "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
        : "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
    );
  }

  const sessionToken = mintSessionToken(Buffer.alloc(0), 0);
  const session: Session = {
    accessKeyId: awsId("ASIA"),
    secretAccessKey: secretKey(),
    sessionToken,
    role,
    roleSessionName,
    assumedRoleId: `${role.id}:${roleSessionName}`,
    assumedRoleArn: `arn:aws:sts::${role.accountId}:assumed-role/${role.name}/${roleSessionName}`,
    subject: "",
    audience: "",
    provider: "",
    sourceIdentity: undefined,
    tags: {},
    transitiveTagKeys: [],
    sessionPolicy: undefined,
    policyArns: [],
    sessionPolicies: [],
    issuedAt: at,
    expiration: new Date(at.getTime() + duration * 1000),
    sessionTokenSize: sessionToken.length,
    sessionTokenUtilization: Math.ceil((sessionToken.length * 100) / MAX_SESSION_TOKEN_BYTES),
  };
  state.sessions.set(session.accessKeyId, session);
  record.accessKeyId = session.accessKeyId;
  return [
    node(
      "Credentials",
      leaf("AccessKeyId", session.accessKeyId),
      leaf("SecretAccessKey", session.secretAccessKey),
      leaf("SessionToken", session.sessionToken),
      leaf("Expiration", isoSeconds(session.expiration)),
    ),
    node(
      "AssumedRoleUser",
      leaf("Arn", session.assumedRoleArn),
      leaf("AssumedRoleId", session.assumedRoleId),
    ),
    leaf("PackedPolicySize", session.sessionTokenUtilization),
  ].join("");
}
