// An in-memory stand-in for the API server, for unit tests of the run lifecycle: it keeps runs,
// pods, Secrets, Applications and ScopedSteps, guards status and finalizer writes by
// resourceVersion as the API server does, and removes a deleted run once its finalizers are gone.
// The integration tests run the same lifecycle against the real API server.
import type { V1Pod, V1Secret } from "@kubernetes/client-node";
import { pino } from "pino";
import type {
  CredentialProvider,
  CredentialRecord,
  Grant,
  RevocationOutcome,
  RunFacts,
} from "../../tasks/scoped-step/credentials/types.ts";
import { RunFailure } from "../../tasks/scoped-step/failure.ts";
import {
  ConflictError,
  type ClusterPort,
  type Failpoint,
  type TaskContext,
} from "../../tasks/scoped-step/ports.ts";
import { ledgerEntryName, type LedgerEntry } from "../../tasks/scoped-step/ledger.ts";
import type { LedgerPort } from "../../tasks/scoped-step/ports.ts";
import { reconcileRun } from "../../tasks/scoped-step/reconcile.ts";
import type { ResolutionRequest } from "../../tasks/scoped-step/remote.ts";
import type { Application, CustomRun, CustomRunSpec } from "../../tasks/scoped-step/types.ts";

const key = (namespace: string | undefined, name: string | undefined) => `${namespace ?? ""}/${name ?? ""}`;
const clone = <T>(x: T): T => structuredClone(x);

/** What a label selector on the run's name finds, as the controller lists pods and Secrets. */
const ofRun = <T extends V1Pod | V1Secret>(objects: T[], namespace: string, runName: string): T[] =>
  objects
    .filter((o) => o.metadata?.namespace === namespace)
    .filter((o) => o.metadata?.labels?.["tekton.dev/customRun"] === runName)
    .map(clone);

export class FakeCluster implements ClusterPort {
  runs = new Map<string, CustomRun>();
  pods = new Map<string, V1Pod>();
  /** What podLogTail returns for a pod, by namespace/name. */
  logs = new Map<string, string>();
  secrets = new Map<string, V1Secret>();
  applications = new Map<string, Application>();
  scopedSteps = new Map<string, { spec?: unknown }>();
  resolutionRequests = new Map<string, ResolutionRequest>();
  private version = 0;
  /** Makes a status write fail as if another writer got there first, after this many succeed. */
  conflictAfterWrites?: number;

  private bump<T extends { metadata?: { resourceVersion?: string } }>(obj: T): T {
    obj.metadata = { ...obj.metadata, resourceVersion: String(++this.version) };
    return obj;
  }

  addRun(namespace: string, name: string, spec: CustomRunSpec): CustomRun {
    const run: CustomRun = {
      apiVersion: "tekton.dev/v1beta1",
      kind: "CustomRun",
      metadata: { namespace, name, uid: `uid-${name}`, generation: 1 },
      spec,
    };
    this.runs.set(key(namespace, name), this.bump(run));
    return clone(run);
  }

  /** The current run, as a test sees it. Throws when it is gone. */
  run(namespace: string, name: string): CustomRun {
    const run = this.runs.get(key(namespace, name));
    if (!run) throw new Error(`run ${name} is gone`);
    return clone(run);
  }

  editRun(namespace: string, name: string, edit: (run: CustomRun) => void): void {
    const run = this.runs.get(key(namespace, name));
    if (!run) throw new Error(`run ${name} is gone`);
    edit(run);
    this.bump(run);
    if (run.metadata.deletionTimestamp && (run.metadata.finalizers ?? []).length === 0)
      this.runs.delete(key(namespace, name));
  }

  private current(run: CustomRun): CustomRun {
    const stored = this.runs.get(key(run.metadata.namespace, run.metadata.name));
    if (!stored || stored.metadata.resourceVersion !== run.metadata.resourceVersion)
      throw new ConflictError(`customrun ${run.metadata.name ?? ""}`);
    return stored;
  }

  getRun(namespace: string, name: string) {
    const run = this.runs.get(key(namespace, name));
    return Promise.resolve(run ? clone(run) : undefined);
  }
  writeStatus(run: CustomRun, status: CustomRun["status"]) {
    if (this.conflictAfterWrites !== undefined && this.conflictAfterWrites-- === 0) {
      delete this.conflictAfterWrites;
      return Promise.reject(new ConflictError(`customrun ${run.metadata.name ?? ""}`));
    }
    const stored = this.current(run);
    stored.status = clone(status);
    return Promise.resolve(clone(this.bump(stored)));
  }
  setFinalizer(run: CustomRun, finalizer: string, present: boolean) {
    const stored = this.current(run);
    const rest = (stored.metadata.finalizers ?? []).filter((f) => f !== finalizer);
    stored.metadata.finalizers = present ? [...rest, finalizer] : rest;
    this.bump(stored);
    const out = clone(stored);
    if (stored.metadata.deletionTimestamp && rest.length === 0 && !present)
      this.runs.delete(key(run.metadata.namespace, run.metadata.name));
    return Promise.resolve(out);
  }
  getApplication(namespace: string, name: string) {
    return Promise.resolve(clone(this.applications.get(key(namespace, name))));
  }
  getScopedStep(namespace: string, name: string) {
    return Promise.resolve(clone(this.scopedSteps.get(key(namespace, name))));
  }
  getResolutionRequest(namespace: string, name: string) {
    return Promise.resolve(clone(this.resolutionRequests.get(key(namespace, name))));
  }
  createResolutionRequest(request: ResolutionRequest) {
    const k = key(request.metadata?.namespace, request.metadata?.name);
    if (this.resolutionRequests.has(k)) return Promise.resolve(false);
    const stored = this.bump(clone(request));
    if (stored.metadata) stored.metadata.creationTimestamp = new Date(Date.now());
    this.resolutionRequests.set(k, stored);
    return Promise.resolve(true);
  }
  getPod(namespace: string, name: string) {
    return Promise.resolve(clone(this.pods.get(key(namespace, name))));
  }
  podLogTail(namespace: string, name: string) {
    return Promise.resolve(
      this.pods.has(key(namespace, name)) ? this.logs.get(key(namespace, name)) : undefined,
    );
  }
  listRunPods(namespace: string, runName: string) {
    return Promise.resolve(ofRun([...this.pods.values()], namespace, runName));
  }
  createPod(pod: V1Pod) {
    const k = key(pod.metadata?.namespace, pod.metadata?.name);
    if (this.pods.has(k)) return Promise.resolve(false);
    this.pods.set(k, this.bump(clone(pod)));
    return Promise.resolve(true);
  }
  deletePod(namespace: string, name: string) {
    this.pods.delete(key(namespace, name));
    return Promise.resolve();
  }
  createSecret(secret: V1Secret) {
    const k = key(secret.metadata?.namespace, secret.metadata?.name);
    if (this.secrets.has(k)) return Promise.resolve(false);
    const data = Object.fromEntries(
      Object.entries(secret.stringData ?? {}).map(([n, v]) => [n, Buffer.from(v).toString("base64")]),
    );
    const stored = clone(secret);
    stored.data = { ...secret.data, ...data };
    delete stored.stringData;
    this.secrets.set(k, this.bump(stored));
    return Promise.resolve(true);
  }
  getSecret(namespace: string, name: string) {
    return Promise.resolve(clone(this.secrets.get(key(namespace, name))));
  }
  deleteSecret(namespace: string, name: string) {
    this.secrets.delete(key(namespace, name));
    return Promise.resolve();
  }

  /** Plays the kubelet: sets the step container's state on a pod. */
  setStepState(namespace: string, pod: string, state: Record<string, unknown>, phase = "Running"): void {
    const p = this.pods.get(key(namespace, pod));
    if (!p) throw new Error(`pod ${pod} does not exist`);
    p.status = {
      phase,
      containerStatuses: [{ name: "step", state, ready: true, restartCount: 0, image: "", imageID: "" }],
    };
    this.bump(p);
  }
}

/** The secret values the fake provider mints; tests search what was written for them. */
export const fakeSecretValues = {
  accessKeyId: "ASIAFAKEKEYID0000001",
  secretAccessKey: "fake/secret/key/with/enough/entropy/1234",
  sessionToken: "FwoFAKEsessionTOKENthatIsLongEnoughToFindAnywhere0123456789",
};

export interface FakeProvider extends CredentialProvider {
  minted: RunFacts[];
  revoked: CredentialRecord[];
  /** Thrown by the next mint, once. */
  failNextMint?: Error;
  revocation: RevocationOutcome;
}

export function fakeProvider(): FakeProvider {
  const provider: FakeProvider = {
    name: "fake",
    minted: [],
    revoked: [],
    revocation: { method: "deny-policy" },
    lifetimeSeconds: () => 900,
    intent: (facts: RunFacts, grant: Grant) => ({
      session: `${facts.customRun}-${facts.attempt}`,
      role: grant.trait.properties.aws?.roleArn ?? "",
    }),
    async mint(facts: RunFacts, _grant: Grant, recorded?: Promise<unknown>) {
      // As a real provider: nothing is issued before the ledger holds the intent.
      await recorded;
      const failure = provider.failNextMint;
      if (failure) {
        delete provider.failNextMint;
        throw failure;
      }
      provider.minted.push(facts);
      return {
        results: { "identity-subject": `system:scoped-step:${facts.namespace}:${facts.customRun}` },
        expiresAt: "2030-01-01T00:00:00.000Z",
        secretData: { ...fakeSecretValues },
        mount: {
          secretEnv: { AWS_ACCESS_KEY_ID: "accessKeyId", AWS_SECRET_ACCESS_KEY: "secretAccessKey" },
          env: {},
          files: {},
        },
      };
    },
    describe: (record: CredentialRecord) => `subject ${record.results["identity-subject"] ?? ""}`,
    revoke(record: CredentialRecord) {
      provider.revoked.push(record);
      return Promise.resolve(provider.revocation);
    },
  };
  return provider;
}

export interface FakeWorld {
  cluster: FakeCluster;
  provider: FakeProvider;
  ctx: TaskContext;
  events: { type: string; reason: string; message: string }[];
  clock: { now: Date };
  /** The grant's policy refuses with this, when set. */
  refuse?: RunFailure;
  /** One reconcile pass. */
  pass(name: string): Promise<{ requeueAfterMs?: number }>;
  /** Passes until `done` holds (or the run is gone), at most `max` of them. */
  settle(
    name: string,
    done?: (run: CustomRun | undefined) => boolean,
    max?: number,
  ): Promise<CustomRun | undefined>;
  crashAt?: Failpoint;
}

export class Crash extends Error {}

export const ns = "team-a";

export function fakeWorld(): FakeWorld {
  const cluster = new FakeCluster();
  const provider = fakeProvider();
  const events: FakeWorld["events"] = [];
  const clock = { now: new Date("2026-01-01T00:00:00Z") };
  const world: FakeWorld = {
    cluster,
    provider,
    events,
    clock,
    ctx: {
      cluster,
      credentials: provider,
      ledger: new FakeLedger(),
      events: { emit: (_run, type, reason, message) => events.push({ type, reason, message }) },
      policy: {
        decide: (_namespace, trait) => {
          if (world.refuse) return Promise.reject(world.refuse);
          return Promise.resolve({ trait, policy: "allow", revocation: "deny-policy" });
        },
      },
      log: pino({ level: "silent" }),
      now: () => new Date(clock.now),
      failpoint: (point) => {
        if (point !== world.crashAt) return;
        delete world.crashAt;
        throw new Crash(point);
      },
      defaultTimeoutMs: 3_600_000,
    },
    pass: (name) => reconcileRun(ns, name, world.ctx),
    async settle(name, done = () => false, max = 30) {
      for (let i = 0; i < max; i++) {
        const run = await cluster.getRun(ns, name);
        if (!run || done(run)) return run;
        await world.pass(name);
      }
      throw new Error(`run ${name} did not settle in ${max} passes`);
    },
  };
  cluster.applications.set(key(ns, "payments"), {
    apiVersion: "core.oam.dev/v1beta1",
    kind: "Application",
    metadata: { name: "payments", namespace: ns },
    spec: {
      components: [
        {
          name: "api",
          traits: [
            {
              type: "scoped-identity",
              properties: { aws: { roleArn: "arn:aws:iam::111122223333:role/payments-deployer" } },
            },
          ],
        },
      ],
    },
  });
  return world;
}

export const stepParams = (script = "echo done > $(results.out.path)") => [
  { name: "image", value: "alpine" },
  { name: "script", value: script },
  { name: "results", value: ["out"] },
  { name: "application", value: "payments" },
  { name: "component", value: "api" },
];

/** The credential ledger in memory, with the port's semantics (see controller/ledger.ts). */
export class FakeLedger implements LedgerPort {
  readonly entries = new Map<string, LedgerEntry>();

  recordIntent(entry: LedgerEntry): Promise<void> {
    const name = ledgerEntryName(entry.run.uid, entry.attempt);
    const current = this.entries.get(name);
    if (!current) this.entries.set(name, structuredClone(entry));
    else if (entry.notAfter > current.notAfter) current.notAfter = entry.notAfter;
    return Promise.resolve();
  }

  update(uid: string, attempt: number, change: Partial<LedgerEntry>): Promise<void> {
    const current = this.entries.get(ledgerEntryName(uid, attempt));
    if (current) Object.assign(current, change);
    return Promise.resolve();
  }

  get(uid: string, attempt: number): Promise<LedgerEntry | undefined> {
    return Promise.resolve(structuredClone(this.entries.get(ledgerEntryName(uid, attempt))));
  }

  list(run?: { namespace: string; name: string }): Promise<LedgerEntry[]> {
    const all = [...this.entries.values()];
    return Promise.resolve(
      run ? all.filter((e) => e.run.namespace === run.namespace && e.run.name === run.name) : all,
    );
  }

  remove(entry: LedgerEntry): Promise<void> {
    this.entries.delete(ledgerEntryName(entry.run.uid, entry.attempt));
    return Promise.resolve();
  }
}
