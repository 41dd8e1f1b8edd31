// Controller configuration from flags (--name=value) and environment (SCOPED_STEP_NAME), flags
// winning, all validated at start with a message that names the setting.
import os from "node:os";
import { parseRevokerRoles } from "../tasks/scoped-step/credentials/aws-accounts.ts";
import { parseGoDuration } from "../tasks/scoped-step/duration.ts";
import { defaultEntrypointImage } from "../tasks/scoped-step/entrypoint.ts";
import { parseExternalIssuer, type ExternalIssuerSettings } from "./idp/settings.ts";

export interface Config {
  namespace: string;
  configMap: string;
  watchNamespaces: string[];
  tektonNamespace: string;
  concurrency: number;
  resyncSeconds: number;
  ledgerSweepSeconds: number;
  leaseName: string;
  leaseDurationSeconds: number;
  renewDeadlineSeconds: number;
  retryPeriodSeconds: number;
  identity: string;
  httpPort: number;
  httpHost: string;
  logLevel: string;
  defaultTimeoutMs: number;
  entrypointImage: string;
  shutdownGraceSeconds: number;
  credentials: "aws" | "none";
  issuerUrl: string;
  allowInsecureIssuer: boolean;
  signingAlgorithm: "ES256" | "RS256";
  signingKeySecret: string;
  signingKeyStore: "secret" | "kms";
  kmsKeyId: string;
  kmsRegion: string;
  kmsEndpoint: string;
  keyRotationSeconds: number;
  subjectTemplate: string;
  issuerMode: "self" | "external";
  /** Set in external issuer mode only. */
  externalIssuer: ExternalIssuerSettings | undefined;
  awsRegion: string;
  stsEndpoint: string;
  iamEndpoint: string;
  stepAwsEndpoint: string;
  awsRevokerRoles: string[];
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
  configMap: {
    flag: "config-map",
    env: "SCOPED_STEP_CONFIG_MAP",
    default: "scoped-step-config",
    doc: "ConfigMap in the controller namespace with settings by flag name; log-level, concurrency, default-timeout and entrypoint-image reload while running.",
  },
  watchNamespaces: {
    flag: "watch-namespaces",
    env: "SCOPED_STEP_WATCH_NAMESPACES",
    default: "",
    doc: "Comma-separated namespaces to watch for CustomRuns; empty means all.",
  },
  tektonNamespace: {
    flag: "tekton-namespace",
    env: "SCOPED_STEP_TEKTON_NAMESPACE",
    default: "tekton-pipelines",
    doc: "Tekton's namespace: its config-defaults ConfigMap gives the default pod template and resolution timeout.",
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
  ledgerSweepSeconds: {
    flag: "ledger-sweep-seconds",
    env: "SCOPED_STEP_LEDGER_SWEEP_SECONDS",
    default: "60",
    doc: "How often the leader sweeps the credential ledger: revokes credentials of runs that are gone or over, drops expired entries.",
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
  entrypointImage: {
    flag: "entrypoint-image",
    env: "SCOPED_STEP_ENTRYPOINT_IMAGE",
    default: defaultEntrypointImage,
    doc: "Image of Tekton's entrypoint, which every step pod's init container copies for the step to run: the one Tekton's installation uses (its controller's -entrypoint-image).",
  },
  shutdownGraceSeconds: {
    flag: "shutdown-grace-seconds",
    env: "SCOPED_STEP_SHUTDOWN_GRACE_SECONDS",
    default: "20",
    doc: "On SIGTERM, how long in-flight passes may finish.",
  },
  credentials: {
    flag: "credentials",
    env: "SCOPED_STEP_CREDENTIALS",
    default: "aws",
    doc: "aws: mint an OIDC token and STS credentials per step; none: run steps without credentials.",
  },
  issuerUrl: {
    flag: "issuer-url",
    env: "SCOPED_STEP_ISSUER_URL",
    default: "",
    doc: "Public URL of the OIDC issuer (https, no port/query); required with --credentials=aws.",
  },
  allowInsecureIssuer: {
    flag: "allow-insecure-issuer",
    env: "SCOPED_STEP_ALLOW_INSECURE_ISSUER",
    default: "false",
    doc: "Accept an http:// or loopback issuer URL (local development and tests only).",
  },
  signingAlgorithm: {
    flag: "signing-algorithm",
    env: "SCOPED_STEP_SIGNING_ALGORITHM",
    default: "ES256",
    doc: "ES256 or RS256 for new signing keys.",
  },
  signingKeySecret: {
    flag: "signing-key-secret",
    env: "SCOPED_STEP_SIGNING_KEY_SECRET",
    default: "scoped-step-signing-keys",
    doc: "Secret in the controller namespace holding the signing keys; with signing-key-store kms, the ConfigMap of that name holds the public key set (no private key).",
  },
  signingKeyStore: {
    flag: "signing-key-store",
    env: "SCOPED_STEP_SIGNING_KEY_STORE",
    default: "secret",
    doc: "secret: the controller generates and rotates its signing keys in a Secret; kms: the keys stay in AWS KMS (see kms-key-id), and the key's spec gives the algorithm.",
  },
  kmsKeyId: {
    flag: "kms-key-id",
    env: "SCOPED_STEP_KMS_KEY_ID",
    default: "",
    doc: "With signing-key-store kms: the signing key, as alias/NAME, an alias ARN or a key ARN. Rotate by pointing the alias at a new key: it is published first and signs after an hour.",
  },
  kmsRegion: {
    flag: "kms-region",
    env: "SCOPED_STEP_KMS_REGION",
    default: "",
    doc: "Region of the KMS key; the key ARN's region, else aws-region, when empty.",
  },
  kmsEndpoint: {
    flag: "kms-endpoint",
    env: "SCOPED_STEP_KMS_ENDPOINT",
    default: "",
    doc: "KMS endpoint URL (VPC endpoints, tests); the regional endpoint when empty.",
  },
  keyRotationSeconds: {
    flag: "key-rotation-seconds",
    env: "SCOPED_STEP_KEY_ROTATION_SECONDS",
    default: "604800",
    doc: "Signing key rotation interval.",
  },
  subjectTemplate: {
    flag: "subject-template",
    env: "SCOPED_STEP_SUBJECT_TEMPLATE",
    default: "system:scoped-step:{namespace}:{application}:{component}",
    doc: "Token subject, unless the namespace's policy sets one.",
  },
  issuerMode: {
    flag: "issuer-mode",
    env: "SCOPED_STEP_ISSUER_MODE",
    default: "self",
    doc: "self: AWS trusts the controller's own issuer; external: each step's token comes from the organisation's OpenID provider (external-issuer), which AWS trusts.",
  },
  externalIssuer: {
    flag: "external-issuer",
    env: "SCOPED_STEP_EXTERNAL_ISSUER",
    default: "",
    doc: "With issuer-mode external: the OpenID provider, the controller's client there, the grant and the claim mapping, as YAML (see External issuer mode).",
  },
  awsRegion: {
    flag: "aws-region",
    env: "SCOPED_STEP_AWS_REGION",
    default: "us-east-1",
    doc: "STS region when a trait names none.",
  },
  stsEndpoint: {
    flag: "sts-endpoint",
    env: "SCOPED_STEP_STS_ENDPOINT",
    default: "",
    doc: "STS endpoint URL (VPC endpoints, tests); regional endpoint when empty.",
  },
  iamEndpoint: {
    flag: "iam-endpoint",
    env: "SCOPED_STEP_IAM_ENDPOINT",
    default: "",
    doc: "IAM endpoint URL for deny-policy revocation; AWS's when empty.",
  },
  stepAwsEndpoint: {
    flag: "step-aws-endpoint",
    env: "SCOPED_STEP_STEP_AWS_ENDPOINT",
    default: "",
    doc: "AWS_ENDPOINT_URL given to every step with AWS credentials (a proxy or private endpoint all its AWS calls go through); none when empty.",
  },
  awsRevokerRoles: {
    flag: "aws-revoker-roles",
    env: "SCOPED_STEP_AWS_REVOKER_ROLES",
    default: "",
    doc: "Comma-separated IAM role ARNs, at most one per account, that the controller assumes to write deny-policy revocations in that account. The controller's own credentials act in their own account only; deny-policy revocation is refused for roles in any other account.",
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

function required(key: string, text: string): string {
  if (!text.trim()) throw new ConfigError(`${key} must not be empty`);
  return text.trim();
}

function oneOf<T extends string>(key: string, text: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(text))
    throw new ConfigError(`${key} must be one of ${allowed.join(", ")}, got "${text}"`);
  return text as T;
}

/** Settings a change of the ConfigMap applies while running; the others need a restart. */
export const reloadable = [
  "logLevel",
  "concurrency",
  "defaultTimeoutMs",
  "entrypointImage",
] as const satisfies (keyof Config)[];

/**
 * Flags win over environment variables, which win over the ConfigMap (keys are flag names,
 * e.g. `log-level: debug`), which wins over defaults.
 */
function parseFlags(argv: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const m = /^--([a-z-]+)=(.*)$/s.exec(arg);
    if (!m) throw new ConfigError(`unexpected argument "${arg}"; flags are --name=value`);
    flags.set(m[1] ?? "", m[2] ?? "");
  }
  return flags;
}

/**
 * Where the configuration ConfigMap is, from flags and environment alone. Nothing else is checked
 * yet: settings a release requires, such as issuer-url, may come from that ConfigMap.
 */
export function configMapLocation(
  argv: string[],
  env: NodeJS.ProcessEnv,
): { namespace: string; configMap: string } {
  const flags = parseFlags(argv);
  const raw = (k: "namespace" | "configMap") =>
    flags.get(options[k].flag) ?? env[options[k].env] ?? options[k].default;
  return { namespace: raw("namespace"), configMap: raw("configMap") };
}

export function loadConfig(
  argv: string[],
  env: NodeJS.ProcessEnv,
  configMap: Record<string, string> = {},
): Config {
  const flags = parseFlags(argv);
  const known = new Set(Object.values(options).map((o) => o.flag));
  for (const f of flags.keys()) if (!known.has(f)) throw new ConfigError(`unknown flag --${f}`);
  for (const key of Object.keys(configMap)) {
    if (!known.has(key))
      throw new ConfigError(`unknown key "${key}" in the configuration ConfigMap; keys are flag names`);
  }
  const raw = (k: keyof Config): string => {
    const o = options[k];
    return flags.get(o.flag) ?? env[o.env] ?? configMap[o.flag] ?? o.default;
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
    configMap: raw("configMap"),
    watchNamespaces: raw("watchNamespaces")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    concurrency: integer(name("concurrency"), raw("concurrency"), 1, 1000),
    resyncSeconds: integer(name("resyncSeconds"), raw("resyncSeconds"), 10, 86_400),
    ledgerSweepSeconds: integer(name("ledgerSweepSeconds"), raw("ledgerSweepSeconds"), 1, 3600),
    leaseName: raw("leaseName"),
    leaseDurationSeconds: integer(name("leaseDurationSeconds"), raw("leaseDurationSeconds"), 2, 600),
    renewDeadlineSeconds: integer(name("renewDeadlineSeconds"), raw("renewDeadlineSeconds"), 1, 600),
    retryPeriodSeconds: integer(name("retryPeriodSeconds"), raw("retryPeriodSeconds"), 1, 600),
    identity: raw("identity") || `${os.hostname()}-${process.pid}`,
    httpPort: integer(name("httpPort"), raw("httpPort"), 0, 65_535),
    httpHost: raw("httpHost"),
    tektonNamespace: raw("tektonNamespace"),
    logLevel: raw("logLevel"),
    defaultTimeoutMs,
    entrypointImage: required(name("entrypointImage"), raw("entrypointImage")),
    shutdownGraceSeconds: integer(name("shutdownGraceSeconds"), raw("shutdownGraceSeconds"), 0, 3600),
    credentials: oneOf(name("credentials"), raw("credentials"), ["aws", "none"] as const),
    issuerUrl: raw("issuerUrl"),
    allowInsecureIssuer:
      oneOf(name("allowInsecureIssuer"), raw("allowInsecureIssuer"), ["true", "false"] as const) === "true",
    signingAlgorithm: oneOf(name("signingAlgorithm"), raw("signingAlgorithm"), ["ES256", "RS256"] as const),
    signingKeySecret: raw("signingKeySecret"),
    signingKeyStore: oneOf(name("signingKeyStore"), raw("signingKeyStore"), ["secret", "kms"] as const),
    kmsKeyId: raw("kmsKeyId").trim(),
    kmsRegion: raw("kmsRegion").trim(),
    kmsEndpoint: raw("kmsEndpoint").trim(),
    keyRotationSeconds: integer(name("keyRotationSeconds"), raw("keyRotationSeconds"), 3600, 365 * 86_400),
    subjectTemplate: raw("subjectTemplate"),
    issuerMode: oneOf(name("issuerMode"), raw("issuerMode"), ["self", "external"] as const),
    externalIssuer: undefined,
    awsRegion: raw("awsRegion"),
    stsEndpoint: raw("stsEndpoint"),
    iamEndpoint: raw("iamEndpoint"),
    stepAwsEndpoint: raw("stepAwsEndpoint"),
    awsRevokerRoles: raw("awsRevokerRoles")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
  };
  try {
    parseRevokerRoles(config.awsRevokerRoles);
  } catch (err) {
    throw new ConfigError(`${name("awsRevokerRoles")}: ${(err as Error).message}`);
  }
  if (config.credentials === "aws" && !config.issuerUrl) {
    throw new ConfigError(
      `${name("issuerUrl")} is required with --credentials=aws: AWS fetches the token keys from it`,
    );
  }
  if (config.issuerMode === "external") {
    if (config.credentials !== "aws")
      throw new ConfigError(`${name("issuerMode")} external needs --credentials=aws`);
    if (!raw("externalIssuer").trim())
      throw new ConfigError(`${name("externalIssuer")} is required with --issuer-mode=external`);
    try {
      config.externalIssuer = parseExternalIssuer(raw("externalIssuer"), config.allowInsecureIssuer);
    } catch (err) {
      throw new ConfigError(`${name("externalIssuer")}: ${(err as Error).message}`);
    }
  } else if (raw("externalIssuer").trim()) {
    throw new ConfigError(`${name("externalIssuer")} is set but ${name("issuerMode")} is not external`);
  }
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
  if (config.stepAwsEndpoint && !/^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/.test(config.stepAwsEndpoint)) {
    throw new ConfigError(
      `${name("stepAwsEndpoint")} must be an http(s) URL without query or fragment, got "${config.stepAwsEndpoint}"`,
    );
  }
  checkKms(config, name);
  for (const k of ["namespace", "tektonNamespace"] as const) {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(config[k]))
      throw new ConfigError(`${name(k)} must be a namespace name, got "${config[k]}"`);
  }
  return config;
}

/** A KMS key id as KMS takes it: alias/NAME, a key id, or a key or alias ARN. */
const kmsKeyIdPattern =
  /^(alias\/[a-zA-Z0-9/_-]{1,250}|[0-9a-f-]{36}|mrk-[0-9a-f]{32}|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key\/[0-9a-zA-Z-]+|alias\/[a-zA-Z0-9/_-]+))$/;

function checkKms(config: Config, name: (k: keyof Config) => string): void {
  const kms = config.signingKeyStore === "kms";
  if (!kms) {
    for (const k of ["kmsKeyId", "kmsRegion", "kmsEndpoint"] as const) {
      if (config[k]) throw new ConfigError(`${name(k)} is set, but ${name("signingKeyStore")} is not kms`);
    }
    return;
  }
  if (!config.kmsKeyId) {
    throw new ConfigError(
      `${name("kmsKeyId")} is required with --signing-key-store=kms: name the signing key, e.g. alias/scoped-step-signing`,
    );
  }
  if (!kmsKeyIdPattern.test(config.kmsKeyId) || config.kmsKeyId.startsWith("alias/aws/")) {
    throw new ConfigError(
      `${name("kmsKeyId")} must be alias/NAME, a key id, or a key or alias ARN of a customer managed key, got "${config.kmsKeyId}"`,
    );
  }
  if (config.kmsEndpoint && !/^https?:\/\/[^\s/?#]+\/?$/.test(config.kmsEndpoint)) {
    throw new ConfigError(
      `${name("kmsEndpoint")} must be an http(s) URL without path or query, got "${config.kmsEndpoint}"`,
    );
  }
  if (config.kmsRegion && !/^[a-z]{2}(-[a-z]+)+-\d$/.test(config.kmsRegion)) {
    throw new ConfigError(
      `${name("kmsRegion")} must be an AWS region such as eu-west-1, got "${config.kmsRegion}"`,
    );
  }
}

/** The KMS key's region: the setting, else the ARN's, else aws-region. */
export function kmsRegionOf(config: Pick<Config, "kmsRegion" | "kmsKeyId" | "awsRegion">): string {
  return (
    config.kmsRegion || /^arn:aws[a-z-]*:kms:([a-z0-9-]+):/.exec(config.kmsKeyId)?.[1] || config.awsRegion
  );
}
