// Where deny-policy revocation writes. IAM acts in the account of whoever signs the request, so a
// deny for a role in another account must be written with credentials from that account: the
// controller assumes the revoker role the operator configured there. Its own credentials act in
// its own account only. An account with neither has no revoker, and the policy check refuses
// deny-policy revocation for its roles before anything is minted.
import type { IAMClient } from "@aws-sdk/client-iam";
import type { STSClient } from "@aws-sdk/client-sts";
import type { Logger } from "pino";
import { iamSdk, stsSdk } from "./aws-sdk.ts";

const roleArnPattern = /^arn:[\w-]+:iam::(\d{12}):role\/(?:[\x21-\x7e]*\/)?[\w+=,.@-]{1,64}$/;

/** The account of a role ARN; "" when it is not one. */
export function accountOf(roleArn: string): string {
  return roleArnPattern.exec(roleArn)?.[1] ?? "";
}

/** No credentials can write IAM policies in the account. */
export class RevokerMissing extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RevokerMissing";
  }
}

export interface RevokerAccounts {
  /** An IAM client whose writes land in the account; throws RevokerMissing when there is none. */
  iam(accountId: string): Promise<IAMClient>;
  /** Undefined when deny policies can be written in the account; otherwise why they cannot. */
  missing(accountId: string): Promise<string | undefined>;
}

/**
 * Parses the configured revoker roles: role ARNs, at most one per account. Throws an Error whose
 * message names the offending entry.
 */
export function parseRevokerRoles(entries: string[]): Map<string, string> {
  const byAccount = new Map<string, string>();
  for (const arn of entries) {
    const account = accountOf(arn);
    if (!account) throw new Error(`"${arn}" is not an IAM role ARN`);
    const other = byAccount.get(account);
    if (other) throw new Error(`account ${account} has two revoker roles, ${other} and ${arn}`);
    byAccount.set(account, arn);
  }
  return byAccount;
}

export interface RevokerAccountsOptions {
  /** Account id -> the revoker role ARN to assume there. */
  revokerRoles: Map<string, string>;
  region: string;
  stsEndpoint?: string;
  iamEndpoint?: string;
  /** The controller's own credentials; the SDK's default chain (IRSA, environment) when absent. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  log: Logger;
}

/** How long "the controller has no AWS credentials" is believed before asking again. */
const noCredentialsTtlMs = 60_000;
const revokerSessionSeconds = 3600;

export function revokerAccounts(opts: RevokerAccountsOptions): RevokerAccounts {
  const endpoint = (url: string | undefined) => (url ? { endpoint: url } : {});
  // The controller's own credentials (the SDK's default chain): for AssumeRole and GetCallerIdentity.
  const own = opts.credentials ? { credentials: opts.credentials } : {};
  let stsClient: STSClient | undefined;
  const sts = async () => {
    const { STSClient } = await stsSdk();
    stsClient ??= new STSClient({ region: opts.region, ...endpoint(opts.stsEndpoint), ...own });
    return stsClient;
  };
  const clients = new Map<string, IAMClient>();
  let self: { account?: string; noCredentials?: string; at: number } | undefined;

  /** The account the controller's own credentials belong to, or why it has none. */
  const ownAccount = async (): Promise<{ account?: string; noCredentials?: string }> => {
    if (self && (self.account || Date.now() - self.at < noCredentialsTtlMs)) return self;
    try {
      const { GetCallerIdentityCommand } = await stsSdk();
      const who = await (await sts()).send(new GetCallerIdentityCommand({}));
      self = { account: who.Account ?? "", at: Date.now() };
    } catch (err) {
      // Anything else (network, throttling) is transient: the caller retries.
      if (!(err instanceof Error && err.name === "CredentialsProviderError")) throw err;
      self = { noCredentials: err.message, at: Date.now() };
    }
    return self;
  };

  const assumed = (roleArn: string) => async () => {
    const { AssumeRoleCommand } = await stsSdk();
    const got = await (
      await sts()
    ).send(
      new AssumeRoleCommand({
        RoleArn: roleArn,
        RoleSessionName: "scoped-step-revoker",
        DurationSeconds: revokerSessionSeconds,
      }),
    );
    const c = got.Credentials;
    if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken) {
      throw new Error(`STS answered AssumeRole on ${roleArn} without credentials`);
    }
    opts.log.debug({ roleArn }, "assumed the revoker role");
    return {
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretAccessKey,
      sessionToken: c.SessionToken,
      ...(c.Expiration ? { expiration: c.Expiration } : {}),
    };
  };

  const why = async (accountId: string): Promise<string | undefined> => {
    if (opts.revokerRoles.has(accountId)) return undefined;
    const mine = await ownAccount();
    if (mine.account === accountId) return undefined;
    const configured = [...opts.revokerRoles.keys()];
    return (
      `no revoker role is configured for AWS account ${accountId}` +
      (mine.account
        ? ` (the controller's own credentials act in account ${mine.account} only`
        : ` (the controller has no AWS credentials of its own`) +
      (configured.length ? `; revoker roles exist for ${configured.join(", ")})` : ")")
    );
  };

  return {
    async iam(accountId) {
      const cached = clients.get(accountId);
      if (cached) return cached;
      const problem = await why(accountId);
      if (problem) throw new RevokerMissing(problem);
      const revoker = opts.revokerRoles.get(accountId);
      // IAM is global; its endpoint signs in us-east-1. The SDK caches the assumed role's
      // credentials and renews them before they expire.
      const { IAMClient } = await iamSdk();
      const client = new IAMClient({
        region: "us-east-1",
        ...endpoint(opts.iamEndpoint),
        ...(revoker ? { credentials: assumed(revoker) } : own),
      });
      clients.set(accountId, client);
      return client;
    },
    missing: why,
  };
}
