// The narrow interface between the run lifecycle and whatever mints cloud credentials. A new
// cloud is a new provider file; the lifecycle only mints, mounts, and revokes.
import type { ResolvedTrait } from "../trait.ts";

/**
 * Facts about the run a credential is minted for; all come from the API server, none from the step.
 * Not all are the platform's word: the run's name, its tekton.dev labels (pipelineRun,
 * pipelineTask) and serviceAccountName are whatever the run's creator wrote.
 */
export interface RunFacts {
  namespace: string;
  customRun: string;
  uid: string;
  attempt: number;
  pipelineRun?: string;
  pipelineTask?: string;
  serviceAccount: string;
  application: string;
  component: string;
}

/**
 * The durable, public record of one credential, kept in the CustomRun's status.extraFields. It is
 * written (state "minting") before the provider is called, so a controller killed mid-mint finds
 * it on restart and revokes whatever may have been issued. Never holds secret material.
 */
export interface CredentialRecord {
  provider: string;
  attempt: number;
  state: "minting" | "active" | "revoked";
  /** Identifiers known before minting (session name, source identity): enough to revoke blind. */
  intent: Record<string, string>;
  /** Digest of the grant the intent was recorded for; the mint refuses any other grant. */
  grant?: string;
  /** Result name -> value, published as CustomRun results (identity-subject, aws-role-arn, ...). */
  results: Record<string, string>;
  expiresAt?: string;
  mintedAt?: string;
  revokedAt?: string;
  /** How the credential was ended, once it has been (published as the run's `revocation` result). */
  revocation?: RevocationOutcome;
}

/** How the credential Secret reaches the step container. */
export interface CredentialMount {
  /** Env var name -> key in the credential Secret. */
  secretEnv: Record<string, string>;
  /** Env vars with plain, non-secret values (region, file paths). */
  env: Record<string, string>;
  /** Key in the credential Secret -> file name under the credentials mount path. */
  files: Record<string, string>;
}

export interface MintedCredential {
  results: Record<string, string>;
  expiresAt?: string;
  /** Secret material; it goes into the credential Secret and nowhere else. */
  secretData: Record<string, string>;
  mount: CredentialMount;
}

/** What the operator's policy granted for one run: the checked trait and the settings that apply. */
export interface Grant {
  trait: ResolvedTrait;
  /** Name of the policy that allowed it. */
  policy: string;
  revocation: "secret" | "deny-policy";
  subjectTemplate?: string;
  /** The policy lets the subject template use tenant-supplied facts. */
  allowTenantSuppliedSubjectFacts?: boolean;
  /** Lifetime of the token to sign, as the policy settled it. */
  tokenLifetimeSeconds?: number;
}

/** Signs the step's OIDC token (the controller's issuer). */
export interface TokenSigner {
  readonly issuerUrl: string;
  issueToken(request: {
    /** The run's UID is signed in as customRunUid; the signer adds the namespace's UID itself. */
    facts: Omit<RunFacts, "attempt">;
    audience: string;
    lifetimeSeconds?: number;
    sessionTags?: Record<string, string>;
    transitiveTagKeys?: string[];
    sourceIdentity?: string;
    subjectTemplate?: string;
    allowTenantSuppliedSubjectFacts?: boolean;
    /**
     * Resolves once the run's ledger entry is written. The signer may read what it needs before
     * then, but signs nothing until it resolves, and fails if it rejects.
     */
    recorded?: Promise<unknown>;
  }): Promise<{ token: string; jti: string; expiresAt: Date; subject: string; audience: string }>;
}

/**
 * How a credential was ended. `secret`: the Secret is gone and the provider has nothing more it
 * can do (the session lives until its expiry by design). `deny-policy`: the provider wrote a
 * revocation the cloud enforces. `expiry`: a revocation was wanted but could not be written (for
 * example the role's deny budget is spent), so the session ends only at its expiry; `detail` says
 * why, for the run's results, a Warning Event and a metric. `none`: nothing was ever issued.
 */
export interface RevocationOutcome {
  method: "secret" | "deny-policy" | "expiry" | "none";
  detail?: string;
}

export interface CredentialProvider {
  readonly name: string;
  /** Identifiers to record before minting; deterministic for a run attempt. */
  intent(facts: RunFacts, grant: Grant): Record<string, string>;
  /**
   * The longest a credential minted now for this grant can stay valid, in seconds: the ledger
   * keeps its entry, and a deny lasts, at least that long.
   */
  lifetimeSeconds(grant: Grant): number;
  /**
   * `recorded` resolves once the ledger holds the intent (absent: it already does). The provider
   * may prepare before then (read what it needs), but issues nothing, and signs nothing, until it
   * resolves.
   */
  mint(facts: RunFacts, grant: Grant, recorded?: Promise<unknown>): Promise<MintedCredential>;
  /** The identity a record stands for, in words for Events ("subject ... as ... until ..."). */
  describe(record: CredentialRecord): string;
  /** Idempotent; must work from a record still in state "minting". */
  revoke(record: CredentialRecord): Promise<RevocationOutcome>;
  /** Periodic housekeeping on the leader (e.g. pruning expired deny statements). */
  maintain?(): Promise<void>;
}

/** Directory the credential Secret's files are mounted at in the step container. */
export const credentialsMountPath = "/var/run/scoped-step/credentials";
