// What the AWS peer puts on the wire: errors carrying AWS codes and HTTP statuses, and the two XML
// dialects the SDK parses (the query protocol of STS and IAM, and S3's REST XML).
import { randomUUID } from "node:crypto";

export const STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/";
export const IAM_NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/";
export const S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/";

/** An error AWS would answer with: `code` is the wire code (`<Code>`), `status` the HTTP status. */
export class AwsError extends Error {
  readonly code: string;
  readonly status: number;
  /** Extra XML elements some S3 errors carry (RequestTimeTooSkewed's ServerTime, for one). */
  readonly detailXml: string;

  constructor(code: string, message: string, status = 400, detailXml = "") {
    super(message);
    this.name = code;
    this.code = code;
    this.status = status;
    this.detailXml = detailXml;
  }
}

// Statuses from the SDK models (awsQueryError / httpError traits) and the common error tables.
const QUERY_STATUS: Record<string, number> = {
  AccessDenied: 403,
  ExpiredToken: 403,
  IDPRejectedClaim: 403,
  InvalidClientTokenId: 403,
  MissingAuthenticationToken: 403,
  RegionDisabledException: 403,
  SignatureDoesNotMatch: 403,
  NoSuchEntity: 404,
  LimitExceeded: 409,
  EntityAlreadyExists: 409,
  InternalFailure: 500,
  ServiceFailure: 500,
  ServiceUnavailable: 503,
};

const S3_STATUS: Record<string, number> = {
  AccessDenied: 403,
  InvalidAccessKeyId: 403,
  SignatureDoesNotMatch: 403,
  RequestTimeTooSkewed: 403,
  NoSuchBucket: 404,
  NoSuchKey: 404,
  InternalError: 500,
  NotImplemented: 501,
  ServiceUnavailable: 503,
  SlowDown: 503,
};

export function statusForCode(service: string, code: string): number {
  const table = service === "s3" ? S3_STATUS : QUERY_STATUS;
  return table[code] ?? 400;
}

export function requestId(): string {
  return randomUUID();
}

export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** `<name>text</name>`, or nothing when the value is absent (AWS omits empty optional members). */
export function leaf(name: string, value: string | number | boolean | undefined): string {
  return value === undefined ? "" : `<${name}>${escapeXml(String(value))}</${name}>`;
}

/** `<name>children</name>` for children that are already XML. */
export function node(name: string, ...children: string[]): string {
  return `<${name}>${children.join("")}</${name}>`;
}

/** A query-protocol success document: `<XResponse><XResult>..</XResult><ResponseMetadata>`. */
export function queryResponse(namespace: string, action: string, id: string, result?: string): string {
  const body = result === undefined ? "" : node(`${action}Result`, result);
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${namespace}">` +
    `${body}${node("ResponseMetadata", leaf("RequestId", id))}</${action}Response>`
  );
}

export function queryError(namespace: string, error: AwsError, id: string): string {
  const type = error.status >= 500 ? "Receiver" : "Sender";
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="${namespace}">` +
    node("Error", leaf("Type", type), leaf("Code", error.code), leaf("Message", error.message)) +
    `${leaf("RequestId", id)}</ErrorResponse>`
  );
}

export function s3Error(error: AwsError, id: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    node(
      "Error",
      leaf("Code", error.code),
      leaf("Message", error.message),
      error.detailXml,
      leaf("RequestId", id),
    )
  );
}

/** AWS writes timestamps in XML as ISO 8601 without milliseconds. */
export function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}
