/**
 * A run failure a pipeline author can act on: `reason` becomes the CustomRun condition's reason
 * and `message` its message. Nothing secret and no stack trace goes in either.
 */
export class RunFailure extends Error {
  readonly reason: string;
  /**
   * True only when the failure proves no credential exists: a cloud API answered the mint with a
   * modelled error response. Then there is nothing to revoke. A network error or a timeout proves
   * nothing, so it stays false.
   */
  readonly nothingIssued: boolean;
  /** A Secret found at the credential's name that is not the run's: never to be deleted. */
  readonly foreignSecret: string | undefined;
  constructor(
    reason: string,
    message: string,
    opts: { nothingIssued?: boolean; foreignSecret?: string } = {},
  ) {
    super(message);
    this.name = "RunFailure";
    this.reason = reason;
    this.nothingIssued = opts.nothingIssued ?? false;
    this.foreignSecret = opts.foreignSecret;
  }
}

export const isRunFailure = (err: unknown): err is RunFailure => err instanceof RunFailure;
