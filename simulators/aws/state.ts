// Everything the AWS peer remembers: OIDC providers, roles and their policies, issued sessions, S3
// objects, the request log and the injected failures. Plain data; the services change it.
import { randomBytes } from "node:crypto";
import type { PolicyDocument } from "./policy.ts";

export interface OidcProvider {
  /** The account the provider is registered in: only roles of that account can trust it. */
  accountId: string;
  url: string;
  /** The issuer without its scheme: the provider ARN's resource and the condition keys' prefix. */
  hostPath: string;
  arn: string;
  audiences: string[];
  thumbprints: string[];
}

export interface Role {
  arn: string;
  accountId: string;
  name: string;
  /** The `AROA…` unique id that prefixes every session's AssumedRoleId. */
  id: string;
  trustPolicy: PolicyDocument;
  maxSessionDuration: number;
  /** Identity policies attached to the role (they do not count against the inline size limit). */
  attachedPolicies: PolicyDocument[];
  /** Inline policies as PutRolePolicy stored them: name -> document text. */
  inlinePolicies: Map<string, { text: string; document: PolicyDocument }>;
}

export interface Session {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  role: Role;
  roleSessionName: string;
  assumedRoleId: string;
  assumedRoleArn: string;
  subject: string;
  audience: string;
  provider: string;
  sourceIdentity: string | undefined;
  tags: Record<string, string>;
  transitiveTagKeys: string[];
  sessionPolicy: string | undefined;
  policyArns: string[];
  /** Parsed inline session policy plus the managed session policies, empty when none was passed. */
  sessionPolicies: PolicyDocument[];
  issuedAt: Date;
  expiration: Date;
  sessionTokenSize: number;
  /** Percentage of the maximum session token size used (also sent as PackedPolicySize). */
  sessionTokenUtilization: number;
}

/** A long-term credential with every permission, for tests and for the controller's IAM calls. */
export interface AdminUser {
  accessKeyId: string;
  secretAccessKey: string;
  arn: string;
  userId: string;
}

import type { Invalidation } from "./cloudfront.ts";
import type { RegistryPassword } from "./ecr.ts";
import type { KeyCache } from "./oidc.ts";

export interface StoredObject {
  body: Buffer;
  contentType: string;
  etag: string;
  lastModified: Date;
  checksums: Record<string, string>;
}

export interface CallRecord {
  at: Date;
  service: "sts" | "iam" | "s3" | "cloudfront" | "ecr";
  action: string;
  /** "ok", or the AWS error code that was answered. */
  outcome: string;
  status: number;
  injected: boolean;
  /** Who called: the assumed-role or user ARN, when the request was signed by a known key. */
  principal?: string;
  accessKeyId?: string;
  roleArn?: string;
  roleSessionName?: string;
  resource?: string;
}

export interface InjectedFailure {
  action: string;
  code: string;
  message: string;
  remaining: number;
}

export interface PeerState {
  /** The account of the admin user: the controller's own account in tests. */
  accountId: string;
  /** Milliseconds added to the real clock, so tests can let sessions expire without sleeping. */
  clockOffsetMs: number;
  fetchTimeoutMs: number;
  /** Issuers' key sets kept between calls, when the peer caches them. */
  keyCache?: KeyCache;
  admin: AdminUser;
  /** Keyed by `<account>/<issuer host and path>`: each account registers its own providers. */
  providers: Map<string, OidcProvider>;
  roles: Map<string, Role>;
  managedPolicies: Map<string, PolicyDocument>;
  sessions: Map<string, Session>;
  /** Every web identity token AssumeRoleWithWebIdentity was given, accepted or not. */
  tokensSeen: Set<string>;
  buckets: Map<string, Map<string, StoredObject>>;
  /** CloudFront distributions of the admin's account, by id, with the invalidations made. */
  distributions: Map<string, Invalidation[]>;
  /** ECR: the region of the one registry, its repositories by name, and the passwords issued. */
  registryRegion: string;
  repositories: Set<string>;
  registryPasswords: Map<string, RegistryPassword>;
  calls: CallRecord[];
  failures: InjectedFailure[];
}

export function now(state: PeerState): Date {
  return new Date(Date.now() + state.clockOffsetMs);
}

export const providerKey = (accountId: string, hostPath: string): string => `${accountId}/${hostPath}`;

/** The account a principal acts in: IAM calls land there, and it is the aws:PrincipalAccount. */
export function principalAccount(
  principal: { kind: "admin" } | { kind: "session"; session: Session },
  state: PeerState,
): string {
  return principal.kind === "admin" ? state.accountId : principal.session.role.accountId;
}

const ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** AWS unique ids: a four-letter type prefix (AROA, ASIA, AKIA, AIDA) and upper-case base32. */
export function awsId(prefix: string, length = 16): string {
  const bytes = randomBytes(length);
  let id = prefix;
  for (const b of bytes) id += ID_ALPHABET.charAt(b % 32);
  return id;
}

export function secretKey(): string {
  return randomBytes(30).toString("base64");
}

/** `arn:aws:iam::<account>:role/<path/>name` -> its parts, or undefined when it is not a role ARN. */
export function parseRoleArn(arn: string): { accountId: string; path: string; name: string } | undefined {
  const m = /^arn:aws:iam::(\d{12}):role(\/(?:[\x21-\x7e]*\/)?)([\w+=,.@-]{1,64})$/.exec(arn);
  if (!m?.[1] || !m[3]) return undefined;
  return { accountId: m[1], path: m[2] ?? "/", name: m[3] };
}
