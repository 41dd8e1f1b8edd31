// CloudFront's CreateInvalidation (REST XML, API version 2020-05-31), authorised as AWS does:
// action cloudfront:CreateInvalidation on the distribution's ARN, for the caller's identity and
// session policies. Distributions exist only as the test makes them.
import { authorizeRequest, principalArn, type Principal } from "./auth.ts";
import { awsId, now, type PeerState } from "./state.ts";
import { AwsError, isoSeconds, leaf, node } from "./wire.ts";
import type { HttpReply } from "./s3.ts";

export const CLOUDFRONT_NAMESPACE = "http://cloudfront.amazonaws.com/doc/2020-05-31/";

export interface Invalidation {
  id: string;
  paths: string[];
  callerReference: string;
  createTime: Date;
  /** Who asked: the assumed-role ARN. */
  principal: string;
}

export const distributionArn = (accountId: string, id: string) =>
  `arn:aws:cloudfront::${accountId}:distribution/${id}`;

/** The operation and distribution a request names, or undefined when the peer does not know it. */
export function cloudFrontTarget(
  method: string,
  rawPath: string,
): { operation: string; distributionId: string } | undefined {
  const m = /^\/2020-05-31\/distribution\/([A-Za-z0-9]+)\/invalidation$/.exec(rawPath);
  if (m && method === "POST") return { operation: "CreateInvalidation", distributionId: m[1] ?? "" };
  return undefined;
}

/** The values of every `<tag>` element in `xml`, in order. */
const elements = (xml: string, tag: string) =>
  [...xml.matchAll(new RegExp(`<${tag}>([^<]*)</${tag}>`, "g"))].map((m) =>
    (m[1] ?? "")
      .replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">")
      .replace(/&quot;/g, '"')
      .replace(/&apos;/g, "'")
      .replace(/&amp;/g, "&"),
  );

export function createInvalidation(
  state: PeerState,
  principal: Principal,
  distributionId: string,
  body: string,
): HttpReply {
  const resource = distributionArn(state.accountId, distributionId);
  const decision = authorizeRequest(state, principal, "cloudfront:CreateInvalidation", resource);
  if (!decision.allowed) {
    throw new AwsError(
      "AccessDenied",
      `User: ${principalArn(principal)} is not authorized to perform: cloudfront:CreateInvalidation on resource: ${resource} ${decision.because}`,
      403,
    );
  }
  const invalidations = state.distributions.get(distributionId);
  if (!invalidations)
    throw new AwsError("NoSuchDistribution", "The specified distribution does not exist.", 404);
  if (!body.includes("<InvalidationBatch"))
    throw new AwsError("MalformedXML", "The XML document is malformed.");
  const paths = elements(body, "Path");
  const quantity = Number(elements(body, "Quantity")[0]);
  const [callerReference = ""] = elements(body, "CallerReference");
  if (callerReference === "") throw new AwsError("InvalidArgument", "CallerReference is required.");
  if (quantity !== paths.length) {
    throw new AwsError("InconsistentQuantities", "The value of Quantity and the size of Items don't match.");
  }
  if (paths.length === 0 || paths.some((p) => !p.startsWith("/"))) {
    throw new AwsError("InvalidArgument", "Each invalidation path must begin with a slash.");
  }
  const invalidation: Invalidation = {
    id: awsId("I", 13),
    paths,
    callerReference,
    createTime: now(state),
    principal: principalArn(principal),
  };
  invalidations.push(invalidation);
  const xml =
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<Invalidation xmlns="${CLOUDFRONT_NAMESPACE}">` +
    leaf("Id", invalidation.id) +
    leaf("Status", "InProgress") +
    leaf("CreateTime", isoSeconds(invalidation.createTime)) +
    node(
      "InvalidationBatch",
      node("Paths", leaf("Quantity", paths.length), node("Items", ...paths.map((p) => leaf("Path", p)))),
      leaf("CallerReference", callerReference),
    ) +
    `</Invalidation>`;
  return {
    status: 201,
    headers: {
      "Content-Type": "text/xml",
      Location: `https://cloudfront.amazonaws.com/2020-05-31/distribution/${distributionId}/invalidation/${invalidation.id}`,
    },
    body: xml,
  };
}

/** CloudFront's error body: an ErrorResponse around the Error, as its REST XML protocol has it. */
export function cloudFrontError(error: AwsError, id: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<ErrorResponse xmlns="${CLOUDFRONT_NAMESPACE}">` +
    node(
      "Error",
      leaf("Type", error.status >= 500 ? "Receiver" : "Sender"),
      leaf("Code", error.code),
      leaf("Message", error.message),
    ) +
    leaf("RequestId", id) +
    `</ErrorResponse>`
  );
}
