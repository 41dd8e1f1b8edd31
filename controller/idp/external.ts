// External issuer mode: each step's token comes from the organisation's OpenID provider, which AWS
// trusts, instead of from the controller. The controller still signs its run token and hands it
// to the IdP as the RFC 8693 subject_token (the IdP trusts the controller as that token's issuer),
// or authenticates as its own client alone with client credentials where the IdP cannot exchange.
// The IdP's answer is verified (signature by the IdP's JWKS, iss, aud, exp, the configured claims)
// before anything uses it, so a misconfigured IdP cannot hand a step someone else's identity.
import { readFile } from "node:fs/promises";
import {
  createRemoteJWKSet,
  decodeJwt,
  errors,
  importJWK,
  importPKCS8,
  jwtVerify,
  type JWTPayload,
} from "jose";
import * as oidc from "openid-client";
import type { Logger } from "pino";
import type { TokenSigner } from "../../tasks/scoped-step/credentials/types.ts";
import { describeIdpError, IdpFailure } from "./failures.ts";
import {
  renderTemplate,
  tokenExchangeGrant,
  tokenTypes,
  type ExternalIssuerSettings,
  type Placeholder,
} from "./settings.ts";

export interface ExternalSignerOptions {
  settings: ExternalIssuerSettings;
  /** The controller's own issuer: signs the run token that becomes the subject_token. */
  own: TokenSigner;
  /** http and loopback IdPs: tests and the demo only. */
  allowInsecure?: boolean;
  log: Logger;
  /** Observes each request to the IdP, for metrics. */
  onIdpCall?: (seconds: number, outcome: string) => void;
}

type SignerRequest = Parameters<TokenSigner["issueToken"]>[0];

const asymmetric = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function externalSigner(opts: ExternalSignerOptions): TokenSigner {
  const { settings, log } = opts;
  const idp = `identity provider ${settings.issuer}`;
  let server: Promise<oidc.ServerMetadata> | undefined;
  let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;

  // http and loopback IdPs (allow-insecure-issuer) are for tests and the demo only.
  const insecure: ((config: oidc.Configuration) => void)[] = [];
  // eslint-disable-next-line @typescript-eslint/no-deprecated
  if (opts.allowInsecure) insecure.push(oidc.allowInsecureRequests);
  /** The IdP's metadata, fetched once; a failed fetch is forgotten so the next request tries again. */
  const metadata = () => {
    server ??= oidc
      .discovery(new URL(settings.issuer), settings.clientId, undefined, undefined, {
        timeout: settings.timeoutSeconds,
        execute: insecure,
      })
      .then((c) => c.serverMetadata());
    return server.catch((err: unknown) => {
      server = undefined;
      throw err;
    });
  };

  /** Client authentication, from files read per request: a rotated Secret applies without a restart. */
  const clientAuth = async (): Promise<oidc.ClientAuth> => {
    if (settings.clientAuth === "private_key_jwt") {
      const text = (await readFile(settings.privateKeyFile ?? "", "utf8")).trim();
      const key = text.startsWith("{")
        ? await importJWK(JSON.parse(text) as Record<string, unknown>, settings.privateKeyAlg)
        : await importPKCS8(text, settings.privateKeyAlg);
      if (key instanceof Uint8Array) throw new Error("privateKeyFile holds a symmetric key");
      return oidc.PrivateKeyJwt({ key, ...(settings.privateKeyId ? { kid: settings.privateKeyId } : {}) });
    }
    const secret = (await readFile(settings.clientSecretFile ?? "", "utf8")).trim();
    return settings.clientAuth === "client_secret_post"
      ? oidc.ClientSecretPost(secret)
      : oidc.ClientSecretBasic(secret);
  };

  const requestToken = async (subjectToken: string, values: Partial<Record<Placeholder, string>>) => {
    const config = new oidc.Configuration(await metadata(), settings.clientId, undefined, await clientAuth());
    config.timeout = settings.timeoutSeconds;
    for (const change of insecure) change(config);
    const parameters: Record<string, string> = {};
    for (const [name, template] of Object.entries(settings.parameters))
      parameters[name] = renderTemplate(template, values);
    if (settings.grant === "client-credentials") return oidc.clientCredentialsGrant(config, parameters);
    return oidc.genericGrantRequest(config, tokenExchangeGrant, {
      ...parameters,
      subject_token: subjectToken,
      subject_token_type: tokenTypes.jwt,
      requested_token_type: settings.requestedTokenType,
    });
  };

  /** One request with bounded retries of transient failures, exponential backoff and jitter. */
  const exchange = async (subjectToken: string, values: Partial<Record<Placeholder, string>>) => {
    const attempts = 1 + settings.retries;
    for (let attempt = 1; ; attempt++) {
      const started = performance.now();
      try {
        const response = await requestToken(subjectToken, values);
        opts.onIdpCall?.((performance.now() - started) / 1000, "ok");
        return response;
      } catch (err) {
        const failure = describeIdpError(err, idp, settings.clientId);
        opts.onIdpCall?.((performance.now() - started) / 1000, failure.reason);
        if (!failure.transient) throw failure;
        if (attempt >= attempts) {
          throw new IdpFailure(
            "IdentityProviderUnreachable",
            `${failure.message}; gave up after ${attempts} attempts: the platform operator must make the IdP reachable ` +
              `from the controller, then the run can be retried`,
          );
        }
        log.warn(
          { attempt, reason: failure.reason, idp: settings.issuer },
          "transient identity provider failure; retrying",
        );
        await sleep(settings.retryDelayMs * 2 ** (attempt - 1) * (0.75 + Math.random() * 0.5));
      }
    }
  };

  const verify = async (token: string, audience: string): Promise<JWTPayload> => {
    try {
      decodeJwt(token);
    } catch {
      throw new IdpFailure(
        "IdentityProviderUnsupportedTokenType",
        `${idp} returned a token that is not a JWT, which AWS cannot verify: set external-issuer requestedTokenType ` +
          `to ${tokenTypes.jwt} (or id_token), or have the IdP issue JWT access tokens`,
      );
    }
    const meta = await metadata().catch((err: unknown) => {
      throw describeIdpError(err, idp, settings.clientId);
    });
    if (!meta.jwks_uri) throw new IdpFailure("IdentityProviderTokenInvalid", `${idp} publishes no jwks_uri`);
    jwks ??= createRemoteJWKSet(new URL(meta.jwks_uri), { timeoutDuration: settings.timeoutSeconds * 1000 });
    try {
      const { payload } = await jwtVerify(token, jwks, {
        issuer: settings.issuer,
        audience,
        algorithms: asymmetric,
        requiredClaims: ["exp", "sub"],
      });
      return payload;
    } catch (err) {
      if (err instanceof errors.JWTClaimValidationFailed && err.claim === "aud") {
        throw new IdpFailure(
          "IdentityProviderWrongAudience",
          `${idp} issued a token for audience ${JSON.stringify(err.payload.aud)}, not the trait's audience "${audience}": ` +
            `the IdP must issue tokens for that audience (the parameters of external-issuer say how it is asked)`,
        );
      }
      if (err instanceof errors.JWTClaimValidationFailed && err.claim === "iss") {
        throw new IdpFailure(
          "IdentityProviderWrongIssuer",
          `${idp} issued a token with issuer ${JSON.stringify(err.payload.iss)}: external-issuer issuer must be exactly the IdP's issuer`,
        );
      }
      if (err instanceof errors.JWKSTimeout || (err instanceof TypeError && /fetch/i.test(err.message))) {
        throw new IdpFailure("IdentityProviderUnreachable", `${idp}: its JWKS could not be fetched`, true);
      }
      const why = err instanceof Error ? err.message : String(err);
      throw new IdpFailure(
        "IdentityProviderTokenInvalid",
        `${idp} returned a token the controller could not verify (${why}): it must be signed with a key of the IdP's JWKS and be current`,
      );
    }
  };

  const checkClaims = (claims: JWTPayload, values: Partial<Record<Placeholder, string>>) => {
    for (const [claim, template] of Object.entries(settings.expect)) {
      const wanted = renderTemplate(template, values);
      const got = claims[claim];
      if (got === wanted) continue;
      const shown = JSON.stringify(got)?.slice(0, 120) ?? "nothing";
      if (claim === "sub") {
        throw new IdpFailure(
          "IdentityProviderWrongSubject",
          `${idp} issued a token for subject ${shown}, not the run's "${wanted}": the IdP must map the subject token's sub ` +
            `to the issued token's sub (or external-issuer expect.sub must say what it issues)`,
        );
      }
      throw new IdpFailure(
        "IdentityProviderClaimMismatch",
        `${idp} issued a token whose claim ${claim} is ${shown}, not "${wanted}" as external-issuer expect.${claim} requires: ` +
          `the IdP must copy that claim from the subject token`,
      );
    }
  };

  return {
    issuerUrl: settings.issuer,
    async issueToken(request: SignerRequest) {
      // The run token: the controller's own word about the run, for the IdP alone.
      const run = await opts.own.issueToken({ ...request, audience: settings.subjectTokenAudience });
      const runClaims = decodeJwt(run.token);
      const fact = (name: string) => (typeof runClaims[name] === "string" ? runClaims[name] : "");
      const values: Partial<Record<Placeholder, string>> = {
        subject: run.subject,
        audience: request.audience,
        namespace: fact("namespace"),
        namespaceUid: fact("namespaceUid"),
        application: fact("application"),
        component: fact("component"),
        customRunUid: fact("customRunUid"),
        sourceIdentity: request.sourceIdentity ?? "",
        clientId: settings.clientId,
      };
      const started = performance.now();
      const response = await exchange(run.token, values);
      const issuedType = response.issued_token_type;
      if (
        settings.grant === "token-exchange" &&
        typeof issuedType === "string" &&
        issuedType !== settings.requestedTokenType
      ) {
        throw new IdpFailure(
          "IdentityProviderUnsupportedTokenType",
          `${idp} issued a token of type ${issuedType}, not the requested ${settings.requestedTokenType}: ` +
            `set external-issuer requestedTokenType to a type the IdP issues as a JWT`,
        );
      }
      const token = response.access_token;
      const claims = await verify(token, request.audience);
      checkClaims(claims, values);
      const expiresAt = new Date((claims.exp ?? 0) * 1000);
      log.debug(
        {
          idp: settings.issuer,
          sub: claims.sub,
          aud: request.audience,
          exp: expiresAt,
          ms: Math.round(performance.now() - started),
        },
        "identity provider token issued",
      );
      return {
        token,
        jti: typeof claims.jti === "string" ? claims.jti : run.jti,
        expiresAt,
        subject: claims.sub ?? "",
        audience: request.audience,
      };
    },
  };
}
