// Deny-policy revocation. STS sessions cannot be revoked one by one, but every request is
// evaluated against the role's policies, so an inline Deny on the session's source identity ends
// it at once. Statements are grouped by when their sessions expire (the Sid carries that time)
// and pruned once those sessions are over, so the role's inline policy stays within IAM's size
// limit for as long as revocations come no faster than sessions expire. When the role's budget
// is spent anyway, or IAM refuses the write for good, the session is left to expire and the
// caller is told why: a revocation never hangs the run that asked for it.
import type { IAMClient } from "@aws-sdk/client-iam";
import type { Logger } from "pino";
import { accountOf, RevokerMissing, type RevokerAccounts } from "./aws-accounts.ts";
import { iamSdk, isIamError, isNoSuchEntity, isStsError } from "./aws-sdk.ts";

export const revocationPolicyName = "scoped-step-revocations";
const bucketSeconds = 300;
const sidPrefix = "ScopedStepRevokedUntil";

/** Why a deny could not be written, as a bounded metric label. */
export const fallbackCauses = ["budget-exhausted", "access-denied", "role-not-found", "no-revoker"] as const;
export type FallbackCause = (typeof fallbackCauses)[number];

export type DenyResult =
  | { denied: true }
  | { denied: false; expired: true }
  | { denied: false; expired?: false; cause: FallbackCause; detail: string };

export interface SessionRevoker {
  revoke(session: { roleArn: string; sourceIdentity: string; expiresAt: Date }): Promise<DenyResult>;
  /** Drops statements whose sessions have all expired. */
  prune(roleArn: string, now?: Date): Promise<void>;
}

interface Statement {
  Sid: string;
  Effect: "Deny";
  Action: "*";
  Resource: "*";
  Condition: { StringEquals: { "aws:SourceIdentity": string[] } };
}

export interface PolicyDocument {
  Version: "2012-10-17";
  Statement: Statement[];
}

export const roleName = (roleArn: string): string => roleArn.split("/").pop() ?? roleArn;

/** Pure: the document after adding a session and dropping buckets that ended before `now`. */
export function updateDenyList(
  doc: PolicyDocument | undefined,
  add: { sourceIdentity: string; expiresAt: Date } | undefined,
  now: Date,
): PolicyDocument {
  const statements = new Map<number, Set<string>>();
  for (const s of doc?.Statement ?? []) {
    const until = Number(s.Sid.slice(sidPrefix.length));
    if (!s.Sid.startsWith(sidPrefix) || !Number.isFinite(until)) continue;
    if (until * 1000 <= now.getTime()) continue;
    statements.set(until, new Set(s.Condition.StringEquals["aws:SourceIdentity"]));
  }
  if (add) {
    const until = Math.ceil(add.expiresAt.getTime() / 1000 / bucketSeconds) * bucketSeconds;
    const set = statements.get(until) ?? new Set<string>();
    set.add(add.sourceIdentity);
    statements.set(until, set);
  }
  return {
    Version: "2012-10-17",
    Statement: [...statements.entries()]
      .sort(([a], [b]) => a - b)
      .map(([until, ids]) => ({
        Sid: `${sidPrefix}${until}`,
        Effect: "Deny",
        Action: "*",
        Resource: "*",
        Condition: { StringEquals: { "aws:SourceIdentity": [...ids].sort() } },
      })),
  };
}

const codeOf = (err: unknown): string | undefined =>
  isIamError(err) || isStsError(err) ? err.name.replace(/Exception$/, "") : undefined;

/**
 * IAM (or STS, assuming the revoker role) refused in a way no retry changes: the session is left
 * to expire. Throttling, server and network errors are not here; they are retried.
 */
function permanentCause(err: unknown): FallbackCause | undefined {
  if (err instanceof RevokerMissing) return "no-revoker";
  switch (codeOf(err)) {
    case "LimitExceeded":
      return "budget-exhausted";
    case "AccessDenied":
    case "UnmodifiableEntity":
      return "access-denied";
    case "NoSuchEntity":
      return "role-not-found";
    default:
      return undefined;
  }
}

function fallbackDetail(cause: FallbackCause, roleArn: string, err: unknown): string {
  const aws = err instanceof Error ? ` AWS said: ${err.message}` : "";
  switch (cause) {
    case "budget-exhausted":
      return (
        `the inline policies of role ${roleArn} are at IAM's 10,240-character limit, so the session ` +
        `could not be denied and stays usable until it expires: shorten aws.sessionDuration, spread ` +
        `runs over more roles, or remove other inline policies from the role.${aws}`
      );
    case "access-denied":
      return `the revoker may not write inline policies on role ${roleArn}, so the session stays usable until it expires.${aws}`;
    case "role-not-found":
      return `role ${roleArn} was not found in its account when denying the session.${aws}`;
    case "no-revoker":
      return `${err instanceof Error ? err.message : "no revoker"}; the session stays usable until it expires`;
  }
}

interface Wanted {
  sourceIdentity: string;
  expiresAt: Date;
  settle: (result: DenyResult) => void;
}

export function denyListRevoker(opts: {
  log: Logger;
  /** IAM clients whose writes land in a given account. */
  accounts?: RevokerAccounts;
  /** One client for every account (tests with a single account). */
  client?: IAMClient;
  endpoint?: string;
  now?: () => Date;
}): SessionRevoker {
  const clock = opts.now ?? (() => new Date());
  // IAM is global; its endpoint signs in us-east-1.
  let single = opts.client;
  const iamIn = async (account: string): Promise<IAMClient> => {
    if (opts.accounts) return opts.accounts.iam(account);
    const { IAMClient } = await iamSdk();
    single ??= new IAMClient({ region: "us-east-1", ...(opts.endpoint ? { endpoint: opts.endpoint } : {}) });
    return single;
  };

  // Read-modify-write of one document per role: one write at a time, and revocations that arrive
  // while a write is in flight are applied together by the next one (100 runs ending at once cost
  // a few IAM writes, not 100 in a row).
  interface Pending {
    sessions: Wanted[];
    done: Promise<void>;
  }
  const queued = new Map<string, Pending>();
  const running = new Map<string, Promise<void>>();
  const batch = (roleArn: string, add?: Wanted, at?: Date): Promise<void> => {
    let pending = queued.get(roleArn);
    if (!pending) {
      const sessions: Wanted[] = [];
      const previous = running.get(roleArn) ?? Promise.resolve();
      const done = previous
        .catch(() => undefined)
        .then(async () => {
          queued.delete(roleArn);
          await apply(roleArn, sessions, at ?? clock());
        });
      running.set(roleArn, done);
      pending = { sessions, done };
      queued.set(roleArn, pending);
    }
    if (add) pending.sessions.push(add);
    return pending.done;
  };

  /** Prunes, then adds the sessions: all in one write, or one by one once the budget is short. */
  const apply = async (roleArn: string, sessions: Wanted[], now: Date): Promise<void> => {
    const role = roleName(roleArn);
    const fallBack = (from: Wanted[], err: unknown, cause: FallbackCause) => {
      const detail = fallbackDetail(cause, roleArn, err);
      for (const s of from) s.settle({ denied: false, cause, detail });
    };
    let iam: IAMClient;
    let doc: PolicyDocument | undefined;
    try {
      iam = await iamIn(accountOf(roleArn));
      doc = await read(iam, role);
    } catch (err) {
      const cause = permanentCause(err);
      if (!cause) throw err;
      return fallBack(sessions, err, cause);
    }
    const before = JSON.stringify(doc ?? null);
    let current = updateDenyList(doc, undefined, now);
    const together = sessions.reduce((d, s) => updateDenyList(d, s, now), current);
    try {
      if (JSON.stringify(together) !== before) await write(iam, role, together);
      for (const s of sessions) s.settle({ denied: true });
      return;
    } catch (err) {
      const cause = permanentCause(err);
      if (!cause) throw err;
      if (cause !== "budget-exhausted" || sessions.length === 1) {
        if (cause === "budget-exhausted" && JSON.stringify(current) !== before)
          await write(iam, role, current);
        return fallBack(sessions, err, cause);
      }
    }
    // Not all of them fit: deny as many as do, in arrival order, and let the rest expire.
    let written = false;
    for (const [i, s] of sessions.entries()) {
      const next = updateDenyList(current, s, now);
      try {
        await write(iam, role, next);
      } catch (err) {
        if (permanentCause(err) !== "budget-exhausted") throw err;
        if (!written && JSON.stringify(current) !== before) await write(iam, role, current);
        return fallBack(sessions.slice(i), err, "budget-exhausted");
      }
      written = true;
      current = next;
      s.settle({ denied: true });
    }
  };

  const read = async (iam: IAMClient, role: string): Promise<PolicyDocument | undefined> => {
    try {
      const { GetRolePolicyCommand } = await iamSdk();
      const got = await iam.send(
        new GetRolePolicyCommand({ RoleName: role, PolicyName: revocationPolicyName }),
      );
      return JSON.parse(decodeURIComponent(got.PolicyDocument ?? "")) as PolicyDocument;
    } catch (err) {
      // The policy is missing (or the role: the write that follows says which).
      if (isNoSuchEntity(err)) return undefined;
      throw err;
    }
  };

  const write = async (iam: IAMClient, role: string, doc: PolicyDocument): Promise<void> => {
    const { DeleteRolePolicyCommand, PutRolePolicyCommand } = await iamSdk();
    if (doc.Statement.length === 0) {
      try {
        await iam.send(new DeleteRolePolicyCommand({ RoleName: role, PolicyName: revocationPolicyName }));
      } catch (err) {
        if (!isNoSuchEntity(err)) throw err;
      }
      return;
    }
    await iam.send(
      new PutRolePolicyCommand({
        RoleName: role,
        PolicyName: revocationPolicyName,
        PolicyDocument: JSON.stringify(doc),
      }),
    );
  };

  return {
    async revoke({ roleArn, sourceIdentity, expiresAt }) {
      if (expiresAt.getTime() <= clock().getTime()) return { denied: false, expired: true };
      let settled: DenyResult | undefined;
      await batch(roleArn, { sourceIdentity, expiresAt, settle: (r) => (settled = r) });
      if (!settled) throw new Error(`revocation of ${sourceIdentity} on ${roleArn} was never settled`);
      const result: DenyResult = settled;
      const until = expiresAt.toISOString();
      if (result.denied) opts.log.info({ roleArn, sourceIdentity, until }, "session denied on the role");
      else if (!result.expired)
        opts.log.warn(
          { roleArn, sourceIdentity, until, cause: result.cause, detail: result.detail },
          "session could not be denied; it stays usable until it expires",
        );
      return result;
    },
    async prune(roleArn, now) {
      try {
        await batch(roleArn, undefined, now);
      } catch (err) {
        // Pruning is housekeeping: a role the revoker cannot reach is reported, not retried hot.
        if (!permanentCause(err)) throw err;
        opts.log.warn({ roleArn, err }, "could not prune the role's revocations");
      }
    },
  };
}
