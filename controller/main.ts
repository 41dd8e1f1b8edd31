// The controller process: configuration, logging, identity (issuer, credentials, policy), HTTP
// endpoints, the leader-elected engine, and graceful shutdown on SIGTERM.
import type { Logger } from "pino";
import { keepPod, keepRun, settledRun } from "../tasks/scoped-step/cached.ts";
import { fallbackCauses } from "../tasks/scoped-step/credentials/aws-revocation.ts";
import { credentialGauges } from "../tasks/scoped-step/gauges.ts";
import { reconcileRun } from "../tasks/scoped-step/reconcile.ts";
import { labels, managedByValue } from "../tasks/scoped-step/pod.ts";
import { ConflictError, type TaskContext } from "../tasks/scoped-step/ports.ts";
import { sweepLedger } from "../tasks/scoped-step/sweep.ts";
import type { CustomRun } from "../tasks/scoped-step/types.ts";
import { ConfigError, configMapLocation, loadConfig, type Config } from "./config.ts";
import { startEngine, type Engine } from "./engine.ts";
import { Metrics } from "./metrics.ts";
import { kubeEvents } from "./events.ts";
import { startHttpServer } from "./http.ts";
import { buildIdentity } from "./identity.ts";
import { KmsKeyError } from "./issuer/index.ts";
import { customRunType, kubeClusterPort, podType } from "./kube.ts";
import { apiErrorMessage, describeRequest, loadKube } from "./kube-client.ts";
import { kubeLedger } from "./ledger.ts";
import { createLogger } from "./log.ts";
import { readConfigMap, watchSettings } from "./settings.ts";
import { missingApis, missingApisMessage, podEvent, type RequiredApi } from "./startup.ts";
import { watchTektonDefaults } from "./tekton-defaults.ts";
import { resolutionRequestType } from "../tasks/scoped-step/remote.ts";

/** Test-only crash injection: the process kills itself when the named point is reached. */
function failpointFromEnv(name: string | undefined, log: Logger): Pick<TaskContext, "failpoint"> {
  if (!name) return {};
  return {
    failpoint: (point) => {
      if (point !== name) return;
      log.warn({ failpoint: point }, "failpoint reached; killing the process");
      process.kill(process.pid, "SIGKILL");
    },
  };
}

const argv = process.argv.slice(2);
const kube = await loadKube().catch((err: unknown) => {
  console.error(`scoped-step: cannot reach the Kubernetes API: ${(err as Error).message}`);
  process.exit(2);
});
// Discovery needs no configuration: it runs while the configuration is read.
const discovery: Promise<{ missing: RequiredApi[]; err?: unknown }> = missingApis(kube).then(
  (missing) => ({ missing }),
  (err: unknown) => ({ missing: [], err }),
);
let config: Config;
// Flags and environment first: they say where the configuration ConfigMap is.
let bootstrap = { namespace: "scoped-step", configMap: "scoped-step-config" };
try {
  bootstrap = configMapLocation(argv, process.env);
  const where = `${bootstrap.namespace}/${bootstrap.configMap}`;
  const data = await readConfigMap(kube, bootstrap.namespace, bootstrap.configMap).catch((err: unknown) => {
    throw new ConfigError(
      `cannot read ConfigMap ${where} (check the API server and RBAC): ${apiErrorMessage(err)}`,
    );
  });
  try {
    config = loadConfig(argv, process.env, data);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // Settings live in the ConfigMap, keyed by flag name: say so where the operator looks.
    throw new ConfigError(
      `${err.message}. Set it in ConfigMap ${where} (data key: the flag name without --, e.g. issuer-url), then restart the Deployment`,
    );
  }
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`scoped-step: invalid configuration: ${err.message}`);
  await podEvent(kube, bootstrap.namespace, "InvalidConfiguration", err.message);
  process.exit(2);
}
const log = createLogger(config.logLevel);

// Everything below watches these: one missing would fail every run, so say which and stop.
const { missing, err: discoveryError } = await discovery;
if (discoveryError)
  log.warn({ err: discoveryError }, "could not read the API server's discovery documents; starting anyway");
if (missing.length > 0) {
  const message = missingApisMessage(missing);
  log.fatal({ missing: missing.map((a) => a.crd) }, message);
  await podEvent(kube, config.namespace, "MissingCustomResourceDefinition", message);
  process.exit(2);
}

// Metrics read the engine, which is built after the context that reports to metrics.
const live: { engine?: Engine<CustomRun> } = {};
const metrics = new Metrics({
  credentials: () => credentialGauges(live.engine?.objects() ?? []),
  isLeader: () => live.engine?.isLeader() ?? false,
  cached: () => live.engine?.cached() ?? {},
  keyActivatedAt: () => identity.issuer?.activeKeyActivatedAt() ?? 0,
  revocationFallbackCauses: fallbackCauses,
});
kube.onRequest = (method, path) => {
  const { verb, resource } = describeRequest(method, path);
  metrics.kubeRequest(verb, resource);
};

const identity = await buildIdentity(kube, config, log, {
  onStsCall: (s, o) => metrics.stsCall(s, o),
  onIdpCall: (s, o) => metrics.idpCall(s, o),
  onRevocationFallback: (cause) => metrics.revocationFellBack(cause),
}).catch(async (err: unknown) => {
  log.fatal({ err }, "could not set up the identity side (issuer, credentials, policy)");
  // A signing key KMS refuses is the operator's to fix: say so next to the CrashLoopBackOff.
  if (err instanceof KmsKeyError) await podEvent(kube, config.namespace, err.reason, err.message);
  process.exit(2);
});

const tektonDefaults = watchTektonDefaults(kube, config.tektonNamespace, log);

const ctx: TaskContext = {
  // The engine's caches: the engine is built below, and reconciles only once it leads.
  cluster: kubeClusterPort(kube, {
    runs: () => engine.primary,
    pods: () => engine.owned(podType.plural),
    resolutionRequests: () => engine.owned(resolutionRequestType.plural),
  }),
  events: kubeEvents(kube, "scoped-step-controller", config.identity, log),
  credentials: identity.credentials,
  ledger: kubeLedger(kube, config.namespace, log),
  policy: identity.policy,
  metrics,
  log,
  now: () => new Date(),
  tektonDefaults: () => tektonDefaults.current(),
  ...failpointFromEnv(process.env.SCOPED_STEP_FAILPOINT, log),
  defaultTimeoutMs: config.defaultTimeoutMs,
  entrypointImage: config.entrypointImage,
};

// The port is bound before the controller tries to lead: a replica that cannot serve its issuer
// documents or probes must not hold the lease while it fails.
const server = await startHttpServer(config.httpHost, config.httpPort, {
  ready: () => {
    if (!identity.policies.synced) return { ok: false, why: "policies not synced" };
    // Never sign with anything but the configured key: until it answers, take no traffic.
    if (identity.issuer && !identity.issuer.ready)
      return { ok: false, why: `signing key unavailable: ${identity.issuer.notReadyReason ?? "starting"}` };
    const engine = live.engine;
    if (!engine) return { ok: false, why: "starting" };
    if (engine.isLeader() && !engine.synced()) return { ok: false, why: "informers not synced" };
    return { ok: true, why: "" };
  },
  metrics: async () => ({
    contentType: metrics.registry.contentType,
    body: await metrics.registry.metrics(),
  }),
  ...(identity.issuer ? { oidc: identity.issuer.handler } : {}),
}).catch(async (err: unknown) => {
  // The issuer's documents, the probes and the metrics are all served here: without them, stop.
  const message = `cannot serve HTTP (issuer documents, probes, metrics) on ${config.httpHost}:${config.httpPort}: ${(err as Error).message}`;
  log.fatal({ err }, message);
  await podEvent(kube, config.namespace, "HttpPortUnavailable", message);
  process.exit(2);
});

const engine = startEngine<CustomRun>(
  kube,
  {
    namespaces: config.watchNamespaces,
    concurrency: config.concurrency,
    resyncMs: config.resyncSeconds * 1000,
    lease: {
      namespace: config.namespace,
      name: config.leaseName,
      identity: config.identity,
      durationSeconds: config.leaseDurationSeconds,
      renewDeadlineMs: config.renewDeadlineSeconds * 1000,
      retryPeriodMs: config.retryPeriodSeconds * 1000,
    },
  },
  {
    for: { ...customRunType, keep: keepRun, forget: settledRun },
    owns: [
      {
        ...podType,
        labelSelector: `${labels.managedBy}=${managedByValue}`,
        keep: (pod) => keepPod(pod),
      },
      // Requests for steps from Tekton's resolvers: the answer wakes the run.
      { ...resolutionRequestType, labelSelector: `${labels.managedBy}=${managedByValue}` },
    ],
    reconcile: (namespace, name) => reconcileRun(namespace, name, ctx),
    isConflict: (err) => err instanceof ConflictError,
  },
  {
    onStoppedLeading: () => {
      log.fatal("leadership lost; exiting so no work happens without the lease");
      process.exit(1);
    },
  },
  log,
);
metrics.observeQueue(engine.queue);
live.engine = engine;

// The ledger sweep: once the leader's caches have synced (so a restart rebuilds every pending
// revocation at once), then every --ledger-sweep-seconds. A run deleted while this replica leads
// is swept at once by the pass its deletion queues.
let sweeping: Promise<void> | undefined;
let lastSweep = 0;
const sweeper = setInterval(() => {
  if (sweeping || !engine.isLeader() || !engine.synced()) return;
  if (lastSweep > 0 && Date.now() - lastSweep < config.ledgerSweepSeconds * 1000) return;
  lastSweep = Date.now();
  sweeping = sweepLedger(ctx)
    .then((report) => {
      const acted = report.revoked + report.removed + report.failed > 0;
      log[acted ? "info" : "debug"](report, "ledger swept");
    })
    .catch((err: unknown) => log.error({ err }, "could not sweep the ledger; will try again"))
    .finally(() => (sweeping = undefined));
}, 250);
sweeper.unref();

const settings = watchSettings(kube, config, argv, process.env, log, (next, changed) => {
  if (changed.includes("logLevel")) log.level = next.logLevel;
  if (changed.includes("concurrency")) engine.queue.setConcurrency(next.concurrency);
  if (changed.includes("defaultTimeoutMs")) ctx.defaultTimeoutMs = next.defaultTimeoutMs;
  if (changed.includes("entrypointImage")) ctx.entrypointImage = next.entrypointImage;
});

// Key rotation and reloading other replicas' rotations; the issuer itself runs no timers.
const maintenance = setInterval(() => {
  if (engine.isLeader()) {
    identity.credentials
      .maintain?.()
      .catch((err: unknown) => log.warn({ err }, "credential maintenance failed"));
  }
  if (!identity.issuer) return;
  const issuer = identity.issuer;
  const work = engine.isLeader() ? issuer.rotateIfDue() : issuer.reload();
  work.catch((err: unknown) => log.warn({ err }, "signing key maintenance failed"));
}, 60_000);
maintenance.unref();

const addr = server.address();
log.info(
  {
    port: typeof addr === "object" ? addr?.port : addr,
    identity: config.identity,
    credentials: config.credentials,
  },
  "controller started",
);

let stopping = false;
const shutdown = (signal: string) => {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "shutting down");
  clearInterval(maintenance);
  clearInterval(sweeper);
  settings.stop();
  tektonDefaults.stop();
  identity.policies.stop();
  void engine.stop(config.shutdownGraceSeconds * 1000).finally(() => {
    server.close();
    log.info("stopped");
    process.exit(0);
  });
};
process.once("SIGTERM", () => shutdown("SIGTERM"));
process.once("SIGINT", () => shutdown("SIGINT"));
