// The AWS test peer: one HTTP server on loopback speaking STS, IAM (query protocol), S3 and
// CloudFront's CreateInvalidation (REST), ECR's GetAuthorizationToken (JSON) and an ECR registry
// (the OCI distribution API under /v2/) to the real AWS SDK, CLI and registry clients, so minting,
// scoping and revocation are exercised over the real wire protocols. Requests are routed by the
// SigV4 credential scope's service; unsigned form posts (AssumeRoleWithWebIdentity) by their
// Action; unsigned requests under /v2/ to the registry; anything else unsigned is anonymous S3.
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { AuthFailure, authenticate, principalArn, queryAuthError, s3AuthError } from "./auth.ts";
import type { Principal } from "./auth.ts";
import {
  cloudFrontError,
  cloudFrontTarget,
  createInvalidation,
  distributionArn,
  type Invalidation,
} from "./cloudfront.ts";
import {
  ecrError,
  handleEcrApi,
  handleRegistry,
  repositoryArn,
  startRegistry,
  type Registry,
} from "./ecr.ts";
import { IAM_ACTIONS, handleIam } from "./iam.ts";
import { issuerHostPath } from "./oidc.ts";
import { parsePolicy, parsePolicyValue } from "./policy.ts";
import type { PolicyDocument, PolicyKind } from "./policy.ts";
import { handleS3, s3Arn, s3PayloadHash, s3Target, storeObject } from "./s3.ts";
import type { HttpReply } from "./s3.ts";
import { MalformedAuthorization, parseAuthorization, sha256Hex } from "./sigv4.ts";
import type { SigV4Authorization, WireRequest } from "./sigv4.ts";
import { awsId, now, parseRoleArn, providerKey, secretKey } from "./state.ts";
import type { CallRecord, PeerState, Role, Session } from "./state.ts";
import { assumeRole, assumeRoleWithWebIdentity, getCallerIdentity } from "./sts.ts";
import {
  AwsError,
  IAM_NAMESPACE,
  STS_NAMESPACE,
  queryError,
  queryResponse,
  requestId,
  s3Error,
  statusForCode,
} from "./wire.ts";

export type { CallRecord } from "./state.ts";

export interface AwsPeerOptions {
  /** The address it listens on; default 127.0.0.1. Pods on a real node reach it at the node's. */
  host?: string;
  /**
   * The admin user's account, where providers are registered unless another is named. Roles may
   * be created in any account. Default 111122223333.
   */
  accountId?: string;
  /** The port to listen on; a free one when absent. */
  port?: number;
  /** How long STS waits for the issuer's discovery document and JWKS. Default 5000 ms. */
  jwksFetchTimeoutMs?: number;
  /**
   * Keep each issuer's JWKS as long as its Cache-Control max-age says, as STS does, rather than
   * fetching it for every call (the default, so that an issuer taken down fails the next call).
   */
  cacheKeys?: boolean;
}

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface OidcProviderInput {
  /** The issuer URL exactly as the tokens' `iss` says it (http on loopback is accepted). */
  url: string;
  /** The account to register it in; the admin's account by default. */
  accountId?: string;
  /** Client ids: the token's `aud` (or `azp`) must be one of them. */
  audiences: string[];
  /** Kept for the record; the peer trusts the issuer's TLS through Node's own CA store. */
  thumbprints?: string[];
}

/** A JSON policy document, as an object or as its text. */
export type PolicyInput = string | Record<string, unknown>;

export interface RoleInput {
  arn: string;
  trustPolicy: PolicyInput;
  /** 3600..43200 seconds; default 3600. */
  maxSessionDuration?: number;
  /** The role's identity policies (attached, so outside the inline size limit). */
  permissionPolicies?: PolicyInput[];
  /** Inline policies to start with, as PutRolePolicy would have stored them. */
  inlinePolicies?: Record<string, PolicyInput>;
}

/** An issued session, without its secret key and session token. */
export interface SessionInfo {
  accessKeyId: string;
  roleArn: string;
  roleSessionName: string;
  assumedRoleArn: string;
  assumedRoleId: string;
  subject: string;
  audience: string;
  provider: string;
  sourceIdentity: string | undefined;
  tags: Record<string, string>;
  transitiveTagKeys: string[];
  sessionPolicy: string | undefined;
  policyArns: string[];
  issuedAt: Date;
  expiration: Date;
  /** Bytes of the session token, which carries the session policies and tags. */
  sessionTokenSize: number;
  /** Percentage of the maximum session token size (AWS's SessionTokenUtilization). */
  sessionTokenUtilization: number;
}

export interface AwsPeer {
  /** `http://<host>:<port>`: the endpoint for the STS, IAM and S3 clients alike. */
  endpoint: string;
  accountId: string;
  /** A user with AdministratorAccess, for IAM calls (sign them in us-east-1, as IAM requires). */
  adminCredentials: AwsCredentials;
  stop(): Promise<void>;
  registerOidcProvider(input: OidcProviderInput): { arn: string };
  createRole(input: RoleInput): { arn: string; roleId: string; roleName: string };
  /** Defines a managed policy that PolicyArns may name (a few AWS-managed ones exist already). */
  createManagedPolicy(arn: string, document: PolicyInput): void;
  putObject(bucket: string, key: string, body: string | Uint8Array, contentType?: string): void;
  getObject(bucket: string, key: string): Buffer | undefined;
  /** An empty bucket (putObject makes its bucket too). */
  createBucket(bucket: string): void;
  /** A CloudFront distribution in the admin's account, for CreateInvalidation to name. */
  createDistribution(id: string): { arn: string };
  /** The invalidations made on a distribution, oldest first. */
  invalidations(id: string): Invalidation[];
  /**
   * Starts the ECR registry (Debian's docker-registry behind the peer's own /v2/), for repositories
   * in `region` of the admin's account. Pushes go to `<peer host:port>/<repository>`.
   */
  startRegistry(region: string): Promise<void>;
  /** An empty ECR repository in the admin's account. */
  createRepository(name: string): { arn: string };
  /** What the registry holds for `repository:reference`, fetched from it directly. */
  registryManifest(
    repository: string,
    reference: string,
  ): Promise<{ digest: string; mediaType: string; body: Buffer } | undefined>;
  sessions(): SessionInfo[];
  /**
   * Every secret the peer handed out or was shown (secret access keys, session tokens, web identity
   * tokens), for tests that search what was written for them. Never for anything else.
   */
  issuedSecrets(): string[];
  calls(): CallRecord[];
  /** The next `count` calls of `action` (e.g. "AssumeRoleWithWebIdentity", "GetObject") fail so. */
  failNext(action: string, code: string, message?: string, count?: number): void;
  /** Forgets the failures `failNext` queued and that have not happened yet. */
  clearFailures(): void;
  /** A role's inline policies: name -> document text. By ARN, or by name in the admin's account. */
  rolePolicies(role: string): Record<string, string>;
  /** Moves the peer's clock (and the Date it answers with) forward; the SDK corrects its skew. */
  advanceClock(seconds: number): void;
  now(): Date;
}

const AWS_MANAGED: Record<string, Record<string, unknown>> = {
  "arn:aws:iam::aws:policy/AdministratorAccess": {
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Action: "*", Resource: "*" }],
  },
  "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess": {
    Version: "2012-10-17",
    Statement: [
      {
        Effect: "Allow",
        Action: ["s3:Get*", "s3:List*", "s3:Describe*", "s3-object-lambda:Get*", "s3-object-lambda:List*"],
        Resource: "*",
      },
    ],
  },
  "arn:aws:iam::aws:policy/AmazonS3FullAccess": {
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Action: ["s3:*", "s3-object-lambda:*"], Resource: "*" }],
  },
};

function toDocument(input: PolicyInput, kind: PolicyKind): PolicyDocument {
  return typeof input === "string" ? parsePolicy(input, kind) : parsePolicyValue(input, kind);
}

function policyText(input: PolicyInput): string {
  return typeof input === "string" ? input : JSON.stringify(input);
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(",") : value;
}

/** One request on its way through the peer. */
interface Exchange {
  id: string;
  wire: WireRequest;
  headers: IncomingHttpHeaders;
  body: Buffer;
  auth: SigV4Authorization | undefined;
  malformedAuth: string | undefined;
  record: Partial<CallRecord>;
}

function takeInjected(state: PeerState, action: string, service: string): AwsError | undefined {
  const failure = state.failures.find((f) => f.action === action && f.remaining > 0);
  if (!failure) return undefined;
  failure.remaining -= 1;
  state.failures = state.failures.filter((f) => f.remaining > 0);
  return new AwsError(failure.code, failure.message, statusForCode(service, failure.code));
}

function authenticateExchange(state: PeerState, ex: Exchange, service: string): Principal {
  if (ex.malformedAuth !== undefined) throw new AuthFailure("malformed", ex.malformedAuth);
  if (!ex.auth) throw new AuthFailure("missing");
  const payloadHash = service === "s3" ? s3PayloadHash(ex.headers, ex.body) : sha256Hex(ex.body);
  const principal = authenticate(state, ex.wire, ex.headers, ex.auth, service, payloadHash);
  ex.record.principal = principalArn(principal);
  ex.record.accessKeyId = ex.auth.accessKeyId;
  return principal;
}

function queryParams(ex: Exchange): URLSearchParams {
  const params = new URLSearchParams(ex.wire.rawQuery);
  if (header(ex.headers, "content-type")?.startsWith("application/x-www-form-urlencoded")) {
    for (const [k, v] of new URLSearchParams(ex.body.toString("utf8"))) params.append(k, v);
  }
  return params;
}

async function handleQuery(state: PeerState, service: "sts" | "iam", ex: Exchange): Promise<HttpReply> {
  const namespace = service === "sts" ? STS_NAMESPACE : IAM_NAMESPACE;
  const params = queryParams(ex);
  const action = params.get("Action") ?? "";
  ex.record.action = action;
  const headers = { "Content-Type": "text/xml", "x-amzn-RequestId": ex.id };
  try {
    const injected = takeInjected(state, action, service);
    if (injected) {
      ex.record.injected = true;
      throw injected;
    }
    let result: string | undefined;
    if (service === "sts" && action === "AssumeRoleWithWebIdentity") {
      result = await assumeRoleWithWebIdentity(state, params, ex.record);
    } else {
      let principal: Principal;
      try {
        principal = authenticateExchange(state, ex, service);
      } catch (err) {
        throw err instanceof AuthFailure ? queryAuthError(err) : err;
      }
      if (service === "iam") result = handleIam(state, action, params, principal);
      else if (action === "GetCallerIdentity") result = getCallerIdentity(state, principal);
      else if (action === "AssumeRole") result = assumeRole(state, params, principal, ex.record);
      else throw new AwsError("InvalidAction", `Could not find operation ${action} for version 2011-06-15`);
    }
    return { status: 200, headers, body: queryResponse(namespace, action, ex.id, result) };
  } catch (err) {
    const error = err instanceof AwsError ? err : internalError(err, "InternalFailure");
    return { status: error.status, headers, body: queryError(namespace, error, ex.id) };
  }
}

function handleS3Exchange(state: PeerState, ex: Exchange, method: string): HttpReply {
  const query = new URLSearchParams(ex.wire.rawQuery);
  const headers = {
    "Content-Type": "application/xml",
    "x-amz-request-id": ex.id,
    "x-amz-id-2": randomBytes(32).toString("base64"),
  };
  try {
    const target = s3Target(method, ex.wire.rawPath, query);
    ex.record.action = target.operation;
    ex.record.resource = s3Arn(target.bucket, target.key);
    const injected = takeInjected(state, target.operation, "s3");
    if (injected) {
      ex.record.injected = true;
      throw injected;
    }
    let principal: Principal | undefined;
    if (ex.auth || ex.malformedAuth !== undefined) {
      try {
        principal = authenticateExchange(state, ex, "s3");
      } catch (err) {
        throw err instanceof AuthFailure ? s3AuthError(err, now(state)) : err;
      }
    }
    const reply = handleS3(
      state,
      { method, rawPath: ex.wire.rawPath, query, headers: ex.headers, body: ex.body, principal },
      target,
    );
    return { ...reply, headers: { ...headers, ...reply.headers } };
  } catch (err) {
    ex.record.action ??= `${method} ${ex.wire.rawPath}`;
    const error = err instanceof AwsError ? err : internalError(err, "InternalError");
    return { status: error.status, headers, body: s3Error(error, ex.id) };
  }
}

function handleCloudFrontExchange(state: PeerState, ex: Exchange, method: string): HttpReply {
  const headers = { "Content-Type": "text/xml", "x-amz-request-id": ex.id };
  try {
    const target = cloudFrontTarget(method, ex.wire.rawPath);
    if (!target) throw notImplementedHere(`${method} ${ex.wire.rawPath}`);
    ex.record.action = target.operation;
    ex.record.resource = target.distributionId;
    const injected = takeInjected(state, target.operation, "cloudfront");
    if (injected) {
      ex.record.injected = true;
      throw injected;
    }
    let principal: Principal;
    try {
      principal = authenticateExchange(state, ex, "cloudfront");
    } catch (err) {
      throw err instanceof AuthFailure ? queryAuthError(err) : err;
    }
    const reply = createInvalidation(state, principal, target.distributionId, ex.body.toString("utf8"));
    return { ...reply, headers: { ...headers, ...reply.headers } };
  } catch (err) {
    ex.record.action ??= `${method} ${ex.wire.rawPath}`;
    const error = err instanceof AwsError ? err : internalError(err, "InternalError");
    return { status: error.status, headers, body: cloudFrontError(error, ex.id) };
  }
}

function handleEcrExchange(state: PeerState, ex: Exchange): HttpReply {
  const headers = { "Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": ex.id };
  const target = header(ex.headers, "x-amz-target") ?? "";
  try {
    let principal: Principal;
    try {
      principal = authenticateExchange(state, ex, "ecr");
    } catch (err) {
      throw err instanceof AuthFailure ? queryAuthError(err) : err;
    }
    const injected = takeInjected(state, target.split(".").pop() ?? "", "ecr");
    if (injected) {
      ex.record.injected = true;
      throw injected;
    }
    const reply = handleEcrApi(state, principal, target, ex.auth?.region ?? "", ex.record);
    return { ...reply, headers: { ...headers, ...reply.headers } };
  } catch (err) {
    ex.record.action ??= target;
    const error = err instanceof AwsError ? err : internalError(err, "ServerException");
    return { status: error.status, headers, body: ecrError(error) };
  }
}

const notImplementedHere = (what: string) =>
  new AwsError("NotImplemented", `The AWS peer does not implement ${what}`, 501);

function internalError(err: unknown, code: string): AwsError {
  console.error("aws peer: internal error", err);
  return new AwsError(code, "We encountered an internal error. Please try again.", 500);
}

/** Which service a request is for: the scope's service if signed, else the query Action's. */
function serviceOf(ex: Exchange): string {
  if (ex.auth) return ex.auth.service;
  if (ex.wire.rawPath === "/") {
    const action = queryParams(ex).get("Action");
    if (action) return IAM_ACTIONS.has(action) ? "iam" : "sts";
  }
  if (ex.wire.rawPath === "/v2" || ex.wire.rawPath.startsWith("/v2/")) return "registry";
  return "s3";
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

async function serve(
  state: PeerState,
  registry: () => Registry | undefined,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const method = req.method ?? "GET";
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  const ex: Exchange = {
    id: requestId(),
    wire: {
      method,
      rawPath: q < 0 ? url : url.slice(0, q),
      rawQuery: q < 0 ? "" : url.slice(q + 1),
      rawHeaders: req.rawHeaders,
    },
    headers: req.headers,
    body: await readBody(req),
    auth: undefined,
    malformedAuth: undefined,
    record: {},
  };
  const authorization = header(req.headers, "authorization");
  if (authorization !== undefined) {
    try {
      ex.auth = parseAuthorization(
        authorization,
        header(req.headers, "date"),
        header(req.headers, "x-amz-date"),
      );
    } catch (err) {
      if (!(err instanceof MalformedAuthorization)) throw err;
      ex.malformedAuth = err.message;
    }
  }
  const service = serviceOf(ex);
  let reply: HttpReply;
  if (service === "sts" || service === "iam") reply = await handleQuery(state, service, ex);
  else if (service === "s3") reply = handleS3Exchange(state, ex, method);
  else if (service === "cloudfront") reply = handleCloudFrontExchange(state, ex, method);
  else if (service === "ecr") reply = handleEcrExchange(state, ex);
  else if (service === "registry") {
    const { rawPath, rawQuery } = ex.wire;
    reply = await handleRegistry(
      state,
      registry(),
      method,
      rawPath,
      rawQuery,
      ex.headers,
      ex.body,
      ex.record,
    );
  } else {
    const error = new AwsError("InvalidAction", `The AWS peer does not implement the ${service} service`);
    reply = {
      status: 400,
      headers: { "Content-Type": "text/xml" },
      body: queryError(STS_NAMESPACE, error, ex.id),
    };
    ex.record.action = `${service}:?`;
  }

  const text = String(reply.body);
  const outcome =
    reply.status < 300
      ? "ok"
      : (/<Code>([^<]*)<\/Code>/.exec(text)?.[1] ??
        /"(?:__type|code)":"([^"]*)"/.exec(text)?.[1] ??
        String(reply.status));
  const known = ["iam", "s3", "cloudfront", "ecr"] as const;
  state.calls.push({
    ...ex.record,
    at: now(state),
    service: service === "registry" ? "ecr" : (known.find((k) => k === service) ?? "sts"),
    action: ex.record.action ?? "",
    outcome,
    status: reply.status,
    injected: ex.record.injected ?? false,
  });

  const body = method === "HEAD" ? "" : reply.body;
  res.writeHead(reply.status, {
    ...reply.headers,
    Date: now(state).toUTCString(),
    ...(method === "HEAD" ? {} : { "Content-Length": String(Buffer.byteLength(body)) }),
  });
  res.end(body);
}

function sessionInfo(s: Session): SessionInfo {
  return {
    accessKeyId: s.accessKeyId,
    roleArn: s.role.arn,
    roleSessionName: s.roleSessionName,
    assumedRoleArn: s.assumedRoleArn,
    assumedRoleId: s.assumedRoleId,
    subject: s.subject,
    audience: s.audience,
    provider: s.provider,
    sourceIdentity: s.sourceIdentity,
    tags: { ...s.tags },
    transitiveTagKeys: [...s.transitiveTagKeys],
    sessionPolicy: s.sessionPolicy,
    policyArns: [...s.policyArns],
    issuedAt: s.issuedAt,
    expiration: s.expiration,
    sessionTokenSize: s.sessionTokenSize,
    sessionTokenUtilization: s.sessionTokenUtilization,
  };
}

export async function startAwsPeer(opts: AwsPeerOptions = {}): Promise<AwsPeer> {
  const accountId = opts.accountId ?? "111122223333";
  const admin = {
    accessKeyId: awsId("AKIA"),
    secretAccessKey: secretKey(),
    arn: `arn:aws:iam::${accountId}:user/aws-peer-admin`,
    userId: awsId("AIDA", 17),
  };
  const state: PeerState = {
    accountId,
    clockOffsetMs: 0,
    fetchTimeoutMs: opts.jwksFetchTimeoutMs ?? 5000,
    ...(opts.cacheKeys ? { keyCache: new Map() } : {}),
    admin,
    providers: new Map(),
    roles: new Map(),
    managedPolicies: new Map(),
    sessions: new Map(),
    tokensSeen: new Set(),
    buckets: new Map(),
    distributions: new Map(),
    registryRegion: "us-east-1",
    repositories: new Set(),
    registryPasswords: new Map(),
    calls: [],
    failures: [],
  };
  for (const [arn, doc] of Object.entries(AWS_MANAGED))
    state.managedPolicies.set(arn, toDocument(doc, "identity"));

  let registry: Registry | undefined;
  const server = createServer((req, res) => {
    serve(state, () => registry, req, res).catch((err: unknown) => {
      console.error("aws peer: request failed", err);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  const host = opts.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;

  const findRole = (nameOrArn: string): Role => {
    for (const role of state.roles.values()) {
      if (role.arn === nameOrArn || (role.accountId === accountId && role.name === nameOrArn)) return role;
    }
    throw new Error(`aws peer: no role ${nameOrArn}`);
  };

  return {
    endpoint: `http://${host}:${port}`,
    accountId,
    adminCredentials: { accessKeyId: admin.accessKeyId, secretAccessKey: admin.secretAccessKey },

    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await registry?.stop();
    },

    registerOidcProvider({ url, audiences, thumbprints = [], accountId: owner = accountId }) {
      const parsed = new URL(url);
      if (!["http:", "https:"].includes(parsed.protocol) || parsed.search || parsed.hash) {
        throw new Error(`aws peer: an OIDC provider URL is http(s) without query or fragment, not ${url}`);
      }
      if (audiences.length === 0) throw new Error("aws peer: an OIDC provider needs at least one audience");
      const hostPath = issuerHostPath(url);
      const arn = `arn:aws:iam::${owner}:oidc-provider/${hostPath}`;
      state.providers.set(providerKey(owner, hostPath), {
        accountId: owner,
        url,
        hostPath,
        arn,
        audiences: [...audiences],
        thumbprints: [...thumbprints],
      });
      return { arn };
    },

    createRole({
      arn,
      trustPolicy,
      maxSessionDuration = 3600,
      permissionPolicies = [],
      inlinePolicies = {},
    }) {
      const parts = parseRoleArn(arn);
      if (!parts) throw new Error(`aws peer: ${arn} is not a role ARN`);
      const taken = [...state.roles.values()].some(
        (r) => r.accountId === parts.accountId && r.name === parts.name,
      );
      if (state.roles.has(arn) || taken) {
        throw new Error(`aws peer: role ${parts.name} already exists`);
      }
      if (!Number.isInteger(maxSessionDuration) || maxSessionDuration < 3600 || maxSessionDuration > 43200) {
        throw new Error("aws peer: maxSessionDuration must be 3600..43200 seconds");
      }
      const role: Role = {
        arn,
        accountId: parts.accountId,
        name: parts.name,
        id: awsId("AROA", 17),
        trustPolicy: toDocument(trustPolicy, "trust"),
        maxSessionDuration,
        attachedPolicies: permissionPolicies.map((p) => toDocument(p, "identity")),
        inlinePolicies: new Map(
          Object.entries(inlinePolicies).map(([name, p]) => [
            name,
            { text: policyText(p), document: toDocument(p, "identity") },
          ]),
        ),
      };
      state.roles.set(arn, role);
      return { arn, roleId: role.id, roleName: role.name };
    },

    createManagedPolicy(arn, document) {
      state.managedPolicies.set(arn, toDocument(document, "identity"));
    },

    putObject(bucket, key, body, contentType) {
      storeObject(state, bucket, key, Buffer.from(body), contentType);
    },

    createBucket(bucket) {
      if (!state.buckets.has(bucket)) state.buckets.set(bucket, new Map());
    },

    getObject(bucket, key) {
      return state.buckets.get(bucket)?.get(key)?.body;
    },

    createDistribution(id) {
      if (!state.distributions.has(id)) state.distributions.set(id, []);
      return { arn: distributionArn(accountId, id) };
    },

    invalidations: (id) => [...(state.distributions.get(id) ?? [])],

    async startRegistry(region) {
      state.registryRegion = region;
      registry ??= await startRegistry();
    },

    createRepository(name) {
      state.repositories.add(name);
      return { arn: repositoryArn(state.registryRegion, accountId, name) };
    },

    async registryManifest(repository, reference) {
      if (!registry) throw new Error("aws peer: the registry is not started");
      const accept = [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
      ].join(", ");
      const path = `/v2/${repository}/manifests/${reference}`;
      const reply = await registry.forward("GET", path, "", { host: "localhost", accept }, Buffer.alloc(0));
      if (reply.status === 404) return undefined;
      if (reply.status !== 200) throw new Error(`aws peer: registry answered ${reply.status} to GET ${path}`);
      return {
        digest: reply.headers["docker-content-digest"] ?? "",
        mediaType: reply.headers["content-type"] ?? "",
        body: Buffer.from(reply.body),
      };
    },

    sessions: () => [...state.sessions.values()].map(sessionInfo),
    issuedSecrets: () => [
      ...[...state.sessions.values()].flatMap((s) => [s.secretAccessKey, s.sessionToken]),
      ...state.tokensSeen,
      ...[...state.registryPasswords.keys()].flatMap((p) => [p, Buffer.from(`AWS:${p}`).toString("base64")]),
    ],

    calls: () => state.calls.map((c) => ({ ...c })),

    failNext(action, code, message = `Injected ${code}`, count = 1) {
      state.failures.push({ action, code, message, remaining: count });
    },

    clearFailures() {
      state.failures = [];
    },

    rolePolicies(roleName) {
      const role = findRole(roleName);
      return Object.fromEntries([...role.inlinePolicies].map(([name, p]) => [name, p.text]));
    },

    advanceClock(seconds) {
      state.clockOffsetMs += seconds * 1000;
    },

    now: () => now(state),
  };
}
