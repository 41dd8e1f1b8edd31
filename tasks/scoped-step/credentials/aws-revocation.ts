// Deny-policy revocation. STS sessions cannot be revoked one by one, but every request is
// evaluated against the role's policies, so an inline Deny on the session's source identity ends
// it at once. Statements are grouped by when their sessions expire (the Sid carries that time)
// and pruned once those sessions are over, so the role's inline policy never outgrows IAM's
// size limit.
import {
  DeleteRolePolicyCommand,
  GetRolePolicyCommand,
  IAMClient,
  NoSuchEntityException,
  PutRolePolicyCommand,
} from "@aws-sdk/client-iam";
import type { Logger } from "pino";

export const revocationPolicyName = "scoped-step-revocations";
const bucketSeconds = 300;
const sidPrefix = "ScopedStepRevokedUntil";

export interface SessionRevoker {
  revoke(session: { roleArn: string; sourceIdentity: string; expiresAt: Date }): Promise<void>;
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

interface PolicyDocument {
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

export function denyListRevoker(opts: {
  log: Logger;
  endpoint?: string;
  client?: IAMClient;
}): SessionRevoker {
  // IAM is global; its endpoint signs in us-east-1.
  const iam =
    opts.client ??
    new IAMClient({ region: "us-east-1", ...(opts.endpoint ? { endpoint: opts.endpoint } : {}) });
  // Read-modify-write of one document per role: one write at a time, and revocations that arrive
  // while a write is in flight are applied together by the next one (100 runs ending at once cost
  // a few IAM writes, not 100 in a row).
  interface Pending {
    sessions: { sourceIdentity: string; expiresAt: Date }[];
    done: Promise<void>;
  }
  const queued = new Map<string, Pending>();
  const running = new Map<string, Promise<void>>();
  const batch = (
    role: string,
    add?: { sourceIdentity: string; expiresAt: Date },
    at?: Date,
  ): Promise<void> => {
    let pending = queued.get(role);
    if (!pending) {
      const sessions: Pending["sessions"] = [];
      const previous = running.get(role) ?? Promise.resolve();
      const done = previous
        .catch(() => undefined)
        .then(async () => {
          queued.delete(role);
          const now = at ?? new Date();
          let doc = await read(role);
          const before = JSON.stringify(doc ?? null);
          doc = updateDenyList(doc, undefined, now);
          for (const session of sessions) doc = updateDenyList(doc, session, now);
          if (JSON.stringify(doc) !== before) await write(role, doc);
        });
      running.set(role, done);
      pending = { sessions, done };
      queued.set(role, pending);
    }
    if (add) pending.sessions.push(add);
    return pending.done;
  };

  const read = async (role: string): Promise<PolicyDocument | undefined> => {
    try {
      const got = await iam.send(
        new GetRolePolicyCommand({ RoleName: role, PolicyName: revocationPolicyName }),
      );
      return JSON.parse(decodeURIComponent(got.PolicyDocument ?? "")) as PolicyDocument;
    } catch (err) {
      if (err instanceof NoSuchEntityException) return undefined;
      throw err;
    }
  };

  const write = async (role: string, doc: PolicyDocument): Promise<void> => {
    if (doc.Statement.length === 0) {
      try {
        await iam.send(new DeleteRolePolicyCommand({ RoleName: role, PolicyName: revocationPolicyName }));
      } catch (err) {
        if (!(err instanceof NoSuchEntityException)) throw err;
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
      if (expiresAt.getTime() <= Date.now()) return;
      await batch(roleName(roleArn), { sourceIdentity, expiresAt });
      opts.log.info(
        { roleArn, sourceIdentity, until: expiresAt.toISOString() },
        "session denied on the role",
      );
    },
    prune: (roleArn, now) => batch(roleName(roleArn), undefined, now),
  };
}
