// The external issuer's settings: one YAML (or JSON) document, given as the `external-issuer`
// setting, checked whole at start so a mistake names its field before any run depends on it.
import { existsSync, readFileSync } from "node:fs";
import { parse } from "yaml";

export const tokenTypes = {
  jwt: "urn:ietf:params:oauth:token-type:jwt",
  idToken: "urn:ietf:params:oauth:token-type:id_token",
  accessToken: "urn:ietf:params:oauth:token-type:access_token",
} as const;

export const tokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange";

export const clientAuthMethods = ["client_secret_basic", "client_secret_post", "private_key_jwt"] as const;
export type ClientAuthMethod = (typeof clientAuthMethods)[number];

export const grants = ["token-exchange", "client-credentials"] as const;
export type ExternalGrant = (typeof grants)[number];

/**
 * Values a template may use: what the controller knows of the run (asserted facts only: a tenant
 * chooses the others) and of this request. `{subject}` is the subject of the controller's own run
 * token, `{audience}` the trait's audience.
 */
export const placeholders = [
  "subject",
  "audience",
  "namespace",
  "namespaceUid",
  "application",
  "component",
  "customRunUid",
  "sourceIdentity",
  "clientId",
] as const;
export type Placeholder = (typeof placeholders)[number];

/** Token request parameters the controller sets itself: a template may not replace them. */
const reservedParameters = new Set([
  "grant_type",
  "subject_token",
  "subject_token_type",
  "requested_token_type",
  "actor_token",
  "actor_token_type",
  "client_id",
  "client_secret",
  "client_assertion",
  "client_assertion_type",
]);

/** Claims the controller always checks itself: `iss` against the issuer, `aud` the trait's audience. */
const alwaysChecked = new Set(["iss", "aud", "exp", "iat", "nbf"]);

export interface ExternalIssuerSettings {
  /** The IdP's issuer URL: its discovery document is at /.well-known/openid-configuration. */
  issuer: string;
  clientId: string;
  clientAuth: ClientAuthMethod;
  /** File holding the client secret (a mounted Secret); read for every request, never logged. */
  clientSecretFile?: string;
  /** File holding the private key for private_key_jwt: a PKCS#8 PEM or a private JWK. */
  privateKeyFile?: string;
  /** JWS algorithm of client assertions (private_key_jwt). */
  privateKeyAlg: string;
  /** `kid` of client assertions, as the IdP registered the key. */
  privateKeyId?: string;
  grant: ExternalGrant;
  /** RFC 8693 requested_token_type (token-exchange only). */
  requestedTokenType: string;
  /** `aud` of the controller's run token, the subject_token: what the IdP expects. Default `issuer`. */
  subjectTokenAudience: string;
  /** Extra token request parameters: name -> template. */
  parameters: Record<string, string>;
  /** Claims of the IdP's token that must equal a template's value: claim -> template. */
  expect: Record<string, string>;
  /** Per request to the IdP. */
  timeoutSeconds: number;
  /** Retries of transient failures after the first request, with exponential backoff. */
  retries: number;
  retryDelayMs: number;
}

const placeholder = /\{([^{}]*)\}/g;

function checkTemplate(where: string, template: unknown): string {
  if (typeof template !== "string" || template.length === 0)
    throw new Error(`${where} must be a non-empty string`);
  for (const m of template.matchAll(placeholder)) {
    const name = m[1] ?? "";
    if (!(placeholders as readonly string[]).includes(name)) {
      throw new Error(
        `${where} uses unknown placeholder {${name}}; allowed: ${placeholders.map((p) => `{${p}}`).join(", ")}`,
      );
    }
  }
  if (template.replace(placeholder, "").match(/[{}]/)) throw new Error(`${where} has an unbalanced brace`);
  return template;
}

/** A template with its placeholders filled in from `values`. */
export function renderTemplate(template: string, values: Readonly<Partial<Record<Placeholder, string>>>) {
  return template.replace(placeholder, (_m, name: Placeholder) => values[name] ?? "");
}

function stringMap(where: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new Error(`${where} must be a map of names to templates`);
  return value as Record<string, unknown>;
}

function httpsUrl(where: string, value: unknown, allowInsecure: boolean): string {
  if (typeof value !== "string" || !value) throw new Error(`${where} is required`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${where} must be a URL, got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== "https:" && !(allowInsecure && url.protocol === "http:"))
    throw new Error(`${where} must be an https URL, got ${JSON.stringify(value)}`);
  if (url.search || url.hash) throw new Error(`${where} must have no query or fragment`);
  return value.replace(/\/$/, "");
}

function readableFile(where: string, value: unknown): string {
  if (typeof value !== "string" || !value) throw new Error(`${where} is required`);
  if (!existsSync(value)) throw new Error(`${where}: no file at ${value}`);
  if (!readFileSync(value, "utf8").trim()) throw new Error(`${where}: ${value} is empty`);
  return value;
}

const known = new Set([
  "issuer",
  "clientId",
  "clientAuth",
  "clientSecretFile",
  "privateKeyFile",
  "privateKeyAlg",
  "privateKeyId",
  "grant",
  "requestedTokenType",
  "subjectTokenAudience",
  "parameters",
  "expect",
  "timeoutSeconds",
  "retries",
  "retryDelayMs",
]);

function whole(where: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max)
    throw new Error(`${where} must be a whole number from ${min} to ${max}`);
  return value;
}

/**
 * Parses and checks the external issuer's settings. Errors name the field; the caller prefixes
 * the setting's own name. Files are checked for presence here and read per request, so a rotated
 * Secret is picked up without a restart.
 */
export function parseExternalIssuer(text: string, allowInsecure = false): ExternalIssuerSettings {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new Error(`not valid YAML: ${(err as Error).message.split("\n")[0]}`, { cause: err });
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new Error("not a YAML map of issuer, clientId and the other fields the README lists");
  const raw = doc as Record<string, unknown>;
  for (const key of Object.keys(raw)) {
    if (!known.has(key)) throw new Error(`unknown field ${key}; fields: ${[...known].join(", ")}`);
  }
  const issuer = httpsUrl("issuer", raw.issuer, allowInsecure);
  if (typeof raw.clientId !== "string" || !raw.clientId) throw new Error("clientId is required");
  const clientAuth = (raw.clientAuth ?? "client_secret_basic") as ClientAuthMethod;
  if (!clientAuthMethods.includes(clientAuth))
    throw new Error(
      `clientAuth must be one of ${clientAuthMethods.join(", ")}, got ${JSON.stringify(clientAuth)}`,
    );
  const grant = (raw.grant ?? "token-exchange") as ExternalGrant;
  if (!grants.includes(grant))
    throw new Error(`grant must be one of ${grants.join(", ")}, got ${JSON.stringify(grant)}`);

  const settings: ExternalIssuerSettings = {
    issuer,
    clientId: raw.clientId,
    clientAuth,
    privateKeyAlg: typeof raw.privateKeyAlg === "string" ? raw.privateKeyAlg : "ES256",
    grant,
    requestedTokenType: tokenTypes.jwt,
    subjectTokenAudience: issuer,
    parameters: {},
    expect: {},
    timeoutSeconds: whole("timeoutSeconds", raw.timeoutSeconds, 10, 1, 120),
    retries: whole("retries", raw.retries, 3, 0, 10),
    retryDelayMs: whole("retryDelayMs", raw.retryDelayMs, 500, 1, 60_000),
  };
  if (clientAuth === "private_key_jwt") {
    settings.privateKeyFile = readableFile(
      "privateKeyFile (for clientAuth private_key_jwt)",
      raw.privateKeyFile,
    );
    if (raw.clientSecretFile !== undefined)
      throw new Error(
        "clientSecretFile is for client_secret_basic and client_secret_post, not private_key_jwt",
      );
    if (!["ES256", "ES384", "RS256", "PS256", "EdDSA"].includes(settings.privateKeyAlg))
      throw new Error(`privateKeyAlg must be one of ES256, ES384, RS256, PS256, EdDSA`);
    if (raw.privateKeyId !== undefined) {
      if (typeof raw.privateKeyId !== "string" || !raw.privateKeyId)
        throw new Error("privateKeyId must be a non-empty string");
      settings.privateKeyId = raw.privateKeyId;
    }
  } else {
    settings.clientSecretFile = readableFile(
      `clientSecretFile (for clientAuth ${clientAuth})`,
      raw.clientSecretFile,
    );
    if (raw.privateKeyFile !== undefined)
      throw new Error("privateKeyFile is only for clientAuth private_key_jwt");
  }

  if (grant === "token-exchange") {
    const type = raw.requestedTokenType ?? tokenTypes.jwt;
    const allowed: readonly unknown[] = [tokenTypes.jwt, tokenTypes.idToken, tokenTypes.accessToken];
    if (!allowed.includes(type))
      throw new Error(`requestedTokenType must be one of ${allowed.join(", ")}, got ${JSON.stringify(type)}`);
    settings.requestedTokenType = type as string;
    if (raw.subjectTokenAudience !== undefined) {
      if (typeof raw.subjectTokenAudience !== "string" || !raw.subjectTokenAudience)
        throw new Error("subjectTokenAudience must be a non-empty string");
      settings.subjectTokenAudience = raw.subjectTokenAudience;
    }
  } else {
    for (const key of ["requestedTokenType", "subjectTokenAudience"]) {
      if (raw[key] !== undefined) throw new Error(`${key} is for grant token-exchange only`);
    }
  }

  const parameters = stringMap("parameters", raw.parameters ?? { audience: "{audience}" });
  for (const [name, template] of Object.entries(parameters)) {
    if (reservedParameters.has(name))
      throw new Error(`parameters.${name} is set by the controller itself and cannot be configured`);
    settings.parameters[name] = checkTemplate(`parameters.${name}`, template);
  }
  // Token exchange binds the IdP's token to the run: by default its subject and source identity
  // must be the run token's. Client credentials has no run in it: its subject is the client's.
  const defaultExpect =
    grant === "token-exchange"
      ? { sub: "{subject}", "https://aws.amazon.com/source_identity": "{sourceIdentity}" }
      : { sub: "{clientId}" };
  const expect = stringMap("expect", raw.expect ?? defaultExpect);
  for (const [claim, template] of Object.entries(expect)) {
    if (alwaysChecked.has(claim))
      throw new Error(
        `expect.${claim}: ${claim} is always checked (iss against issuer, aud against the trait's audience, the times against the clock)`,
      );
    settings.expect[claim] = checkTemplate(`expect.${claim}`, template);
  }
  if (Object.keys(settings.expect).length === 0)
    throw new Error("expect must name at least one claim the IdP's token must carry (sub by default)");
  // Some IdPs put a subject of their own in sub (Keycloak's brokered user id): the run may be
  // bound through another claim, but it must be bound through one.
  if (grant === "token-exchange" && !Object.values(settings.expect).some((t) => t.includes("{subject}")))
    throw new Error(
      "expect must check at least one claim against {subject} (sub by default): otherwise the IdP could hand the run a token for another subject",
    );
  return settings;
}
