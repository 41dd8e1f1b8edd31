// Controller configuration from flags (--name=value) and environment (SCOPED_STEP_NAME), flags
// winning, all validated at start with a message that names the setting.
import os from "node:os";
import { parseGoDuration } from "../tasks/scoped-step/duration.ts";

export interface Config {
  namespace: string;
  watchNamespaces: string[];
  concurrency: number;
  resyncSeconds: number;
  leaseName: string;
  leaseDurationSeconds: number;
  renewDeadlineSeconds: number;
  retryPeriodSeconds: number;
  identity: string;
  httpPort: number;
  httpHost: string;
  logLevel: string;
  defaultTimeoutMs: number;
  shutdownGraceSeconds: number;
}

interface Option {
  flag: string;
  env: string;
  default: string;
  doc: string;
}

/** Every setting, in the order the README documents them. */
export const options: Record<keyof Config, Option> = {
  namespace: {
    flag: "namespace",
    env: "SCOPED_STEP_NAMESPACE",
    default: "scoped-step",
    doc: "Namespace of the controller: its Lease, signing keys and policy live here.",
  },
  watchNamespaces: {
    flag: "watch-namespaces",
    env: "SCOPED_STEP_WATCH_NAMESPACES",
    default: "",
    doc: "Comma-separated namespaces to watch for CustomRuns; empty means all.",
  },
  concurrency: {
    flag: "concurrency",
    env: "SCOPED_STEP_CONCURRENCY",
    default: "8",
    doc: "Runs reconciled at once.",
  },
  resyncSeconds: {
    flag: "resync-seconds",
    env: "SCOPED_STEP_RESYNC_SECONDS",
    default: "300",
    doc: "Every run is reconciled at least this often.",
  },
  leaseName: {
    flag: "lease-name",
    env: "SCOPED_STEP_LEASE_NAME",
    default: "scoped-step-controller",
    doc: "Lease used for leader election.",
  },
  leaseDurationSeconds: {
    flag: "lease-duration-seconds",
    env: "SCOPED_STEP_LEASE_DURATION_SECONDS",
    default: "15",
    doc: "How long a standby waits for an unrenewed lease before taking over.",
  },
  renewDeadlineSeconds: {
    flag: "renew-deadline-seconds",
    env: "SCOPED_STEP_RENEW_DEADLINE_SECONDS",
    default: "10",
    doc: "A leader that has not renewed for this long stops work.",
  },
  retryPeriodSeconds: {
    flag: "retry-period-seconds",
    env: "SCOPED_STEP_RETRY_PERIOD_SECONDS",
    default: "2",
    doc: "How often the lease is renewed or tried.",
  },
  identity: {
    flag: "identity",
    env: "POD_NAME",
    default: "",
    doc: "This replica's lease holder identity; default hostname and pid.",
  },
  httpPort: {
    flag: "http-port",
    env: "SCOPED_STEP_HTTP_PORT",
    default: "8080",
    doc: "Port for /healthz, /readyz, /metrics and the OIDC documents.",
  },
  httpHost: {
    flag: "http-host",
    env: "SCOPED_STEP_HTTP_HOST",
    default: "0.0.0.0",
    doc: "Address the HTTP server binds.",
  },
  logLevel: {
    flag: "log-level",
    env: "SCOPED_STEP_LOG_LEVEL",
    default: "info",
    doc: "trace, debug, info, warn, error or fatal.",
  },
  defaultTimeoutMs: {
    flag: "default-timeout",
    env: "SCOPED_STEP_DEFAULT_TIMEOUT",
    default: "60m",
    doc: "Timeout of a run whose spec.timeout is unset (Go duration; 0s for none).",
  },
  shutdownGraceSeconds: {
    flag: "shutdown-grace-seconds",
    env: "SCOPED_STEP_SHUTDOWN_GRACE_SECONDS",
    default: "20",
    doc: "On SIGTERM, how long in-flight passes may finish.",
  },
};

export class ConfigError extends Error {}

function integer(key: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${key} must be an integer from ${min} to ${max}, got "${text}"`);
  }
  return n;
}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const m = /^--([a-z-]+)=(.*)$/s.exec(arg);
    if (!m) throw new ConfigError(`unexpected argument "${arg}"; flags are --name=value`);
    flags.set(m[1] ?? "", m[2] ?? "");
  }
  const known = new Set(Object.values(options).map((o) => o.flag));
  for (const f of flags.keys()) if (!known.has(f)) throw new ConfigError(`unknown flag --${f}`);
  const raw = (k: keyof Config): string => {
    const o = options[k];
    return flags.get(o.flag) ?? env[o.env] ?? o.default;
  };
  const name = (k: keyof Config) => `--${options[k].flag} (${options[k].env})`;
  let defaultTimeoutMs: number;
  try {
    defaultTimeoutMs = parseGoDuration(raw("defaultTimeoutMs"));
  } catch {
    throw new ConfigError(
      `${name("defaultTimeoutMs")} must be a Go duration such as 60m, got "${raw("defaultTimeoutMs")}"`,
    );
  }
  const levels = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];
  if (!levels.includes(raw("logLevel")))
    throw new ConfigError(`${name("logLevel")} must be one of ${levels.join(", ")}`);
  const config: Config = {
    namespace: raw("namespace"),
    watchNamespaces: raw("watchNamespaces")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    concurrency: integer(name("concurrency"), raw("concurrency"), 1, 1000),
    resyncSeconds: integer(name("resyncSeconds"), raw("resyncSeconds"), 10, 86_400),
    leaseName: raw("leaseName"),
    leaseDurationSeconds: integer(name("leaseDurationSeconds"), raw("leaseDurationSeconds"), 2, 600),
    renewDeadlineSeconds: integer(name("renewDeadlineSeconds"), raw("renewDeadlineSeconds"), 1, 600),
    retryPeriodSeconds: integer(name("retryPeriodSeconds"), raw("retryPeriodSeconds"), 1, 600),
    identity: raw("identity") || `${os.hostname()}-${process.pid}`,
    httpPort: integer(name("httpPort"), raw("httpPort"), 0, 65_535),
    httpHost: raw("httpHost"),
    logLevel: raw("logLevel"),
    defaultTimeoutMs,
    shutdownGraceSeconds: integer(name("shutdownGraceSeconds"), raw("shutdownGraceSeconds"), 0, 3600),
  };
  if (config.renewDeadlineSeconds >= config.leaseDurationSeconds) {
    throw new ConfigError(
      `${name("renewDeadlineSeconds")} must be shorter than ${name("leaseDurationSeconds")}`,
    );
  }
  if (config.retryPeriodSeconds >= config.renewDeadlineSeconds) {
    throw new ConfigError(
      `${name("retryPeriodSeconds")} must be shorter than ${name("renewDeadlineSeconds")}`,
    );
  }
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(config.namespace)) {
    throw new ConfigError(`${name("namespace")} must be a namespace name, got "${config.namespace}"`);
  }
  return config;
}
