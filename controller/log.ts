// JSON logs with every field that could carry secret material redacted, whatever its depth.
import { pino, type DestinationStream, type Logger } from "pino";

const secretFields = new Set([
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
]);

export const censor = "[redacted]";

/** How deep redaction looks; anything deeper is logged as this marker instead. */
const maxDepth = 8;

/**
 * The value with every secret field's value replaced, at any depth, in objects, arrays and errors'
 * own properties. What holds none is returned as it is; what holds one is copied, never changed
 * in place, and an error's copy keeps its class, message and stack. One pass over the keys: pino's
 * own wildcard paths cost about 150 µs a line, most of a line's CPU.
 */
export function redactSecrets(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== "object") return value;
  if (depth >= maxDepth) return "[too deep to log]";
  if (Array.isArray(value)) {
    const items = value as unknown[];
    let out: unknown[] | undefined;
    items.forEach((item, i) => {
      const clean = redactSecrets(item, depth + 1);
      if (clean !== item) (out ??= [...items])[i] = clean;
    });
    return out ?? value;
  }
  if (value instanceof Date || Buffer.isBuffer(value)) return value;
  let out: object | undefined;
  const source = value as Record<string, unknown>;
  const keys = Object.keys(source);
  // An error's cause and an AggregateError's errors are its own but not enumerable; the log's
  // error serializer writes them all the same.
  if (value instanceof Error) for (const k of ["cause", "errors"]) if (Object.hasOwn(value, k)) keys.push(k);
  for (const key of keys) {
    const item = source[key];
    const clean = secretFields.has(key) ? censor : redactSecrets(item, depth + 1);
    if (clean === item) continue;
    if (!out) {
      out = Object.create(Object.getPrototypeOf(value) as object) as object;
      Object.defineProperties(out, Object.getOwnPropertyDescriptors(value));
      // V8 formats an error's stack from the original object, not from a copy of its accessor.
      if (value instanceof Error)
        Object.defineProperty(out, "stack", { value: value.stack, writable: true, configurable: true });
    }
    const enumerable = Object.getOwnPropertyDescriptor(value, key)?.enumerable ?? true;
    Object.defineProperty(out, key, { value: clean, enumerable, writable: true, configurable: true });
  }
  return out ?? value;
}

/** The controller's logger: to stdout, or to `destination` (tests). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { component: "scoped-step" },
    formatters: {
      log: (object: Record<string, unknown>) => redactSecrets(object) as Record<string, unknown>,
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
