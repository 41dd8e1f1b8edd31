// Builds the identity side from configuration: the OIDC issuer, the credential provider and the
// operator policy, behind the narrow ports the lifecycle uses.
import type { V1Namespace } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { awsProvider } from "../tasks/scoped-step/credentials/aws.ts";
import { noopProvider } from "../tasks/scoped-step/credentials/noop.ts";
import type { CredentialProvider, Grant, TokenSigner } from "../tasks/scoped-step/credentials/types.ts";
import {
  accountOf,
  parseRevokerRoles,
  revokerAccounts,
  type RevokerAccounts,
} from "../tasks/scoped-step/credentials/aws-accounts.ts";
import { RunFailure } from "../tasks/scoped-step/failure.ts";
import { requireGrant } from "../tasks/scoped-step/policy.ts";
import type { PolicyPort } from "../tasks/scoped-step/ports.ts";
import { describeRef, type ResolvedTrait } from "../tasks/scoped-step/trait.ts";
import { kmsRegionOf, type Config } from "./config.ts";
import { createIssuer, type Issuer } from "./issuer/index.ts";
import { resourcePath, type Kube } from "./kube-client.ts";
import { PolicyStore } from "./policies.ts";

export interface Identity {
  issuer?: Issuer;
  credentials: CredentialProvider;
  policy: PolicyPort;
  policies: PolicyStore;
}

export interface IdentityHooks {
  onStsCall?: (seconds: number, outcome: string) => void;
  onIdpCall?: (seconds: number, outcome: string) => void;
  onRevocationFallback?: (cause: string) => void;
}

/**
 * Deny-policy revocation must be able to write in the role's own account: otherwise the session
 * could never be revoked, so the run is refused before anything is minted.
 */
function requireRevokers(port: PolicyPort, accounts: RevokerAccounts): PolicyPort {
  return {
    async decide(...args: Parameters<PolicyPort["decide"]>): Promise<Grant> {
      const grant = await port.decide(...args);
      const props = grant.trait.properties;
      const roleArn = props.aws?.roleArn;
      if (grant.revocation !== "deny-policy" || props.delivery === "token-only" || !roleArn) return grant;
      const account = accountOf(roleArn);
      const why = await accounts.missing(account);
      if (!why) return grant;
      throw new RunFailure(
        "RevokerNotConfigured",
        `policy ${grant.policy} revokes credentials with a deny policy on the role, but ${why}, so role ${roleArn} ` +
          `named by trait ${grant.trait.type} on ${describeRef(grant.trait.ref)} could not be revoked: the platform ` +
          `operator must add a revoker role in account ${account} to the controller's aws-revoker-roles setting, ` +
          `or the trait must name a role in an account that has one`,
      );
    },
  };
}

/** A policy may require its runs' tokens to come from one issuer: the organisation's IdP, say. */
function requireIssuerMode(
  policy: string,
  required: "self" | "external" | undefined,
  mode: "self" | "external",
) {
  if (!required || required === mode) return;
  const wanted =
    required === "external" ? "the organisation's identity provider" : "the controller's own issuer";
  throw new RunFailure(
    "IssuerModeNotAllowed",
    `policy ${policy} requires tokens from ${wanted} (spec.issuer: ${required}), but this controller runs with ` +
      `issuer-mode ${mode}: the platform operator must set issuer-mode ${required} in the controller's configuration` +
      (required === "external" ? " (with external-issuer)" : "") +
      `, or change the policy's spec.issuer`,
    { nothingIssued: true },
  );
}

/**
 * The UID of a namespace, read from the API server for every token. Not cached: a namespace
 * deleted and re-created under the same name has a new UID, and a name-keyed cache could sign the
 * new namespace's tokens with the old one's, which is what trust policies pin. One GET per token
 * is small beside the STS call it precedes.
 */
export function namespaceUidReader(kube: Kube): (name: string) => Promise<string> {
  return async (name) => {
    const path = resourcePath({ apiVersion: "v1", plural: "namespaces" }, undefined, name);
    const uid = (await kube.request<V1Namespace>("GET", path)).metadata?.uid;
    if (!uid) throw new Error(`namespace ${name} has no UID`);
    return uid;
  };
}

/**
 * The controller's own issuer as the credential provider's signer: it adds the namespace's UID to
 * the run's facts, read while the run's ledger entry is written, and signs once that is done.
 */
export function ownSigner(
  issuer: Pick<Issuer, "issuerUrl" | "issueToken">,
  namespaceUid: (name: string) => Promise<string>,
): TokenSigner {
  return {
    issuerUrl: issuer.issuerUrl,
    async issueToken({ recorded, ...request }) {
      const { uid, ...facts } = request.facts;
      const [nsUid] = await Promise.all([namespaceUid(facts.namespace), recorded]);
      return issuer.issueToken({ ...request, facts: { ...facts, customRunUid: uid, namespaceUid: nsUid } });
    },
  };
}

export async function buildIdentity(
  kube: Kube,
  config: Config,
  log: Logger,
  hooks: IdentityHooks = {},
): Promise<Identity> {
  const policies = new PolicyStore({ kube, log, resyncMs: config.resyncSeconds * 1000 });
  policies.start();
  const policy: PolicyPort = {
    async decide(namespace: string, trait: ResolvedTrait, run = {}): Promise<Grant> {
      const ref = `trait ${trait.type} on ${describeRef(trait.ref)}`;
      const grant = requireGrant(
        await policies.decide(namespace, trait.properties, ref, run.retries, run.podTemplateFields),
      );
      requireIssuerMode(grant.policy, grant.issuer, config.issuerMode);
      return {
        trait,
        policy: grant.policy,
        revocation: grant.revocation,
        subjectTemplate: grant.subjectTemplate,
        allowTenantSuppliedSubjectFacts: grant.allowTenantSuppliedSubjectFacts,
        tokenLifetimeSeconds: grant.tokenExpirationSeconds,
      };
    },
  };
  if (config.credentials === "none") return { credentials: noopProvider, policy, policies };

  const issuer = await createIssuer({
    kube,
    namespace: config.namespace,
    secretName: config.signingKeySecret,
    issuerUrl: config.issuerUrl,
    algorithm: config.signingAlgorithm,
    ...(config.signingKeyStore === "kms"
      ? {
          kms: {
            keyId: config.kmsKeyId,
            region: kmsRegionOf(config),
            endpoint: config.kmsEndpoint || undefined,
          },
        }
      : {}),
    rotationIntervalSeconds: config.keyRotationSeconds,
    subjectTemplate: config.subjectTemplate,
    allowInsecureIssuer: config.allowInsecureIssuer,
    logger: log,
  });
  const own = ownSigner(issuer, namespaceUidReader(kube));
  // In external mode the run token goes to the organisation's IdP, whose token AWS trusts. Its
  // OAuth client is loaded only then.
  const signer = config.externalIssuer
    ? (await import("./idp/external.ts")).externalSigner({
        settings: config.externalIssuer,
        own,
        allowInsecure: config.allowInsecureIssuer,
        log: log.child({ component: "external-issuer" }),
        ...(hooks.onIdpCall ? { onIdpCall: hooks.onIdpCall } : {}),
      })
    : own;
  // Where deny policies are written: the controller's own account, and those with a revoker role.
  const accounts = revokerAccounts({
    revokerRoles: parseRevokerRoles(config.awsRevokerRoles),
    region: config.awsRegion,
    ...(config.stsEndpoint ? { stsEndpoint: config.stsEndpoint } : {}),
    ...(config.iamEndpoint ? { iamEndpoint: config.iamEndpoint } : {}),
    log,
  });
  const credentials = awsProvider({
    signer,
    defaultRegion: config.awsRegion,
    ...(config.stsEndpoint ? { stsEndpoint: config.stsEndpoint } : {}),
    ...(config.stepAwsEndpoint ? { stepEndpoint: config.stepAwsEndpoint } : {}),
    accounts,
    log,
    ...(hooks.onStsCall ? { onStsCall: hooks.onStsCall } : {}),
    ...(hooks.onRevocationFallback ? { onRevocationFallback: hooks.onRevocationFallback } : {}),
  });
  return { issuer, credentials, policy: requireRevokers(policy, accounts), policies };
}
