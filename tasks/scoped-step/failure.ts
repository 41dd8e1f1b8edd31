/**
 * A run failure a pipeline author can act on: `reason` becomes the CustomRun condition's reason
 * and `message` its message. Nothing secret and no stack trace goes in either.
 */
export class RunFailure extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = "RunFailure";
    this.reason = reason;
  }
}

export const isRunFailure = (err: unknown): err is RunFailure => err instanceof RunFailure;
