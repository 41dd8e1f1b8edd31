// AWS Signature Version 4, verified the way AWS does: rebuild the canonical request from what arrived
// on the wire, derive the signing key from the secret and the credential scope, and compare HMACs.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

/** What the Authorization header says about the signer and the signature. */
export interface SigV4Authorization {
  accessKeyId: string;
  /** Credential scope: YYYYMMDD, region, service. */
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
  /** x-amz-date (or Date) of the request, parsed. */
  requestTime: Date;
  amzDate: string;
}

/** The bytes of a request that the signature covers, as they arrived. */
export interface WireRequest {
  method: string;
  /** The path exactly as sent, still percent-encoded. */
  rawPath: string;
  rawQuery: string;
  /** node's `req.rawHeaders`: name, value, name, value... */
  rawHeaders: string[];
}

export class MalformedAuthorization extends Error {}

export function sha256Hex(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** RFC 3986 encoding as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ is escaped. */
export function uriEncode(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function decodeComponent(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Reads `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`. */
export function parseAuthorization(
  header: string,
  dateHeader: string | undefined,
  amzDateHeader: string | undefined,
): SigV4Authorization {
  const m = /^AWS4-HMAC-SHA256\s+(.*)$/s.exec(header.trim());
  if (!m?.[1]) throw new MalformedAuthorization(`Unsupported Authorization Type`);
  const fields = new Map<string, string>();
  for (const part of m[1].split(",")) {
    const eq = part.indexOf("=");
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const credential = fields.get("Credential");
  const signedHeaders = fields.get("SignedHeaders");
  const signature = fields.get("Signature");
  if (!credential || !signedHeaders || !signature) {
    const missing = ["Credential", "SignedHeaders", "Signature"].filter((f) => !fields.get(f));
    throw new MalformedAuthorization(
      `Authorization header requires ${missing.map((f) => `'${f}'`).join(", ")} parameter. ` +
        `Authorization=${header.split(" ")[0] ?? ""}`,
    );
  }
  const scope = credential.split("/");
  if (scope.length !== 5 || scope[4] !== "aws4_request") {
    throw new MalformedAuthorization(
      `Credential should be scoped with a valid terminator: 'aws4_request', not '${scope[4] ?? ""}'.`,
    );
  }
  const [accessKeyId = "", date = "", region = "", service = ""] = scope;
  const amzDate = amzDateHeader ?? (dateHeader ? toAmzDate(new Date(dateHeader)) : undefined);
  const requestTime = amzDate ? parseAmzDate(amzDate) : undefined;
  if (!amzDate || !requestTime) {
    throw new MalformedAuthorization(
      "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    );
  }
  const headers = signedHeaders.split(";");
  if (!headers.includes("host")) throw new MalformedAuthorization("'Host' must be a 'SignedHeader'");
  return { accessKeyId, date, region, service, signedHeaders: headers, signature, requestTime, amzDate };
}

function toAmzDate(date: Date): string | undefined {
  if (Number.isNaN(date.getTime())) return undefined;
  return date
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}

function parseAmzDate(text: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s));
}

function canonicalPath(rawPath: string, s3: boolean): string {
  // S3 signs the path as sent; every other service normalises it and encodes it once more.
  if (s3) return rawPath || "/";
  const segments: string[] = [];
  for (const segment of rawPath.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") segments.pop();
    else segments.push(segment);
  }
  const trailing = segments.length > 0 && rawPath.endsWith("/") ? "/" : "";
  return uriEncode(`/${segments.join("/")}${trailing}`).replace(/%2F/g, "/");
}

function canonicalQuery(rawQuery: string): string {
  const pairs: [string, string][] = [];
  for (const part of rawQuery.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const key = decodeComponent(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? "" : decodeComponent(part.slice(eq + 1));
    if (key === "X-Amz-Signature") continue;
    pairs.push([uriEncode(key), uriEncode(value)]);
  }
  pairs.sort(([ak, av], [bk, bv]) => (ak === bk ? compare(av, bv) : compare(ak, bk)));
  return pairs.map(([k, v]) => `${k}=${v}`).join("&");
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function canonicalHeaders(rawHeaders: string[], signed: string[]): string {
  const values = new Map<string, string[]>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] ?? "").toLowerCase();
    const value = (rawHeaders[i + 1] ?? "").replace(/\s+/g, " ").trim();
    values.set(name, [...(values.get(name) ?? []), value]);
  }
  return signed.map((name) => `${name}:${(values.get(name) ?? []).join(",")}\n`).join("");
}

export function canonicalRequest(
  req: WireRequest,
  auth: SigV4Authorization,
  payloadHash: string,
  s3: boolean,
): string {
  return [
    req.method,
    canonicalPath(req.rawPath, s3),
    canonicalQuery(req.rawQuery),
    canonicalHeaders(req.rawHeaders, auth.signedHeaders),
    auth.signedHeaders.join(";"),
    payloadHash,
  ].join("\n");
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

export function expectedSignature(
  secretAccessKey: string,
  auth: SigV4Authorization,
  canonical: string,
): string {
  const scope = `${auth.date}/${auth.region}/${auth.service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", auth.amzDate, scope, sha256Hex(canonical)].join("\n");
  let key = hmac(`AWS4${secretAccessKey}`, auth.date);
  key = hmac(key, auth.region);
  key = hmac(key, auth.service);
  key = hmac(key, "aws4_request");
  return createHmac("sha256", key).update(toSign, "utf8").digest("hex");
}

export function signaturesMatch(expected: string, provided: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(provided);
  return a.length === b.length && timingSafeEqual(a, b);
}
