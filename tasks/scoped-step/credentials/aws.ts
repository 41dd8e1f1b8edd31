// AWS credentials for one step: the controller's issuer signs an OIDC token for the run, STS
// AssumeRoleWithWebIdentity exchanges it for session credentials scoped by the trait's session
// policy, and revocation deletes the Secret and, in deny-policy mode, denies the session on the
// role by its source identity until the session has expired.
import { createHash } from "node:crypto";
import type { STSClient } from "@aws-sdk/client-sts";
import type { Logger } from "pino";
import { RunFailure } from "../failure.ts";
import { accountOf, type RevokerAccounts } from "./aws-accounts.ts";
import { denyListRevoker, type FallbackCause, type SessionRevoker } from "./aws-revocation.ts";
import { describeStsError, errorCode, isTransientStsError } from "./aws-errors.ts";
import { isStsError, stsSdk } from "./aws-sdk.ts";
import {
  credentialsMountPath,
  type CredentialProvider,
  type CredentialRecord,
  type MintedCredential,
  type RevocationOutcome,
  type RunFacts,
  type TokenSigner,
} from "./types.ts";

export interface AwsProviderOptions {
  signer: TokenSigner;
  /** Region used when the trait names none. */
  defaultRegion: string;
  /** Custom STS endpoint (private endpoints, tests); regional endpoints otherwise. */
  stsEndpoint?: string;
  /** AWS_ENDPOINT_URL for the steps: every AWS call they make goes there (a proxy, tests). */
  stepEndpoint?: string;
  /** Revokes sessions on the role in deny-policy mode; built from IAM when absent. */
  revoker?: SessionRevoker;
  /** Where deny policies are written, per account; without it, with the controller's own credentials. */
  accounts?: RevokerAccounts;
  iamEndpoint?: string;
  /** Called when a wanted deny could not be written and the session was left to expire. */
  onRevocationFallback?: (cause: FallbackCause) => void;
  log: Logger;
  /**
   * Retries of transient STS failures (throttling, 5xx, IDPCommunicationError, and AWS failing to
   * fetch our JWKS) after the first call; exponential backoff from retryDelayMs, with jitter.
   */
  stsRetries?: number;
  retryDelayMs?: number;
  /** Observes each STS call, for metrics. */
  onStsCall?: (seconds: number, outcome: string) => void;
}

const sessionChars = /[^\w+=,.@-]/g;

/** A readable, unique, valid RoleSessionName: it shows in CloudTrail and the assumed-role ARN. */
export function sessionName(facts: RunFacts): string {
  const readable = `${facts.namespace}.${facts.customRun}`.replace(sessionChars, "-");
  const suffix = `-${facts.uid.slice(0, 8)}-${facts.attempt}`;
  return `${readable.slice(0, 64 - suffix.length)}${suffix}`;
}

/** The per-run source identity: recorded by CloudTrail, kept through role chaining. */
export function sourceIdentity(facts: RunFacts): string {
  const id = createHash("sha256").update(facts.uid).digest("hex").slice(0, 24);
  return `scoped-step-${id}-${facts.attempt}`;
}

export const sessionPolicyLimit = 2048;

/** The inline session policy as sent to STS (minified JSON), checked against STS's limit. */
export function packSessionPolicy(policy: unknown): string | undefined {
  if (policy === undefined) return undefined;
  let text: string;
  if (typeof policy === "string") {
    try {
      text = JSON.stringify(JSON.parse(policy));
    } catch {
      throw new RunFailure("AWSPolicyMalformed", "aws.sessionPolicy is a string but not valid JSON", {
        nothingIssued: true,
      });
    }
  } else {
    text = JSON.stringify(policy);
  }
  if (text.length > sessionPolicyLimit) {
    throw new RunFailure(
      "AWSPolicyTooLarge",
      `aws.sessionPolicy is ${text.length} characters once minified; STS accepts at most ${sessionPolicyLimit}: ` +
        `narrow it or move statements into a managed policy listed in aws.policyArns`,
      { nothingIssued: true },
    );
  }
  return text;
}

/** The issuer signs tokens for at most an hour; a trait without tokenExpirationSeconds gets less. */
const tokenLifetimeCeilingSeconds = 3600;
/** STS's own default and minimum DurationSeconds. */
const defaultSessionSeconds = 900;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Added to the requested session duration when denying a session whose mint was never recorded:
 * a call in flight when the controller stopped may still reach STS, and clocks differ.
 */
export const unrecordedMintMarginSeconds = 300;

/**
 * Until when a session must be denied. A minted one: its expiry as STS stated it. One still
 * "minting" may have been issued at any moment up to now, so it lives at most the requested
 * duration from now (records written before the duration was recorded: STS's 12-hour maximum).
 */
export function denyUntil(record: CredentialRecord, now: Date): Date {
  if (record.expiresAt) return new Date(record.expiresAt);
  const requested = Number(record.intent.sessionDuration);
  const seconds = Number.isInteger(requested) && requested > 0 ? requested : 43_200;
  return new Date(now.getTime() + (seconds + unrecordedMintMarginSeconds) * 1000);
}

export function awsProvider(opts: AwsProviderOptions): CredentialProvider {
  const endpointEnv: Record<string, string> = opts.stepEndpoint
    ? { AWS_ENDPOINT_URL: opts.stepEndpoint }
    : {};
  const clients = new Map<string, STSClient>();
  const sts = async (region: string) => {
    const { STSClient } = await stsSdk();
    let client = clients.get(region);
    if (!client) {
      client = new STSClient({
        region,
        ...(opts.stsEndpoint ? { endpoint: opts.stsEndpoint } : {}),
        // Retries are ours (below): the SDK would also retry InvalidIdentityToken errors that
        // no retry can fix, such as a wrong audience.
        maxAttempts: 1,
        // AssumeRoleWithWebIdentity is unsigned: the controller holds no AWS credentials for it.
        credentials: { accessKeyId: "", secretAccessKey: "" },
      });
      clients.set(region, client);
    }
    return client;
  };
  const deniedOn = new Set<string>();
  const revoker =
    opts.revoker ??
    denyListRevoker({
      log: opts.log,
      ...(opts.accounts ? { accounts: opts.accounts } : {}),
      ...(opts.iamEndpoint ? { endpoint: opts.iamEndpoint } : {}),
    });

  return {
    name: "aws",

    intent(facts, grant) {
      const roleArn = grant.trait.properties.aws?.roleArn ?? "";
      return {
        roleArn,
        account: accountOf(roleArn),
        sessionName: sessionName(facts),
        sourceIdentity: sourceIdentity(facts),
        // What mint() asks STS for: bounds how long a session never recorded as minted can live.
        sessionDuration: String(grant.trait.properties.aws?.sessionDuration ?? defaultSessionSeconds),
        revocation: grant.revocation,
        delivery: grant.trait.properties.delivery ?? "env",
      };
    },

    lifetimeSeconds(grant) {
      const props = grant.trait.properties;
      if (props.delivery === "token-only" || !props.aws) {
        return props.tokenExpirationSeconds ?? tokenLifetimeCeilingSeconds;
      }
      return props.aws.sessionDuration ?? defaultSessionSeconds;
    },

    async mint(facts, grant, recorded): Promise<MintedCredential> {
      const props = grant.trait.properties;
      const delivery = props.delivery ?? "env";
      const aws = props.aws;
      const session = sessionName(facts);
      const source = sourceIdentity(facts);
      let issued;
      try {
        issued = await opts.signer.issueToken({
          facts: {
            namespace: facts.namespace,
            uid: facts.uid,
            customRun: facts.customRun,
            application: facts.application,
            component: facts.component,
            serviceAccount: facts.serviceAccount,
            ...(facts.pipelineRun ? { pipelineRun: facts.pipelineRun } : {}),
            ...(facts.pipelineTask ? { pipelineTask: facts.pipelineTask } : {}),
          },
          audience: props.audience ?? "sts.amazonaws.com",
          ...(grant.tokenLifetimeSeconds ? { lifetimeSeconds: grant.tokenLifetimeSeconds } : {}),
          // The policy allowed these tags; the signer adds the ones it asserts (scoped-step:*).
          ...(aws?.sessionTags ? { sessionTags: aws.sessionTags } : {}),
          ...(aws?.transitiveTagKeys ? { transitiveTagKeys: aws.transitiveTagKeys } : {}),
          // Also in a raw token: a session the step mints with it still carries the run's source
          // identity, so CloudTrail traces it and a deny on aws:SourceIdentity covers it.
          sourceIdentity: source,
          ...(grant.subjectTemplate ? { subjectTemplate: grant.subjectTemplate } : {}),
          ...(grant.allowTenantSuppliedSubjectFacts ? { allowTenantSuppliedSubjectFacts: true } : {}),
          recorded,
        });
        // Whatever the signer did, nothing leaves this process before the ledger holds the intent.
        await recorded;
      } catch (err) {
        if (err instanceof Error && "reason" in err && typeof err.reason === "string") {
          throw new RunFailure(err.reason, err.message, { nothingIssued: true });
        }
        throw err;
      }
      const identity = {
        "identity-subject": issued.subject,
        "identity-issuer": opts.signer.issuerUrl,
        "token-id": issued.jti,
      };
      if (delivery === "token-only" || !aws) {
        return {
          results: { ...identity, "credentials-expiration": issued.expiresAt.toISOString() },
          expiresAt: issued.expiresAt.toISOString(),
          secretData: { token: issued.token },
          mount: {
            secretEnv: {},
            env: { SCOPED_STEP_OIDC_TOKEN_FILE: `${credentialsMountPath}/token` },
            files: { token: "token" },
          },
        };
      }

      const region = aws.region ?? opts.defaultRegion;
      const policy = packSessionPolicy(aws.sessionPolicy);
      const { AssumeRoleWithWebIdentityCommand } = await stsSdk();
      const command = new AssumeRoleWithWebIdentityCommand({
        RoleArn: aws.roleArn,
        RoleSessionName: session,
        WebIdentityToken: issued.token,
        DurationSeconds: aws.sessionDuration ?? defaultSessionSeconds,
        ...(policy ? { Policy: policy } : {}),
        ...(aws.policyArns?.length ? { PolicyArns: aws.policyArns.map((arn) => ({ arn })) } : {}),
      });
      const attempts = 1 + (opts.stsRetries ?? 3);
      let response;
      for (let attempt = 1; ; attempt++) {
        const started = performance.now();
        try {
          response = await (await sts(region)).send(command);
          opts.onStsCall?.((performance.now() - started) / 1000, "ok");
          break;
        } catch (err) {
          const code = isStsError(err) ? errorCode(err) : "NetworkError";
          opts.onStsCall?.((performance.now() - started) / 1000, code);
          if (isTransientStsError(err) && attempt < attempts) {
            opts.log.warn({ attempt, code, roleArn: aws.roleArn }, "transient STS failure; retrying");
            await sleep((opts.retryDelayMs ?? 500) * 2 ** (attempt - 1) * (0.75 + Math.random() * 0.5));
            continue;
          }
          const failure = describeStsError(err, {
            roleArn: aws.roleArn,
            subject: issued.subject,
            audience: issued.audience,
            issuer: opts.signer.issuerUrl,
          });
          if (failure) throw failure;
          throw err;
        }
      }
      const creds = response.Credentials;
      if (!creds?.AccessKeyId || !creds.SecretAccessKey || !creds.SessionToken || !creds.Expiration) {
        throw new Error("STS answered without credentials");
      }
      const expiresAt = creds.Expiration.toISOString();
      const results = {
        ...identity,
        "aws-role-arn": aws.roleArn,
        "aws-assumed-role-arn": response.AssumedRoleUser?.Arn ?? "",
        "aws-session-name": session,
        "aws-source-identity": response.SourceIdentity ?? source,
        "credentials-expiration": expiresAt,
      };
      if (delivery === "file") {
        const file = [
          "[default]",
          `aws_access_key_id = ${creds.AccessKeyId}`,
          `aws_secret_access_key = ${creds.SecretAccessKey}`,
          `aws_session_token = ${creds.SessionToken}`,
          `region = ${region}`,
          "",
        ].join("\n");
        return {
          results,
          expiresAt,
          secretData: { credentials: file },
          mount: {
            secretEnv: {},
            env: {
              AWS_SHARED_CREDENTIALS_FILE: `${credentialsMountPath}/credentials`,
              AWS_PROFILE: "default",
              AWS_REGION: region,
              AWS_DEFAULT_REGION: region,
              ...endpointEnv,
            },
            files: { credentials: "credentials" },
          },
        };
      }
      return {
        results,
        expiresAt,
        secretData: {
          accessKeyId: creds.AccessKeyId,
          secretAccessKey: creds.SecretAccessKey,
          sessionToken: creds.SessionToken,
        },
        mount: {
          secretEnv: {
            AWS_ACCESS_KEY_ID: "accessKeyId",
            AWS_SECRET_ACCESS_KEY: "secretAccessKey",
            AWS_SESSION_TOKEN: "sessionToken",
          },
          env: { AWS_REGION: region, AWS_DEFAULT_REGION: region, ...endpointEnv },
          files: {},
        },
      };
    },

    describe(record: CredentialRecord): string {
      const r = record.results;
      return [
        r["identity-subject"] && `subject ${r["identity-subject"]}`,
        r["aws-assumed-role-arn"] && `as ${r["aws-assumed-role-arn"]}`,
        r["credentials-expiration"] && `until ${r["credentials-expiration"]}`,
      ]
        .filter(Boolean)
        .join(" ");
    },

    async maintain() {
      // Roles this replica denied sessions on; after a failover the next revocation prunes too.
      for (const roleArn of deniedOn) await revoker.prune(roleArn);
    },

    async revoke(record: CredentialRecord): Promise<RevocationOutcome> {
      if (record.intent.revocation !== "deny-policy" || record.intent.delivery === "token-only")
        return { method: "secret" };
      const roleArn = record.intent.roleArn ?? "";
      const expiresAt = denyUntil(record, new Date());
      deniedOn.add(roleArn);
      const result = await revoker.revoke({
        roleArn,
        sourceIdentity: record.intent.sourceIdentity ?? "",
        expiresAt,
      });
      if (result.denied) return { method: "deny-policy" };
      if (result.expired) {
        return {
          method: "secret",
          detail: `the session expired at ${expiresAt.toISOString()}; nothing to deny`,
        };
      }
      opts.onRevocationFallback?.(result.cause);
      return { method: "expiry", detail: result.detail };
    },
  };
}
