// The two public documents a verifier (AWS STS, GCP, Vault…) fetches from the issuer URL: the
// OpenID discovery document and the JWKS, served over HTTP or written out as static files.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, rename, writeFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { claimsSupported, IssuerConfigError } from "./claims.ts";
import type { PublicJwk } from "./keys.ts";

export interface Jwks {
  keys: PublicJwk[];
}

export interface DiscoveryDocument {
  issuer: string;
  jwks_uri: string;
  response_types_supported: string[];
  subject_types_supported: string[];
  id_token_signing_alg_values_supported: string[];
  claims_supported: string[];
  scopes_supported: string[];
}

export const discoveryPath = "/.well-known/openid-configuration";
export const jwksPath = "/openid/v1/jwks";
export const documentMaxAgeSeconds = 300;

/**
 * Checks the issuer URL against what AWS accepts (https, no port, no query, no fragment, no
 * trailing slash: `iss` must match the registered provider URL exactly). Plain http, ports and
 * loopback hosts are for tests and the demo and need `allowInsecure`.
 */
export function checkIssuerUrl(issuer: string, allowInsecure: boolean): void {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw new IssuerConfigError(`issuer URL ${JSON.stringify(issuer)} is not a URL`);
  }
  const problems: string[] = [];
  if (url.protocol !== "https:" && url.protocol !== "http:") problems.push("must use https");
  if (url.search || issuer.includes("?")) problems.push("must have no query");
  if (url.hash || issuer.includes("#")) problems.push("must have no fragment");
  if (url.username || url.password) problems.push("must have no user or password");
  if (issuer.endsWith("/")) problems.push("must not end with '/'");
  if (!allowInsecure) {
    if (url.protocol === "http:") problems.push("must use https (set allowInsecureIssuer for local tests)");
    if (url.port) problems.push("must have no port (set allowInsecureIssuer for local tests)");
    if (/^(localhost|127\.[\d.]+|\[::1\])$/i.test(url.hostname)) {
      problems.push(
        "must be reachable by the cloud provider, not loopback (set allowInsecureIssuer for local tests)",
      );
    }
  }
  if (problems.length > 0) throw new IssuerConfigError(`issuer URL ${issuer} ${problems.join(", ")}`);
}

/** Path prefix of the issuer URL ("" at the root): both documents live below it. */
const basePath = (issuer: string) => new URL(issuer).pathname.replace(/\/$/, "");

export const documentPaths = (issuer: string) => ({
  discovery: `${basePath(issuer)}${discoveryPath}`,
  jwks: `${basePath(issuer)}${jwksPath}`,
});

export function jwksDocument(keys: readonly PublicJwk[]): Jwks {
  return { keys: [...keys] };
}

export function discoveryDocument(issuer: string, jwks: Jwks): DiscoveryDocument {
  return {
    issuer,
    jwks_uri: `${issuer}${jwksPath}`,
    response_types_supported: ["id_token"],
    subject_types_supported: ["public"],
    id_token_signing_alg_values_supported: [...new Set(jwks.keys.map((k) => k.alg))],
    claims_supported: [...claimsSupported],
    scopes_supported: ["openid"],
  };
}

/**
 * Serves both documents below the issuer URL's path. Returns false for any other path so it can
 * sit in front of the controller's other endpoints.
 */
export function documentHandler(
  issuer: string,
  current: () => Jwks,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const paths = documentPaths(issuer);
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== paths.discovery && path !== paths.jwks) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: `method ${req.method ?? ""} not allowed` }));
      return true;
    }
    let jwks: Jwks;
    try {
      jwks = current();
    } catch {
      // No key set yet (KMS unreachable at start): no documents rather than an empty key set.
      res.writeHead(503, { "Content-Type": "application/json", "Retry-After": "5" });
      res.end(JSON.stringify({ error: "signing keys not loaded yet" }));
      return true;
    }
    const body = JSON.stringify(path === paths.jwks ? jwks : discoveryDocument(issuer, jwks));
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
    const headers = {
      "Content-Type": "application/json",
      "Cache-Control": `public, max-age=${documentMaxAgeSeconds}`,
      ETag: etag,
    };
    if (req.headers["if-none-match"] === etag) {
      res.writeHead(304, headers);
      res.end();
      return true;
    }
    res.writeHead(200, { ...headers, "Content-Length": Buffer.byteLength(body) });
    res.end(req.method === "HEAD" ? undefined : body);
    return true;
  };
}

/**
 * Writes both documents below `outDir`, which stands for the issuer URL itself:
 * `outDir/.well-known/openid-configuration` and `outDir/openid/v1/jwks`. Each file is replaced
 * atomically, so a server reading the folder never serves half a document.
 */
export async function writeDocuments(outDir: string, issuer: string, jwks: Jwks): Promise<string[]> {
  const files: [string, unknown][] = [
    [discoveryPath, discoveryDocument(issuer, jwks)],
    [jwksPath, jwks],
  ];
  const written: string[] = [];
  for (const [relative, document] of files) {
    const file = path.join(outDir, ...relative.split("/").filter(Boolean));
    await mkdir(path.dirname(file), { recursive: true });
    const temporary = `${file}.${randomBytes(4).toString("hex")}.tmp`;
    await writeFile(temporary, `${JSON.stringify(document, null, 2)}\n`);
    await rename(temporary, file);
    written.push(file);
  }
  return written;
}
