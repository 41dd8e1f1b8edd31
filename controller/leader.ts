// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: the holder renews the
// lease every retry period; others take it over when they have not seen it renewed for a full
// lease duration (measured on their own clock, so clock skew between replicas does not matter).
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { statusCode } from "./kube.ts";

export interface LeaderOptions {
  kc: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationSeconds: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  log: Logger;
  onStartedLeading: () => void;
  /** Called once when a held lease could not be renewed in time; work must stop at once. */
  onStoppedLeading: () => void;
}

export class LeaderElector {
  isLeader = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private observed?: { record: string; at: number };
  private lastRenew = 0;
  private readonly api: CoordinationV1Api;
  private readonly opts: LeaderOptions;

  constructor(opts: LeaderOptions) {
    this.opts = opts;
    this.api = opts.kc.makeApiClient(CoordinationV1Api);
  }

  start(): void {
    void this.tick();
  }

  /** Stops electing; when leading, gives the lease up so another replica can take over at once. */
  async release(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.isLeader) return;
    this.isLeader = false;
    try {
      const lease = await this.api.readNamespacedLease({
        name: this.opts.name,
        namespace: this.opts.namespace,
      });
      if (lease.spec?.holderIdentity !== this.opts.identity) return;
      lease.spec.holderIdentity = undefined;
      lease.spec.leaseDurationSeconds = 1;
      lease.spec.renewTime = new V1MicroTime(Date.now());
      await this.api.replaceNamespacedLease({
        name: this.opts.name,
        namespace: this.opts.namespace,
        body: lease,
      });
    } catch (err) {
      this.opts.log.warn({ err }, "could not release the leader lease");
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.opts.retryPeriodMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      const acquired = await this.tryAcquireOrRenew();
      if (acquired) {
        this.lastRenew = Date.now();
        if (!this.isLeader) {
          this.isLeader = true;
          this.opts.log.info({ lease: this.opts.name, identity: this.opts.identity }, "became leader");
          this.opts.onStartedLeading();
        }
      }
    } catch (err) {
      this.opts.log.warn({ err }, "leader lease update failed");
    }
    if (this.isLeader && Date.now() - this.lastRenew > this.opts.renewDeadlineMs) {
      this.isLeader = false;
      this.stopped = true;
      this.opts.log.error({ lease: this.opts.name }, "lost the leader lease");
      this.opts.onStoppedLeading();
      return;
    }
    this.schedule();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = new V1MicroTime(Date.now());
    const { namespace, name, identity, leaseDurationSeconds } = this.opts;
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
      try {
        await this.api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds,
              acquireTime: now,
              renewTime: now,
              leaseTransitions: 0,
            },
          },
        });
        return true;
      } catch (createErr) {
        if (statusCode(createErr) === 409) return false;
        throw createErr;
      }
    }
    const spec = lease.spec ?? {};
    const record = JSON.stringify([spec.holderIdentity, spec.renewTime, spec.leaseDurationSeconds]);
    if (this.observed?.record !== record) this.observed = { record, at: Date.now() };
    const holder = spec.holderIdentity;
    const expired =
      Date.now() - this.observed.at > (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
    if (holder && holder !== identity && !expired) return false;
    const takingOver = holder !== identity;
    spec.holderIdentity = identity;
    spec.leaseDurationSeconds = leaseDurationSeconds;
    spec.renewTime = now;
    if (takingOver) {
      spec.acquireTime = now;
      spec.leaseTransitions = (spec.leaseTransitions ?? 0) + 1;
    }
    lease.spec = spec;
    try {
      await this.api.replaceNamespacedLease({ name, namespace, body: lease });
      return true;
    } catch (err) {
      if (statusCode(err) === 409) return false;
      throw err;
    }
  }
}
