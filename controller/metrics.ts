// Prometheus metrics, named by Prometheus conventions: scoped_step_ prefix, base units, _total
// for counters, and labels with bounded values only (never a run's name or namespace).
import { collectProcessMetrics, Counter, Gauge, Histogram, Registry } from "./prom.ts";
import type { CredentialGauges } from "../tasks/scoped-step/gauges.ts";
import type { RunMetricsPort } from "../tasks/scoped-step/ports.ts";
import type { WorkQueue } from "./queue.ts";

const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const podBuckets = [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200];

export interface MetricsSources {
  /** Read at each scrape; all zero on a replica that does not lead. */
  credentials: () => CredentialGauges;
  isLeader: () => boolean;
  keyActivatedAt?: () => number;
  /**
   * Every value the fallback counter's `cause` label can take. Each series is exported at 0 from
   * the start, so the first fallback after a start is an increase that `increase()` sees.
   */
  revocationFallbackCauses?: readonly string[];
  /** Objects in the informer caches, by resource (plural); read at each scrape. */
  cached?: () => Record<string, number>;
}

export class Metrics implements RunMetricsPort {
  readonly registry = new Registry();
  private readonly started = new Counter({
    name: "scoped_step_runs_started_total",
    help: "Runs started.",
    registers: [this.registry],
  });
  private readonly finished = new Counter({
    name: "scoped_step_runs_finished_total",
    help: "Runs finished, by outcome and condition reason.",
    labelNames: ["outcome", "reason"],
    registers: [this.registry],
  });
  private readonly reconcile = new Histogram({
    name: "scoped_step_reconcile_duration_seconds",
    help: "Duration of reconcile passes, by result (ok, error, conflict).",
    labelNames: ["result"],
    buckets: latencyBuckets,
    registers: [this.registry],
  });
  private readonly reconcileErrors = new Counter({
    name: "scoped_step_reconcile_errors_total",
    help: "Reconcile passes that failed and were requeued with backoff.",
    registers: [this.registry],
  });
  private readonly queueRetries = new Counter({
    name: "scoped_step_workqueue_retries_total",
    help: "Keys requeued with backoff after a failed pass.",
    registers: [this.registry],
  });
  private readonly queueWait = new Histogram({
    name: "scoped_step_workqueue_wait_seconds",
    help: "Time a key waited in the queue before a worker took it.",
    buckets: latencyBuckets,
    registers: [this.registry],
  });
  private readonly minted = new Counter({
    name: "scoped_step_credential_mints_total",
    help: "Credentials minted, by provider.",
    labelNames: ["provider"],
    registers: [this.registry],
  });
  private readonly revoked = new Counter({
    name: "scoped_step_credential_revocations_total",
    help: "Credentials revoked, by provider.",
    labelNames: ["provider"],
    registers: [this.registry],
  });
  private readonly revocationFallbacks = new Counter({
    name: "scoped_step_revocation_fallbacks_total",
    help: "Revocations that could not be enforced, so the session stays usable until it expires, by cause (budget-exhausted, access-denied, role-not-found, no-revoker).",
    labelNames: ["cause"],
    registers: [this.registry],
  });
  private readonly failures = new Counter({
    name: "scoped_step_credential_mint_failures_total",
    help: "Mints that failed, by provider and failure reason.",
    labelNames: ["provider", "reason"],
    registers: [this.registry],
  });
  private readonly mintDuration = new Histogram({
    name: "scoped_step_credential_mint_duration_seconds",
    help: "Time to mint one credential (token signing and the STS exchange).",
    labelNames: ["provider"],
    buckets: latencyBuckets,
    registers: [this.registry],
  });
  private readonly revokeDuration = new Histogram({
    name: "scoped_step_credential_revocation_duration_seconds",
    help: "Time to revoke one credential (Secret deletion and any deny policy).",
    labelNames: ["provider"],
    buckets: latencyBuckets,
    registers: [this.registry],
  });
  private readonly sts = new Histogram({
    name: "scoped_step_sts_request_duration_seconds",
    help: "STS AssumeRoleWithWebIdentity calls, by outcome (ok or the AWS error code).",
    labelNames: ["outcome"],
    buckets: latencyBuckets,
    registers: [this.registry],
  });
  private readonly idp = new Histogram({
    name: "scoped_step_idp_request_duration_seconds",
    help: "Token requests to the organisation's identity provider (external issuer mode), by outcome (ok or the failure reason).",
    labelNames: ["outcome"],
    buckets: latencyBuckets,
    registers: [this.registry],
  });
  private readonly podDuration = new Histogram({
    name: "scoped_step_pod_duration_seconds",
    help: "Run time of step containers, from start to exit.",
    buckets: podBuckets,
    registers: [this.registry],
  });

  private readonly kubeRequests = new Counter({
    name: "scoped_step_kube_requests_total",
    help: "Requests to the Kubernetes API server, by verb (LIST is a GET of a collection, WATCH opens a watch) and resource.",
    labelNames: ["verb", "resource"],
    registers: [this.registry],
  });

  private queue?: WorkQueue;

  constructor(sources: MetricsSources) {
    const queue = () => this.queue;
    for (const cause of sources.revocationFallbackCauses ?? []) this.revocationFallbacks.inc({ cause }, 0);
    collectProcessMetrics(this.registry);
    new Gauge({
      name: "scoped_step_cached_objects",
      help: "Objects held in the controller's informer caches, by resource: runs in progress and what they own.",
      labelNames: ["resource"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [resource, n] of Object.entries(sources.cached?.() ?? {})) this.set({ resource }, n);
      },
    });
    const registers = [this.registry];
    new Gauge({
      name: "scoped_step_workqueue_depth",
      help: "Keys waiting in the work queue.",
      registers,
      collect() {
        this.set(queue()?.stats().depth ?? 0);
      },
    });
    new Gauge({
      name: "scoped_step_workqueue_in_flight",
      help: "Keys being reconciled now.",
      registers,
      collect() {
        this.set(queue()?.stats().inFlight ?? 0);
      },
    });
    new Gauge({
      name: "scoped_step_leader",
      help: "1 when this replica holds the leader lease.",
      registers,
      collect() {
        this.set(sources.isLeader() ? 1 : 0);
      },
    });
    new Gauge({
      name: "scoped_step_signing_key_activated_timestamp_seconds",
      help: "When the active token signing key began signing, in Unix seconds; 0 when this replica has no issuer.",
      registers,
      collect() {
        this.set(sources.keyActivatedAt?.() ?? 0);
      },
    });
    // One computation per scrape: the first gauge collected sets all three (the registry collects
    // in registration order).
    const pending = new Gauge({
      name: "scoped_step_credentials_pending_revocation",
      help: "Credentials not yet revoked whose run is finished, cancelled or being deleted; should be 0 within seconds.",
      registers: [],
    });
    const oldest = new Gauge({
      name: "scoped_step_oldest_unrevoked_credential_timestamp_seconds",
      help: "When the oldest credential not yet revoked was minted, in Unix seconds; 0 when there is none.",
      registers: [],
    });
    new Gauge({
      name: "scoped_step_active_credentials",
      help: "Credentials minted (or being minted) and not yet revoked.",
      registers,
      collect() {
        const figures = sources.credentials();
        this.set(figures.active);
        pending.set(figures.pendingRevocation);
        oldest.set(figures.oldestUnrevokedSince);
      },
    });
    this.registry.registerMetric(pending);
    this.registry.registerMetric(oldest);
  }

  /** Subscribes to the work queue's events, and reads its depth at each scrape. */
  observeQueue(queue: WorkQueue): void {
    this.queue = queue;
    queue.on("taken", (_key, ms) => this.queueWait.observe(ms / 1000));
    queue.on("retry", () => this.queueRetries.inc());
    queue.on("processed", (_key, seconds, result) => {
      this.reconcile.observe({ result }, seconds);
      if (result === "error") this.reconcileErrors.inc();
    });
  }

  kubeRequest(verb: string, resource: string): void {
    this.kubeRequests.inc({ verb, resource });
  }

  stsCall(seconds: number, outcome: string): void {
    this.sts.observe({ outcome }, seconds);
  }

  idpCall(seconds: number, outcome: string): void {
    this.idp.observe({ outcome }, seconds);
  }

  runStarted(): void {
    this.started.inc();
  }
  runFinished(outcome: "succeeded" | "failed", reason: string): void {
    this.finished.inc({ outcome, reason });
  }
  podRunSeconds(seconds: number): void {
    this.podDuration.observe(seconds);
  }
  credentialMinted(provider: string, seconds: number): void {
    this.minted.inc({ provider });
    this.mintDuration.observe({ provider }, seconds);
  }
  credentialRevoked(provider: string, seconds: number): void {
    this.revoked.inc({ provider });
    this.revokeDuration.observe({ provider }, seconds);
  }
  revocationFellBack(cause: string): void {
    this.revocationFallbacks.inc({ cause });
  }
  credentialFailed(provider: string, reason: string): void {
    this.failures.inc({ provider, reason });
  }
}
