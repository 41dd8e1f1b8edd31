// S3, path-style, the few operations a step needs (GetObject, HeadObject, PutObject, DeleteObject,
// ListObjectsV2, HeadBucket), each authorised against the caller's identity and session policies.
import { createHash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { crc32 } from "node:zlib";
import { authorizeRequest, principalArn } from "./auth.ts";
import type { Principal } from "./auth.ts";
import { sha256Hex, uriEncode } from "./sigv4.ts";
import { now } from "./state.ts";
import type { PeerState, StoredObject } from "./state.ts";
import { AwsError, S3_NAMESPACE, isoSeconds, leaf, node } from "./wire.ts";

export interface S3Request {
  method: string;
  rawPath: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: Buffer;
  principal: Principal | undefined;
}

export interface HttpReply {
  status: number;
  headers: Record<string, string>;
  body: string | Buffer;
}

export interface S3Target {
  operation: string;
  bucket: string;
  key: string | undefined;
}

const LIST_PARAMS = new Set([
  "list-type",
  "prefix",
  "delimiter",
  "max-keys",
  "continuation-token",
  "start-after",
  "encoding-type",
  "fetch-owner",
]);

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(",") : value;
}

function notImplemented(): AwsError {
  return new AwsError(
    "NotImplemented",
    "A header you provided implies functionality that is not implemented",
    501,
  );
}

/** Which operation a path-style request is, from its method, path and query. */
export function s3Target(method: string, rawPath: string, query: URLSearchParams): S3Target {
  const path = rawPath.replace(/^\//, "");
  const slash = path.indexOf("/");
  const bucket = decodeURIComponent(slash < 0 ? path : path.slice(0, slash));
  const rawKey = slash < 0 ? "" : path.slice(slash + 1);
  const key = rawKey === "" ? undefined : decodeURIComponent(rawKey);
  const params = [...query.keys()].filter((k) => k !== "x-id");
  if (bucket === "") return { operation: "ListBuckets", bucket, key };
  if (key === undefined) {
    if (method === "GET" && query.get("list-type") === "2" && params.every((p) => LIST_PARAMS.has(p))) {
      return { operation: "ListObjectsV2", bucket, key };
    }
    if (method === "HEAD" && params.length === 0) return { operation: "HeadBucket", bucket, key };
    return { operation: `${method} bucket`, bucket, key };
  }
  if (params.length > 0) return { operation: `${method} object?${params.join("&")}`, bucket, key };
  const operations: Record<string, string> = {
    GET: "GetObject",
    HEAD: "HeadObject",
    PUT: "PutObject",
    DELETE: "DeleteObject",
  };
  return { operation: operations[method] ?? `${method} object`, bucket, key };
}

/** S3 signs the payload hash the client declares; the peer checks the declaration too. */
export function s3PayloadHash(headers: IncomingHttpHeaders, body: Buffer): string {
  const declared = header(headers, "x-amz-content-sha256");
  if (declared === undefined) {
    throw new AwsError("InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
  }
  if (/^[0-9a-f]{64}$/.test(declared)) {
    if (declared !== sha256Hex(body)) {
      throw new AwsError(
        "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
      );
    }
  } else if (declared !== "UNSIGNED-PAYLOAD" && declared !== "STREAMING-UNSIGNED-PAYLOAD-TRAILER") {
    throw new AwsError(
      "NotImplemented",
      `x-amz-content-sha256 ${declared} is not supported by the peer`,
      501,
    );
  }
  return declared;
}

export function s3Arn(bucket: string, key?: string): string {
  return key === undefined ? `arn:aws:s3:::${bucket}` : `arn:aws:s3:::${bucket}/${key}`;
}

function authorizeS3(
  state: PeerState,
  principal: Principal | undefined,
  action: string,
  resource: string,
  context: Record<string, string | undefined> = {},
): void {
  if (!principal) throw new AwsError("AccessDenied", "Access Denied", 403);
  const decision = authorizeRequest(state, principal, action, resource, context);
  if (!decision.allowed) {
    throw new AwsError(
      "AccessDenied",
      `User: ${principalArn(principal)} is not authorized to perform: ${action} on resource: "${resource}" ${decision.because}`,
      403,
    );
  }
}

function allowed(state: PeerState, principal: Principal, action: string, resource: string): boolean {
  return authorizeRequest(state, principal, action, resource).allowed;
}

function crc32Base64(body: Buffer): string {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32(body));
  return out.toString("base64");
}

/** The body of an `aws-chunked` upload with an unsigned payload and trailing checksums. */
function decodeAwsChunked(body: Buffer): { data: Buffer; trailers: Record<string, string> } {
  const chunks: Buffer[] = [];
  const trailers: Record<string, string> = {};
  let pos = 0;
  for (;;) {
    const eol = body.indexOf("\r\n", pos);
    if (eol < 0) throw new AwsError("IncompleteBody", "The request body terminated unexpectedly");
    const size = parseInt(body.subarray(pos, eol).toString().split(";")[0] ?? "", 16);
    if (Number.isNaN(size)) throw new AwsError("InvalidRequest", "Invalid chunk size in aws-chunked body");
    pos = eol + 2;
    if (size === 0) break;
    chunks.push(body.subarray(pos, pos + size));
    pos += size + 2;
  }
  for (const line of body.subarray(pos).toString().split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { data: Buffer.concat(chunks), trailers };
}

/** Checksums the client asked S3 to verify: a mismatch is BadDigest, as in S3. */
function verifiedChecksums(body: Buffer, given: Record<string, string | undefined>): Record<string, string> {
  const computed: Record<string, () => string> = {
    "x-amz-checksum-crc32": () => crc32Base64(body),
    "x-amz-checksum-sha1": () => createHash("sha1").update(body).digest("base64"),
    "x-amz-checksum-sha256": () => createHash("sha256").update(body).digest("base64"),
  };
  const kept: Record<string, string> = {};
  for (const [name, compute] of Object.entries(computed)) {
    const value = given[name];
    if (value === undefined) continue;
    if (value !== compute()) {
      const algorithm = name.replace("x-amz-checksum-", "").toUpperCase();
      throw new AwsError(
        "BadDigest",
        `The ${algorithm} you specified did not match the calculated checksum.`,
      );
    }
    kept[name] = value;
  }
  const md5 = given["content-md5"];
  if (md5 !== undefined && md5 !== createHash("md5").update(body).digest("base64")) {
    throw new AwsError("BadDigest", "The Content-MD5 you specified did not match what we received.");
  }
  return kept;
}

export function storeObject(
  state: PeerState,
  bucket: string,
  key: string,
  body: Buffer,
  contentType = "application/octet-stream",
  checksums: Record<string, string> = {},
): StoredObject {
  const objects = state.buckets.get(bucket) ?? new Map<string, StoredObject>();
  state.buckets.set(bucket, objects);
  const stored: StoredObject = {
    body,
    contentType,
    etag: `"${createHash("md5").update(body).digest("hex")}"`,
    lastModified: new Date(Math.floor(now(state).getTime() / 1000) * 1000),
    checksums: { "x-amz-checksum-crc32": crc32Base64(body), ...checksums },
  };
  objects.set(key, stored);
  return stored;
}

function objectHeaders(object: StoredObject, withChecksums: boolean): Record<string, string> {
  return {
    "Content-Type": object.contentType,
    "Content-Length": String(object.body.length),
    ETag: object.etag,
    "Last-Modified": object.lastModified.toUTCString(),
    "Accept-Ranges": "bytes",
    ...(withChecksums ? object.checksums : {}),
  };
}

function listObjectsV2(bucket: string, objects: Map<string, StoredObject>, q: URLSearchParams): string {
  const prefix = q.get("prefix") ?? "";
  const delimiter = q.get("delimiter") ?? "";
  const maxKeys = Math.min(1000, Math.max(0, Number(q.get("max-keys") ?? "1000") || 0));
  const token = q.get("continuation-token");
  const startAfter = q.get("start-after") ?? "";
  const after = token === null ? startAfter : Buffer.from(token, "base64url").toString();
  const urlEncoded = q.get("encoding-type") === "url";
  const show = (text: string): string => (urlEncoded ? uriEncode(text).replace(/%2F/g, "/") : text);

  // Keys and common prefixes, in key order, each counted once against max-keys.
  const items: { name: string; object?: StoredObject }[] = [];
  for (const key of [...objects.keys()].sort()) {
    if (!key.startsWith(prefix)) continue;
    const cut = delimiter === "" ? -1 : key.indexOf(delimiter, prefix.length);
    if (cut < 0) {
      items.push({ name: key, object: objects.get(key) });
      continue;
    }
    const common = key.slice(0, cut + delimiter.length);
    if (items[items.length - 1]?.name !== common) items.push({ name: common });
  }
  const rest = items.filter((i) => i.name > after);
  const page = rest.slice(0, maxKeys);
  const truncated = rest.length > page.length;
  const last = page[page.length - 1];
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="${S3_NAMESPACE}">` +
    leaf("Name", bucket) +
    leaf("Prefix", show(prefix)) +
    (delimiter === "" ? "" : leaf("Delimiter", show(delimiter))) +
    leaf("MaxKeys", maxKeys) +
    leaf("KeyCount", page.length) +
    leaf("IsTruncated", truncated) +
    (token === null ? "" : leaf("ContinuationToken", token)) +
    (truncated && last ? leaf("NextContinuationToken", Buffer.from(last.name).toString("base64url")) : "") +
    (q.has("start-after") ? leaf("StartAfter", show(startAfter)) : "") +
    (urlEncoded ? leaf("EncodingType", "url") : "") +
    page
      .map(({ name, object }) =>
        object
          ? node(
              "Contents",
              leaf("Key", show(name)),
              leaf("LastModified", isoSeconds(object.lastModified)),
              leaf("ETag", object.etag),
              leaf("Size", object.body.length),
              leaf("StorageClass", "STANDARD"),
            )
          : node("CommonPrefixes", leaf("Prefix", show(name))),
      )
      .join("") +
    "</ListBucketResult>"
  );
}

function putObject(state: PeerState, req: S3Request, bucket: string, key: string): HttpReply {
  if (header(req.headers, "x-amz-copy-source") !== undefined) throw notImplemented();
  const contentSha = header(req.headers, "x-amz-content-sha256");
  let body = req.body;
  const given: Record<string, string | undefined> = {
    "x-amz-checksum-crc32": header(req.headers, "x-amz-checksum-crc32"),
    "x-amz-checksum-sha1": header(req.headers, "x-amz-checksum-sha1"),
    "x-amz-checksum-sha256": header(req.headers, "x-amz-checksum-sha256"),
    "content-md5": header(req.headers, "content-md5"),
  };
  if (contentSha === "STREAMING-UNSIGNED-PAYLOAD-TRAILER") {
    const decoded = decodeAwsChunked(body);
    body = decoded.data;
    Object.assign(given, decoded.trailers);
  }
  const checksums = verifiedChecksums(body, given);
  const stored = storeObject(state, bucket, key, body, header(req.headers, "content-type"), checksums);
  return { status: 200, headers: { ETag: stored.etag, ...checksums }, body: "" };
}

export function handleS3(state: PeerState, req: S3Request, target: S3Target): HttpReply {
  const { operation, bucket, key } = target;
  if (operation === "ListBuckets" || !operation.match(/^[A-Z]/)) throw notImplemented();
  const objects = state.buckets.get(bucket);
  if (!objects) throw new AwsError("NoSuchBucket", "The specified bucket does not exist", 404);

  switch (operation) {
    case "ListObjectsV2": {
      authorizeS3(state, req.principal, "s3:ListBucket", s3Arn(bucket), {
        "s3:prefix": req.query.get("prefix") ?? undefined,
        "s3:delimiter": req.query.get("delimiter") ?? undefined,
        "s3:max-keys": req.query.get("max-keys") ?? undefined,
      });
      return {
        status: 200,
        headers: { "Content-Type": "application/xml" },
        body: listObjectsV2(bucket, objects, req.query),
      };
    }
    case "HeadBucket":
      authorizeS3(state, req.principal, "s3:ListBucket", s3Arn(bucket));
      return { status: 200, headers: { "x-amz-bucket-region": "eu-west-1" }, body: "" };
    case "PutObject":
      authorizeS3(state, req.principal, "s3:PutObject", s3Arn(bucket, key));
      return putObject(state, req, bucket, key ?? "");
    case "DeleteObject":
      authorizeS3(state, req.principal, "s3:DeleteObject", s3Arn(bucket, key));
      objects.delete(key ?? "");
      return { status: 204, headers: {}, body: "" };
    case "GetObject":
    case "HeadObject": {
      authorizeS3(state, req.principal, "s3:GetObject", s3Arn(bucket, key));
      const object = objects.get(key ?? "");
      if (!object) {
        // Without s3:ListBucket a missing key is indistinguishable from a forbidden one.
        if (req.principal && allowed(state, req.principal, "s3:ListBucket", s3Arn(bucket))) {
          throw new AwsError("NoSuchKey", "The specified key does not exist.", 404);
        }
        throw new AwsError("AccessDenied", "Access Denied", 403);
      }
      const withChecksums = header(req.headers, "x-amz-checksum-mode") === "ENABLED";
      const headers = objectHeaders(object, withChecksums);
      return { status: 200, headers, body: operation === "GetObject" ? object.body : "" };
    }
    default:
      throw notImplemented();
  }
}
