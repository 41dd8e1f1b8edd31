// An organisation's OpenID provider on loopback: oidc-provider (a certified implementation), set up
// as an operator would set up Okta or Keycloak for the controller. A confidential client for the
// controller (client_secret_basic; twins with client_secret_post and private_key_jwt) with the
// client_credentials grant and RFC 8693 token exchange, the latter registered
// as a custom grant that trusts the controller's issuer for subject tokens (like Okta's trusted
// servers and Keycloak's external-to-internal exchange): it verifies the subject token against
// that issuer's published JWKS, then issues a JWT for the requested audience whose sub is the
// subject token's and which carries its AWS claims. `misconfigure` bends it the ways real IdPs get
// misconfigured, for the failure tests.
import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createRemoteJWKSet,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from "jose";
import Provider, { errors, type KoaContextWithOIDC } from "oidc-provider";

export const tokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange";
const jwtType = "urn:ietf:params:oauth:token-type:jwt";
/** Claims the IdP copies from the subject token, as a claim mapper would. */
const copied = [
  "namespace",
  "application",
  "component",
  "customRunUid",
  "https://aws.amazon.com/tags",
  "https://aws.amazon.com/source_identity",
];

export interface IdpMisconfiguration {
  /** Issue tokens for this audience whatever was asked. */
  audience?: string;
  /** Issue tokens with this subject whatever the subject token said. */
  subject?: string;
  /** Drop the claims copied from the subject token. */
  dropClaims?: boolean;
  /** Answer every token request 503 temporarily_unavailable. */
  unavailable?: boolean;
}

export interface TestIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** The same client's twin that authenticates with client_secret_post (same secret). */
  postClientId: string;
  /** A client that authenticates with private_key_jwt, and its private key as a JWK (JSON). */
  keyClientId: string;
  clientKey: string;
  /** The issuer whose tokens the IdP accepts as subject tokens. */
  trust(issuer: string, audience?: string): void;
  misconfigure(m: IdpMisconfiguration): void;
  /** Token requests answered, by grant type and outcome. */
  requests: { grant: string; outcome: string }[];
  /** Every token the IdP issued: tests search what was written for them. */
  issued: string[];
  stop(): Promise<void>;
}

export async function startTestIdp(opts: { port?: number } = {}): Promise<TestIdp> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  const signingKey = { ...(await exportJWK(privateKey)), kid: "idp-1", alg: "ES256", use: "sig" };
  const clientId = "scoped-step-controller";
  const clientSecret = randomBytes(24).toString("base64url");
  const postClientId = "scoped-step-controller-post";
  const keyClientId = "scoped-step-controller-key";
  const client = await generateKeyPair("ES256", { extractable: true });
  const clientKey = JSON.stringify({ ...(await exportJWK(client.privateKey)), kid: "client-key-1" });
  const clientPublicKey = {
    ...(await exportJWK(client.publicKey)),
    kid: "client-key-1",
    alg: "ES256",
    use: "sig",
  };
  let trusted: { issuer: string; audience: string; jwks: JWTVerifyGetKey } | undefined;
  let misconfiguration: IdpMisconfiguration = {};
  const claimsFor = new WeakMap<object, Record<string, unknown>>();
  const requests: TestIdp["requests"] = [];
  const issued: string[] = [];

  const resourceServer = (audience: string) => ({
    audience: misconfiguration.audience ?? audience,
    scope: "",
    accessTokenFormat: "jwt" as const,
    accessTokenTTL: 600,
    jwt: { sign: { alg: "ES256" as const } },
  });

  const grants = {
    grant_types: ["client_credentials", tokenExchange],
    redirect_uris: [],
    response_types: [],
  };
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        token_endpoint_auth_method: "client_secret_basic",
        ...grants,
      },
      {
        client_id: postClientId,
        client_secret: clientSecret,
        token_endpoint_auth_method: "client_secret_post",
        ...grants,
      },
      {
        client_id: keyClientId,
        token_endpoint_auth_method: "private_key_jwt",
        token_endpoint_auth_signing_alg: "ES256",
        jwks: { keys: [clientPublicKey] },
        ...grants,
      },
    ],
    jwks: { keys: [signingKey] },
    clientDefaults: { id_token_signed_response_alg: "ES256" },
    ttl: { AccessToken: 600, ClientCredentials: 600 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Like an authorization server whose audience is fixed: resource https://sts.amazonaws.com.
        defaultResource: () => "https://sts.amazonaws.com",
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => resourceServer(resource.replace(/^https:\/\//, "")),
      },
    },
    extraTokenClaims: (_ctx, token) => claimsFor.get(token),
  });

  async function exchange(ctx: KoaContextWithOIDC) {
    const params = ctx.oidc.params as Record<string, string | undefined>;
    const client = ctx.oidc.client;
    if (!client) throw new errors.InvalidClient("client authentication required");
    if (params.subject_token_type !== jwtType)
      throw new errors.InvalidRequest("unsupported subject_token_type");
    if (params.requested_token_type && params.requested_token_type !== jwtType)
      throw new errors.InvalidRequest(`requested_token_type ${params.requested_token_type} is not supported`);
    if (!trusted) throw new errors.InvalidGrant("no trusted issuer for subject tokens");
    let subject: JWTPayload;
    try {
      ({ payload: subject } = await jwtVerify(params.subject_token ?? "", trusted.jwks, {
        issuer: trusted.issuer,
        audience: trusted.audience,
        requiredClaims: ["sub", "exp"],
      }));
    } catch {
      throw new errors.InvalidGrant("subject_token is not a valid token of a trusted issuer");
    }
    const token = new provider.AccessToken({
      accountId: misconfiguration.subject ?? String(subject.sub),
      client,
      gty: "token_exchange",
      // JWT access tokens stand alone: no stored grant backs them.
      grantId: "token-exchange",
      resourceServer: new provider.ResourceServer(
        params.audience ?? "sts.amazonaws.com",
        resourceServer(params.audience ?? "sts.amazonaws.com"),
      ),
    });
    if (!misconfiguration.dropClaims)
      claimsFor.set(
        token,
        Object.fromEntries(copied.filter((c) => c in subject).map((c) => [c, subject[c]])),
      );
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: jwtType,
      token_type: "Bearer",
      expires_in: token.expiration,
    };
  }
  provider.registerGrantType(tokenExchange, exchange, [
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "audience",
    "resource",
    "scope",
  ]);

  const grantOf = (ctx: KoaContextWithOIDC) =>
    typeof ctx.oidc.params?.grant_type === "string" ? ctx.oidc.params.grant_type : "";
  provider.on("grant.success", (ctx: KoaContextWithOIDC) =>
    requests.push({ grant: grantOf(ctx), outcome: "ok" }),
  );
  provider.on("grant.error", (ctx: KoaContextWithOIDC, err: { error?: string }) =>
    requests.push({ grant: grantOf(ctx), outcome: err.error ?? "error" }),
  );
  const callback = provider.callback();
  server.on("request", (req, res) => {
    if (req.url?.startsWith("/token")) {
      if (misconfiguration.unavailable) {
        requests.push({ grant: "", outcome: "temporarily_unavailable" });
        res.writeHead(503, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: "temporarily_unavailable", error_description: "maintenance" }));
        return;
      }
      // Every token issued is kept, for the leak searches.
      const end = res.end.bind(res) as (chunk?: unknown) => typeof res;
      res.end = ((chunk?: unknown) => {
        if (typeof chunk === "string" || Buffer.isBuffer(chunk)) {
          const body = JSON.parse(chunk.toString()) as { access_token?: string };
          if (body.access_token) issued.push(body.access_token);
        }
        return end(chunk);
      }) as typeof res.end;
    }
    void callback(req, res);
  });

  return {
    issuer,
    clientId,
    clientSecret,
    postClientId,
    keyClientId,
    clientKey,
    trust(trustedIssuer, audience = issuer) {
      // As Okta and Keycloak do: the trusted issuer's keys through its discovery document, fetched
      // when a subject token first needs them.
      let keys: Promise<JWTVerifyGetKey> | undefined;
      const jwks: JWTVerifyGetKey = async (...args) => {
        keys ??= fetch(`${trustedIssuer}/.well-known/openid-configuration`)
          .then((r) => r.json() as Promise<{ jwks_uri: string }>)
          .then((d) => createRemoteJWKSet(new URL(d.jwks_uri)));
        return (await keys)(...args);
      };
      trusted = { issuer: trustedIssuer, audience, jwks };
    },
    misconfigure(m) {
      misconfiguration = m;
    },
    requests,
    issued,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
