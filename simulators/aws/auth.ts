// Who signed a request, and may they do what they ask. Authentication follows SigV4 as AWS checks
// it (scope, clock skew, key, security token, expiry, signature); authorisation runs the policy
// evaluation with the request context AWS would build for that principal.
import type { IncomingHttpHeaders } from "node:http";
import { authorize, requestContext } from "./policy.ts";
import type { Decision, PolicyDocument } from "./policy.ts";
import { canonicalRequest, expectedSignature, signaturesMatch } from "./sigv4.ts";
import type { SigV4Authorization, WireRequest } from "./sigv4.ts";
import { now, principalAccount } from "./state.ts";
import type { AdminUser, PeerState, Session } from "./state.ts";
import { AwsError, isoSeconds, leaf } from "./wire.ts";

export type Principal = { kind: "admin"; user: AdminUser } | { kind: "session"; session: Session };

export type AuthFailureKind =
  "missing" | "malformed" | "scope" | "skew" | "unknown-key" | "bad-token" | "expired" | "signature";

/** Why authentication failed; each service turns it into its own error code and message. */
export class AuthFailure extends Error {
  readonly kind: AuthFailureKind;
  readonly requestTime: Date | undefined;

  constructor(kind: AuthFailureKind, message = "", requestTime?: Date) {
    super(message);
    this.kind = kind;
    this.requestTime = requestTime;
  }
}

const REGION = /^[a-z]{2}(-[a-z]+)+-\d+$/;

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(",") : value;
}

function compactTime(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}

function checkScope(auth: SigV4Authorization, service: string): void {
  const day = auth.amzDate.slice(0, 8);
  if (auth.date !== day) {
    throw new AuthFailure(
      "scope",
      `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${auth.date}' != '${day}', from '${auth.amzDate}'.`,
    );
  }
  // IAM is a global service signed in us-east-1; the regional services take any real region name.
  const valid = service === "iam" ? auth.region === "us-east-1" : REGION.test(auth.region);
  if (!valid) {
    throw new AuthFailure("scope", `Credential should be scoped to a valid region, not '${auth.region}'. `);
  }
}

function checkSkew(state: PeerState, auth: SigV4Authorization, service: string): void {
  // The query services allow five minutes either way, S3 fifteen.
  const minutes = service === "s3" ? 15 : 5;
  const current = now(state);
  const limit = minutes * 60_000;
  const earliest = new Date(current.getTime() - limit);
  const latest = new Date(current.getTime() + limit);
  if (auth.requestTime < earliest) {
    throw new AuthFailure(
      "skew",
      `Signature expired: ${auth.amzDate} is now earlier than ${compactTime(earliest)} (${compactTime(current)} - ${minutes} min.)`,
      auth.requestTime,
    );
  }
  if (auth.requestTime > latest) {
    throw new AuthFailure(
      "skew",
      `Signature not yet current: ${auth.amzDate} is still later than ${compactTime(latest)} (${compactTime(current)} + ${minutes} min.)`,
      auth.requestTime,
    );
  }
}

/** The error STS and IAM answer for an authentication failure. */
export function queryAuthError(failure: AuthFailure): AwsError {
  switch (failure.kind) {
    case "missing":
      return new AwsError("MissingAuthenticationToken", "Request is missing Authentication Token", 403);
    case "malformed":
      return new AwsError("IncompleteSignature", failure.message, 400);
    case "unknown-key":
    case "bad-token":
      return new AwsError(
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
        403,
      );
    case "expired":
      return new AwsError("ExpiredToken", "The security token included in the request is expired", 403);
    case "signature":
      return new AwsError(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        403,
      );
    case "scope":
    case "skew":
      return new AwsError("SignatureDoesNotMatch", failure.message, 403);
  }
}

/** The error S3 answers for an authentication failure. */
export function s3AuthError(failure: AuthFailure, serverTime: Date): AwsError {
  switch (failure.kind) {
    case "missing":
      return new AwsError("AccessDenied", "Access Denied", 403);
    case "malformed":
    case "scope":
      return new AwsError(
        "AuthorizationHeaderMalformed",
        `The authorization header is malformed; ${failure.message}`,
      );
    case "unknown-key":
      return new AwsError(
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
        403,
      );
    case "bad-token":
      return new AwsError("InvalidToken", "The provided token is malformed or otherwise invalid.");
    case "expired":
      return new AwsError("ExpiredToken", "The provided token has expired.");
    case "signature":
      return new AwsError(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        403,
      );
    case "skew":
      return new AwsError(
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
        403,
        leaf("RequestTime", failure.requestTime ? isoSeconds(failure.requestTime) : undefined) +
          leaf("ServerTime", isoSeconds(serverTime)) +
          leaf("MaxAllowedSkewMilliseconds", 900000),
      );
  }
}

/** Finds the credential, checks its token and lifetime, and verifies the signature. */
export function authenticate(
  state: PeerState,
  wire: WireRequest,
  headers: IncomingHttpHeaders,
  auth: SigV4Authorization,
  service: string,
  payloadHash: string,
): Principal {
  checkScope(auth, service);
  checkSkew(state, auth, service);
  const token = header(headers, "x-amz-security-token");
  let principal: Principal;
  let secret: string;
  if (auth.accessKeyId === state.admin.accessKeyId) {
    if (token !== undefined) throw new AuthFailure("bad-token");
    principal = { kind: "admin", user: state.admin };
    secret = state.admin.secretAccessKey;
  } else {
    const session = state.sessions.get(auth.accessKeyId);
    if (!session) throw new AuthFailure("unknown-key");
    if (token !== session.sessionToken) throw new AuthFailure("bad-token");
    if (now(state) >= session.expiration) throw new AuthFailure("expired");
    principal = { kind: "session", session };
    secret = session.secretAccessKey;
  }
  const canonical = canonicalRequest(wire, auth, payloadHash, service === "s3");
  if (!signaturesMatch(expectedSignature(secret, auth, canonical), auth.signature)) {
    throw new AuthFailure("signature");
  }
  return principal;
}

export function principalArn(principal: Principal): string {
  return principal.kind === "admin" ? principal.user.arn : principal.session.assumedRoleArn;
}

export function principalUserId(principal: Principal): string {
  return principal.kind === "admin" ? principal.user.userId : principal.session.assumedRoleId;
}

const ADMINISTRATOR_ACCESS: PolicyDocument = {
  version: "2012-10-17",
  statements: [{ effect: "Allow", action: ["*"], resource: ["*"], conditions: [] }],
};

/** The global condition keys AWS puts in the request context for this principal. */
function principalContext(
  state: PeerState,
  principal: Principal,
  extra: Record<string, string | string[] | undefined>,
): Map<string, string[]> {
  const current = now(state);
  const common = {
    "aws:PrincipalAccount": principalAccount(principal, state),
    "aws:CurrentTime": isoSeconds(current),
    "aws:EpochTime": String(Math.floor(current.getTime() / 1000)),
    "aws:SecureTransport": "false",
    "aws:SourceIp": "127.0.0.1",
    ...extra,
  };
  if (principal.kind === "admin") {
    const name = principal.user.arn.split("/").pop();
    return requestContext({
      ...common,
      "aws:userid": principal.user.userId,
      "aws:username": name,
      "aws:PrincipalArn": principal.user.arn,
      "aws:PrincipalType": "User",
    });
  }
  const s = principal.session;
  const tags: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.tags)) tags[`aws:PrincipalTag/${k}`] = v;
  return requestContext({
    ...common,
    ...tags,
    "aws:userid": s.assumedRoleId,
    "aws:PrincipalArn": s.role.arn,
    "aws:PrincipalType": "AssumedRole",
    "aws:SourceIdentity": s.sourceIdentity,
    "aws:FederatedProvider": s.provider,
    "aws:TokenIssueTime": isoSeconds(s.issuedAt),
  });
}

export function authorizeRequest(
  state: PeerState,
  principal: Principal,
  action: string,
  resource: string,
  extra: Record<string, string | string[] | undefined> = {},
): Decision {
  const context = principalContext(state, principal, extra);
  if (principal.kind === "admin") return authorize([ADMINISTRATOR_ACCESS], [], { action, resource, context });
  const { role, sessionPolicies } = principal.session;
  const identity = [...role.attachedPolicies, ...[...role.inlinePolicies.values()].map((p) => p.document)];
  return authorize(identity, sessionPolicies, { action, resource, context });
}
