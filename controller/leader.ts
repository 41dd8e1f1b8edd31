// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: the holder renews the
// lease every retry period; others take it over when they have not seen it renewed for a full
// lease duration (measured on their own clock, so clock skew between replicas does not matter).
import type { V1Lease } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { resourcePath, statusCode, type Kube } from "./kube-client.ts";

const leases = { apiVersion: "coordination.k8s.io/v1", plural: "leases" };

/** A MicroTime as the API server writes it: RFC 3339 with microseconds. */
const microTime = (ms: number) => new Date(ms).toISOString().replace(/Z$/, "000Z");

export interface LeaderOptions {
  kube: Kube;
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
  private readonly opts: LeaderOptions;
  private readonly path: string;

  constructor(opts: LeaderOptions) {
    this.opts = opts;
    this.path = resourcePath(leases, opts.namespace, opts.name);
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
      const lease = await this.opts.kube.request<LeaseObject>("GET", this.path);
      if (!lease.spec || lease.spec.holderIdentity !== this.opts.identity) return;
      delete lease.spec.holderIdentity;
      lease.spec.leaseDurationSeconds = 1;
      lease.spec.renewTime = microTime(Date.now());
      await this.opts.kube.request("PUT", this.path, { body: lease });
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
    const now = microTime(Date.now());
    const { kube, namespace, name, identity, leaseDurationSeconds } = this.opts;
    let lease: LeaseObject;
    try {
      lease = await kube.request<LeaseObject>("GET", this.path);
    } catch (err) {
      if (statusCode(err) !== 404) throw err;
      try {
        await kube.request("POST", resourcePath(leases, namespace), {
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
      await kube.request("PUT", this.path, { body: lease });
      return true;
    } catch (err) {
      if (statusCode(err) === 409) return false;
      throw err;
    }
  }
}

/** A Lease as JSON: its times are strings on the wire. */
interface LeaseObject {
  metadata?: V1Lease["metadata"];
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}
