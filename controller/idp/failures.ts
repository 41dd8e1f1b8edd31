// What went wrong between the controller and the organisation's identity provider, as a reason a
// pipeline author or operator can act on. Transient failures are retried by the caller; the
// others end the run. Messages carry the IdP's error code and description, never a token or secret.
import { ClientError, ResponseBodyError, WWWAuthenticateChallengeError } from "openid-client";

export type IdpFailureReason =
  | "IdentityProviderUnreachable"
  | "IdentityProviderInvalidClient"
  | "IdentityProviderInvalidGrant"
  | "IdentityProviderUnsupportedTokenType"
  | "IdentityProviderRequestRejected"
  | "IdentityProviderWrongAudience"
  | "IdentityProviderWrongIssuer"
  | "IdentityProviderWrongSubject"
  | "IdentityProviderClaimMismatch"
  | "IdentityProviderTokenInvalid";

/** A failure of the external issuer; `reason` becomes the CustomRun condition's reason. */
export class IdpFailure extends Error {
  readonly reason: IdpFailureReason;
  readonly transient: boolean;
  constructor(reason: IdpFailureReason, message: string, transient = false) {
    super(message);
    this.name = "IdpFailure";
    this.reason = reason;
    this.transient = transient;
  }
}

/** The IdP's own words, cut short: enough to act on, bounded whatever it sends. */
const said = (code: string, description: unknown) =>
  `the identity provider answered ${code}` +
  (typeof description === "string" && description ? `: ${description.slice(0, 200)}` : "");

/** OAuth error codes RFC 6749 and 8693 define as worth another try. */
const transientCodes = new Set(["temporarily_unavailable", "slow_down", "server_error"]);

function oauthError(code: string, description: unknown, status: number, idp: string, clientId: string) {
  const words = said(code, description);
  if (transientCodes.has(code) || status >= 500)
    return new IdpFailure("IdentityProviderUnreachable", `${idp}: ${words}`, true);
  switch (code) {
    case "invalid_client":
      return new IdpFailure(
        "IdentityProviderInvalidClient",
        `${idp} refused the controller's client ${clientId} (${words}): the platform operator must check the ` +
          `client id, its authentication method and the secret or key the external-issuer setting points at`,
      );
    case "invalid_grant":
      return new IdpFailure(
        "IdentityProviderInvalidGrant",
        `${idp} refused the run's token (${words}): the IdP must trust the controller's issuer for token exchange ` +
          `(its JWKS reachable from the IdP, subjectTokenAudience what the IdP expects) and its policy must allow this run's subject`,
      );
    case "unsupported_token_type":
      return new IdpFailure(
        "IdentityProviderUnsupportedTokenType",
        `${idp} cannot exchange for the requested token type (${words}): set external-issuer requestedTokenType to a type the IdP issues`,
      );
    default:
      if (code === "invalid_request" && typeof description === "string" && /token.?type/i.test(description)) {
        return new IdpFailure(
          "IdentityProviderUnsupportedTokenType",
          `${idp} refused the token types of the exchange (${words}): set external-issuer requestedTokenType to a type the IdP issues`,
        );
      }
      return new IdpFailure(
        "IdentityProviderRequestRejected",
        `${idp} refused the token request (${words}): check the client's grants and the external-issuer parameters`,
      );
  }
}

/**
 * Classifies an error thrown by a token request or discovery. Anything that is not an answer from
 * the IdP (refused connection, timeout, DNS) is transient; so are 5xx answers.
 */
export function describeIdpError(err: unknown, idp: string, clientId: string): IdpFailure {
  if (err instanceof IdpFailure) return err;
  if (err instanceof ResponseBodyError)
    return oauthError(err.error, err.error_description, err.status, idp, clientId);
  if (err instanceof WWWAuthenticateChallengeError) {
    const challenge = err.cause[0];
    const code = challenge?.parameters.error ?? `HTTP ${err.status}`;
    return oauthError(code, challenge?.parameters.error_description, err.status, idp, clientId);
  }
  if (err instanceof ClientError && err.cause instanceof Response) {
    const status = err.cause.status;
    if (status >= 500)
      return new IdpFailure("IdentityProviderUnreachable", `${idp} answered HTTP ${status}`, true);
    return new IdpFailure(
      "IdentityProviderRequestRejected",
      `${idp} answered HTTP ${status} without an OAuth error: check external-issuer issuer`,
    );
  }
  if (
    err instanceof ClientError &&
    err.code &&
    /^OAUTH_/.test(err.code) &&
    err.code !== "OAUTH_RESPONSE_IS_NOT_JSON"
  ) {
    return new IdpFailure(
      "IdentityProviderRequestRejected",
      `${idp} answered something the controller could not use (${err.message}): check that external-issuer issuer is an OpenID provider`,
    );
  }
  const cause =
    err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
  return new IdpFailure(
    "IdentityProviderUnreachable",
    `${idp} could not be reached: ${cause.slice(0, 200)}`,
    true,
  );
}
