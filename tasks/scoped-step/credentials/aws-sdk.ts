// The AWS SDK clients, loaded when the AWS provider first needs them rather than at start: together
// they are about a tenth of the controller's memory, and a controller that has not minted yet (or
// mints no AWS credentials) should not carry them. Errors are told apart by class once loaded; no
// SDK error can exist before its module is.
import type * as Iam from "@aws-sdk/client-iam";
import type * as Sts from "@aws-sdk/client-sts";

let sts: typeof Sts | undefined;
let iam: typeof Iam | undefined;

export async function stsSdk(): Promise<typeof Sts> {
  sts ??= await import("@aws-sdk/client-sts");
  return sts;
}

export async function iamSdk(): Promise<typeof Iam> {
  iam ??= await import("@aws-sdk/client-iam");
  return iam;
}

/** An error response from STS (not a network error, which the SDK decorates alike). */
export const isStsError = (err: unknown): err is Sts.STSServiceException =>
  sts !== undefined && err instanceof sts.STSServiceException;

/** An error response from IAM. */
export const isIamError = (err: unknown): err is Iam.IAMServiceException =>
  iam !== undefined && err instanceof iam.IAMServiceException;

/** IAM says the role or policy does not exist. */
export const isNoSuchEntity = (err: unknown): boolean =>
  iam !== undefined && err instanceof iam.NoSuchEntityException;
