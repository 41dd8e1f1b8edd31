// STS errors, mapped to failure reasons that name the cause and tell the author what to check.
import type { STSServiceException } from "@aws-sdk/client-sts";
import { RunFailure } from "../failure.ts";
import { isStsError } from "./aws-sdk.ts";

export interface StsCallContext {
  roleArn: string;
  subject: string;
  audience: string;
  issuer: string;
}

/** The AWS error code: the SDK names modelled errors `<Code>Exception`, others just `<Code>`. */
export const errorCode = (err: STSServiceException): string => err.name.replace(/Exception$/, "");

/** AWS could not fetch the issuer's JWKS: transient on AWS's side, worth a bounded retry. */
export function isKeyFetchFailure(err: unknown): boolean {
  return (
    isStsError(err) &&
    errorCode(err) === "InvalidIdentityToken" &&
    /Couldn't retrieve verification key/i.test(err.message)
  );
}

const transientCodes = new Set([
  "IDPCommunicationError",
  "Throttling",
  "RequestLimitExceeded",
  "ServiceUnavailable",
  "InternalFailure",
]);

/**
 * Worth another try after a pause: throttling, server errors, network errors, JWKS fetch failures.
 * Anything that is not an STS error response means STS's answer never arrived: a refused or
 * reset connection, a timeout, a DNS failure. The SDK decorates those with `$metadata` too, so
 * only the class tells them from STS's own errors.
 */
export function isTransientStsError(err: unknown): boolean {
  if (!isStsError(err)) return err instanceof Error;
  return (
    isKeyFetchFailure(err) || transientCodes.has(errorCode(err)) || (err.$metadata.httpStatusCode ?? 0) >= 500
  );
}

const providerOf = (issuer: string) => issuer.replace(/^https?:\/\//, "");

/**
 * A RunFailure for errors retrying cannot fix; undefined for transient ones (throttling, 5xx,
 * IDPCommunicationError after the SDK's own retries), which the caller lets the queue retry.
 * Every failure returned is STS's own error response to the call, so it proves STS issued no
 * session: `nothingIssued` tells the lifecycle there is nothing to revoke.
 */
export function describeStsError(err: unknown, ctx: StsCallContext): RunFailure | undefined {
  if (!isStsError(err)) return undefined;
  const provider = providerOf(ctx.issuer);
  const aws = `AWS said: ${err.message}`;
  const failure = (reason: string, message: string) =>
    new RunFailure(reason, message, { nothingIssued: true });
  switch (errorCode(err)) {
    case "AccessDenied":
      return failure(
        "AWSRoleTrustRejected",
        `role ${ctx.roleArn} does not trust this step: its trust policy must allow sts:AssumeRoleWithWebIdentity ` +
          `(and sts:TagSession, sts:SetSourceIdentity) for the federated principal of OIDC provider ${provider}, ` +
          `with ${provider}:sub matching "${ctx.subject}" and ${provider}:aud matching "${ctx.audience}". ${aws}`,
      );
    case "InvalidIdentityToken":
      if (isKeyFetchFailure(err)) {
        return failure(
          "AWSIdentityProviderUnreachable",
          `AWS could not fetch the signing keys of issuer ${ctx.issuer}: make sure ${ctx.issuer}/.well-known/openid-configuration ` +
            `and its jwks_uri are publicly reachable over HTTPS. ${aws}`,
        );
      }
      return failure(
        "AWSInvalidToken",
        `AWS rejected the step's token: check that ${provider} is registered as an IAM OIDC provider with audience ` +
          `"${ctx.audience}" and that the issuer's published keys are current. ${aws}`,
      );
    case "IDPRejectedClaim":
      return failure("AWSTokenRejected", `the identity provider rejected the token's claims. ${aws}`);
    case "ExpiredToken":
      return failure(
        "AWSTokenExpired",
        `AWS considers the step's token expired: check the controller's clock and the trait's tokenExpirationSeconds. ${aws}`,
      );
    case "MalformedPolicyDocument":
      return failure(
        "AWSPolicyMalformed",
        `aws.sessionPolicy of the trait is not a valid IAM policy. ${aws}`,
      );
    case "PackedPolicyTooLarge":
      return failure(
        "AWSPolicyTooLarge",
        `the session policy, managed policy ARNs and session tags together are too large for STS: ` +
          `shorten the policy, use fewer tags or move statements into a managed policy. ${aws}`,
      );
    case "RegionDisabled":
      return failure(
        "AWSRegionDisabled",
        `STS is not activated in the region the trait names (aws.region): activate it in the account or pick another region. ${aws}`,
      );
    case "ValidationError":
      return failure("AWSRequestInvalid", `STS refused the request for role ${ctx.roleArn}: ${err.message}`);
    default:
      return undefined;
  }
}
