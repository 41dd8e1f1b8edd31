// The controller process: configuration, logging, HTTP endpoints, leader-elected engine, and
// graceful shutdown on SIGTERM.
import http from "node:http";
import { KubeConfig } from "@kubernetes/client-node";
import { noopProvider } from "../tasks/scoped-step/credentials/noop.ts";
import { reconcileRun } from "../tasks/scoped-step/reconcile.ts";
import type { TaskContext } from "../tasks/scoped-step/ports.ts";
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { startEngine } from "./engine.ts";
import { kubeEvents } from "./events.ts";
import { kubeClusterPort } from "./kube.ts";
import { createLogger } from "./log.ts";

/** Test-only crash injection: the process kills itself when the named point is reached. */
function failpointFromEnv(
  name: string | undefined,
  logger: { warn: (o: object, m: string) => void },
): Pick<TaskContext, "failpoint"> {
  if (!name) return {};
  return {
    failpoint: (point) => {
      if (point !== name) return;
      logger.warn({ failpoint: point }, "failpoint reached; killing the process");
      process.kill(process.pid, "SIGKILL");
    },
  };
}

let config: Config;
try {
  config = loadConfig(process.argv.slice(2), process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`scoped-step: invalid configuration: ${err.message}`);
  process.exit(2);
}
const log = createLogger(config.logLevel);
const kc = new KubeConfig();
kc.loadFromDefault();

const ctx: TaskContext = {
  cluster: kubeClusterPort(kc),
  events: kubeEvents(kc, "scoped-step-controller", config.identity, log),
  credentials: noopProvider,
  log,
  now: () => new Date(),
  ...failpointFromEnv(process.env.SCOPED_STEP_FAILPOINT, log),
  defaultTimeoutMs: config.defaultTimeoutMs,
};

const engine = startEngine(
  kc,
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
    reconcile: (namespace, name) => reconcileRun(namespace, name, ctx),
    onStoppedLeading: () => {
      log.fatal("leadership lost; exiting so no work happens without the lease");
      process.exit(1);
    },
  },
  log,
);

const server = http.createServer((req, res) => {
  const path = (req.url ?? "/").split("?")[0];
  if (path === "/healthz") {
    res.writeHead(200, { "Content-Type": "text/plain" }).end("ok");
  } else if (path === "/readyz") {
    // A standby replica is ready: it knows it is not the leader. The leader is ready once synced.
    const ready = !engine.isLeader() || engine.synced();
    res
      .writeHead(ready ? 200 : 503, { "Content-Type": "text/plain" })
      .end(ready ? "ok" : "informers not synced");
  } else {
    res.writeHead(404).end();
  }
});
server.listen(config.httpPort, config.httpHost, () => {
  const addr = server.address();
  log.info(
    { port: typeof addr === "object" ? addr?.port : addr, identity: config.identity },
    "controller started",
  );
});

let stopping = false;
const shutdown = (signal: string) => {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, "shutting down");
  void engine.stop(config.shutdownGraceSeconds * 1000).finally(() => {
    server.close();
    log.info("stopped");
    process.exit(0);
  });
};
process.once("SIGTERM", () => shutdown("SIGTERM"));
process.once("SIGINT", () => shutdown("SIGINT"));
