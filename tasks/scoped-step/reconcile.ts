// The scoped-step run lifecycle: one level-triggered pass over a CustomRun. Each pass looks at
// the run, its pod and its credential as the API server has them, makes at most one step of
// progress, and writes status at most once. It can stop at any line and the next pass converges.
import type { V1Pod, V1Secret } from "@kubernetes/client-node";
import type { CredentialRecord, Grant, RunFacts } from "./credentials/types.ts";
import { parseGoDuration } from "./duration.ts";
import { isRunFailure, RunFailure } from "./failure.ts";
import { describeOutcome, intentEntry } from "./ledger.ts";
import { podOutcome, stepRunSeconds } from "./outcome.ts";
import { buildStepPod, credentialSecretName, labels, managedByValue, podName, boundedName } from "./pod.ts";
import type { Next, TaskContext } from "./ports.ts";
import {
  finalizer,
  isCancelled,
  isDone,
  sameStatus,
  setSucceeded,
  stepState,
  withStepState,
  type StepState,
} from "./status.ts";
import { stepFromDefinition, stepFromParams, stepSource, type ResolvedStep } from "./step.ts";
import { sweepRun } from "./sweep.ts";
import { applicationNotFound, resolveTrait } from "./trait.ts";
import { isScopedStepRun, type CustomRun, type CustomRunStatus, type RunResult } from "./types.ts";

const done: Next = {};
const again: Next = { requeueAfterMs: 0 };

export async function reconcileRun(namespace: string, name: string, ctx: TaskContext): Promise<Next> {
  let run = await ctx.cluster.getRun(namespace, name);
  if (!run) {
    // Deleted, possibly with its finalizer stripped first: the ledger still knows its credentials.
    await sweepRun(ctx, namespace, name);
    return done;
  }
  if (!isScopedStepRun(run)) return done;
  const pass = new Pass(run, ctx);

  if (run.metadata.deletionTimestamp) return pass.finalize();
  if (isDone(run.status)) return pass.afterDone();
  if (!(run.metadata.finalizers ?? []).includes(finalizer)) {
    run = await ctx.cluster.setFinalizer(run, finalizer, true);
    ctx.failpoint?.("after-finalizer");
    pass.run = run;
  }
  return pass.progress();
}

class Pass {
  run: CustomRun;
  readonly ctx: TaskContext;
  status: CustomRunStatus;
  state: StepState;

  constructor(run: CustomRun, ctx: TaskContext) {
    this.run = run;
    this.ctx = ctx;
    this.status = structuredClone(run.status ?? {});
    this.state = stepState(this.status);
  }

  get namespace(): string {
    return this.run.metadata.namespace ?? "";
  }
  get name(): string {
    return this.run.metadata.name ?? "";
  }
  get attempt(): number {
    return this.status.retriesStatus?.length ?? 0;
  }
  get log() {
    return this.ctx.log.child({ namespace: this.namespace, name: this.name, uid: this.run.metadata.uid });
  }

  private async write(): Promise<void> {
    const next = withStepState(
      { ...this.status, observedGeneration: this.run.metadata.generation },
      this.state,
    );
    if (sameStatus(this.run.status, next)) return;
    this.run = await this.ctx.cluster.writeStatus(this.run, next);
    this.status = structuredClone(this.run.status ?? {});
    this.state = stepState(this.status);
  }

  async finalize(): Promise<Next> {
    for (const pod of await this.ctx.cluster.listRunPods(this.namespace, this.name)) {
      await this.ctx.cluster.deletePod(this.namespace, pod.metadata?.name ?? "");
    }
    await this.revokeCredential();
    await sweepRun(this.ctx, this.namespace, this.name);
    for (const secret of await this.ctx.cluster.listRunSecrets(this.namespace, this.name)) {
      await this.ctx.cluster.deleteSecret(this.namespace, secret.metadata?.name ?? "");
    }
    if ((this.run.metadata.finalizers ?? []).includes(finalizer)) {
      await this.ctx.cluster.setFinalizer(this.run, finalizer, false);
    }
    return done;
  }

  /** A finished run: its credential must be revoked before the finalizer goes. */
  async afterDone(): Promise<Next> {
    if (this.state.credential && this.state.credential.state !== "revoked") {
      await this.revokeCredential();
      await this.write();
      return again;
    }
    if ((this.run.metadata.finalizers ?? []).includes(finalizer)) {
      await this.ctx.cluster.setFinalizer(this.run, finalizer, false);
    }
    return done;
  }

  async progress(): Promise<Next> {
    const now = this.ctx.now();
    if (!this.status.startTime) {
      this.status = setSucceeded(
        this.status,
        "Unknown",
        "Started",
        "resolving the step and its identity",
        now,
      );
      this.status.startTime = now.toISOString();
      await this.write();
      this.ctx.failpoint?.("after-start");
      this.ctx.events.emit(this.run, "Normal", "Started", "scoped-step run started");
      this.ctx.metrics?.runStarted();
      return done;
    }
    if (isCancelled(this.run)) {
      const message = this.run.spec.statusMessage || "CustomRun cancelled";
      return this.end("CustomRunCancelled", message, { cancelled: true });
    }
    let timeoutMs: number;
    try {
      timeoutMs =
        this.run.spec.timeout === undefined
          ? this.ctx.defaultTimeoutMs
          : parseGoDuration(this.run.spec.timeout);
    } catch (err) {
      return this.fail(err);
    }
    if (timeoutMs > 0) {
      const elapsed = now.getTime() - new Date(this.status.startTime).getTime();
      if (elapsed >= timeoutMs) {
        return this.endAttempt(
          "CustomRunTimedOut",
          `CustomRun ${this.name} timed out after ${this.run.spec.timeout ?? `${timeoutMs / 1000}s`}`,
        );
      }
    }
    const next = await this.step();
    if (timeoutMs > 0 && next.requeueAfterMs === undefined) {
      const remaining = timeoutMs - (now.getTime() - new Date(this.status.startTime).getTime());
      return { requeueAfterMs: Math.max(remaining, 0) + 50 };
    }
    return next;
  }

  private async step(): Promise<Next> {
    const podNameNow = podName(this.name, this.attempt);
    const pod = await this.ctx.cluster.getPod(this.namespace, podNameNow);
    if (!pod) {
      if (this.state.pod === podNameNow) {
        return this.endAttempt(
          "StepPodMissing",
          `step pod ${podNameNow} was deleted before the step finished`,
        );
      }
      return this.createPod(podNameNow);
    }
    const outcome = podOutcome(pod);
    switch (outcome.phase) {
      case "pending":
        this.state.pod = podNameNow;
        this.status = setSucceeded(this.status, "Unknown", "Started", outcome.message, this.ctx.now());
        await this.write();
        return done;
      case "running":
        this.state.pod = podNameNow;
        this.status = setSucceeded(
          this.status,
          "Unknown",
          "Running",
          `step pod ${podNameNow} is running`,
          this.ctx.now(),
        );
        await this.write();
        return done;
      case "failed":
        this.observeRunTime(pod);
        return this.endAttempt(outcome.reason, await this.redact(outcome.message));
      case "succeeded":
        this.observeRunTime(pod);
        return this.succeed(outcome.results);
    }
  }

  private observeRunTime(pod: V1Pod): void {
    const seconds = stepRunSeconds(pod);
    if (seconds !== undefined) this.ctx.metrics?.podRunSeconds(seconds);
  }

  private async resolve(): Promise<{ step: ResolvedStep; grant: Grant }> {
    const source = stepSource(this.run);
    const params = this.run.spec.params ?? [];
    let step: ResolvedStep;
    if (source.kind === "params") {
      step = stepFromParams(params);
    } else if (source.kind === "customSpec") {
      step = stepFromDefinition(source.spec, params, "customSpec");
    } else {
      const definition = await this.ctx.cluster.getScopedStep(this.namespace, source.name);
      if (!definition) {
        throw new RunFailure(
          "ScopedStepNotFound",
          `ScopedStep ${source.name} not found in namespace ${this.namespace}; create it there or fix customRef.name`,
        );
      }
      step = stepFromDefinition(definition.spec, params, `ScopedStep ${source.name}`);
    }
    const ref = {
      namespace: this.namespace,
      application: step.spec.application,
      component: step.spec.component,
      trait: step.spec.trait,
    };
    const app = await this.ctx.cluster.getApplication(this.namespace, ref.application);
    if (!app) throw applicationNotFound(ref);
    const trait = resolveTrait(app, ref);
    return { step, grant: await this.ctx.policy.decide(this.namespace, trait) };
  }

  private facts(step: ResolvedStep): RunFacts {
    const l = this.run.metadata.labels ?? {};
    return {
      namespace: this.namespace,
      customRun: this.name,
      uid: this.run.metadata.uid ?? "",
      attempt: this.attempt,
      ...(l["tekton.dev/pipelineRun"] ? { pipelineRun: l["tekton.dev/pipelineRun"] } : {}),
      ...(l["tekton.dev/pipelineTask"] ? { pipelineTask: l["tekton.dev/pipelineTask"] } : {}),
      serviceAccount: this.run.spec.serviceAccountName ?? "default",
      application: step.spec.application,
      component: step.spec.component,
    };
  }

  /**
   * Mints the attempt's credential and creates its Secret and the pod. The credential's intent is
   * written first, in its own pass, so a crash after minting leaves a record to revoke from.
   */
  private async createPod(name: string): Promise<Next> {
    let resolved: { step: ResolvedStep; grant: Grant };
    try {
      resolved = await this.resolve();
    } catch (err) {
      return this.fail(err);
    }
    const { step, grant } = resolved;
    const facts = this.facts(step);
    const provider = this.ctx.credentials;
    const secretName = credentialSecretName(this.name, this.attempt);
    let record = this.state.credential;

    if (!record || record.attempt !== this.attempt) {
      this.state.credential = {
        provider: provider.name,
        attempt: this.attempt,
        state: "minting",
        intent: provider.intent(facts, grant),
        results: {},
      };
      await this.write();
      this.ctx.failpoint?.("after-intent");
      return again;
    }

    let mount = undefined;
    if (record.state === "minting") {
      const existing = await this.ctx.cluster.getSecret(this.namespace, secretName);
      if (existing) {
        // Minted and stored by an earlier pass that stopped before recording it.
        record = adoptSecret(record, existing);
      } else {
        // The ledger entry first: from here on, whatever happens to the run, it can be revoked.
        const run = { namespace: this.namespace, name: this.name, uid: this.run.metadata.uid ?? "" };
        await this.ctx.ledger.recordIntent(
          intentEntry(record, run, provider.lifetimeSeconds(grant), this.ctx.now()),
        );
        let minted;
        const mintStarted = performance.now();
        try {
          minted = await provider.mint(facts, grant);
        } catch (err) {
          this.ctx.metrics?.credentialFailed(provider.name, isRunFailure(err) ? err.reason : "Transient");
          if (isRunFailure(err)) return this.fail(err);
          throw err;
        }
        this.ctx.metrics?.credentialMinted(provider.name, (performance.now() - mintStarted) / 1000);
        this.ctx.failpoint?.("after-mint");
        record = {
          ...record,
          state: "active",
          mintedAt: this.ctx.now().toISOString(),
          results: minted.results,
          ...(minted.expiresAt ? { expiresAt: minted.expiresAt } : {}),
        };
        await this.ctx.ledger.update(run.uid, record.attempt, {
          state: "minted",
          ...(minted.expiresAt ? { expiresAt: minted.expiresAt } : {}),
        });
        if (Object.keys(minted.secretData).length > 0) {
          await this.ctx.cluster.createSecret(
            this.credentialSecret(secretName, record, minted.secretData, minted.mount),
          );
        }
        this.ctx.failpoint?.("after-secret");
        mount = minted.mount;
        this.log.info(
          { audit: "mint", provider: provider.name, attempt: this.attempt, ...record.results },
          "credential minted",
        );
        if (Object.keys(record.results).length > 0) {
          this.ctx.events.emit(this.run, "Normal", "CredentialMinted", describeIdentity(record));
        }
      }
      this.state.credential = record;
    }
    mount ??= mountFromRecord(await this.ctx.cluster.getSecret(this.namespace, secretName));

    const pod = buildStepPod({
      run: this.run,
      step,
      attempt: this.attempt,
      ...(mount ? { credential: { secretName, mount } } : {}),
    });
    const created = await this.ctx.cluster.createPod(pod);
    this.ctx.failpoint?.("after-pod");
    this.state.pod = name;
    this.status = setSucceeded(this.status, "Unknown", "Started", `step pod ${name} created`, this.ctx.now());
    await this.write();
    if (created) this.ctx.events.emit(this.run, "Normal", "PodCreated", `created step pod ${name}`);
    return done;
  }

  private credentialSecret(
    name: string,
    record: CredentialRecord,
    data: Record<string, string>,
    mount: { secretEnv: Record<string, string>; env: Record<string, string>; files: Record<string, string> },
  ): V1Secret {
    return {
      apiVersion: "v1",
      kind: "Secret",
      type: "Opaque",
      metadata: {
        name,
        namespace: this.namespace,
        labels: {
          [labels.managedBy]: managedByValue,
          [labels.customRun]: boundedName(this.name, 63),
          [labels.attempt]: String(this.attempt),
        },
        annotations: {
          "scopedstep.dev/credential": JSON.stringify({
            results: record.results,
            expiresAt: record.expiresAt,
            mount,
          }),
        },
        ownerReferences: [
          {
            apiVersion: this.run.apiVersion,
            kind: this.run.kind,
            name: this.name,
            uid: this.run.metadata.uid ?? "",
            controller: true,
          },
        ],
      },
      stringData: data,
    };
  }

  /** Deletes the attempt's credential Secret and has the provider revoke the credential. */
  private async revokeCredential(): Promise<void> {
    const record = this.state.credential;
    if (!record || record.state === "revoked") return;
    const revokeStarted = performance.now();
    await this.ctx.cluster.deleteSecret(this.namespace, credentialSecretName(this.name, record.attempt));
    const outcome = await this.ctx.credentials.revoke(record);
    this.ctx.metrics?.credentialRevoked(record.provider, (performance.now() - revokeStarted) / 1000);
    const revokedAt = this.ctx.now().toISOString();
    await this.ctx.ledger.update(this.run.metadata.uid ?? "", record.attempt, {
      state: "revoked",
      revokedAt,
      revocation: describeOutcome(outcome),
    });
    this.ctx.failpoint?.("after-revoke");
    this.state.credential = { ...record, state: "revoked", revokedAt };
    this.log.info(
      { audit: "revoke", provider: record.provider, attempt: record.attempt, ...record.results, revokedAt },
      "credential revoked",
    );
    if (Object.keys(record.results).length > 0) {
      this.ctx.events.emit(this.run, "Normal", "CredentialRevoked", `revoked ${describeIdentity(record)}`);
    }
  }

  private identityResults(): RunResult[] {
    const record = this.state.credential;
    if (!record || Object.keys(record.results).length === 0) return [];
    const out = Object.entries(record.results).map(([name, value]) => ({ name, value }));
    if (record.revokedAt) out.push({ name: "revoked-at", value: record.revokedAt });
    return out;
  }

  private async succeed(results: RunResult[]): Promise<Next> {
    await this.revokeCredential();
    const now = this.ctx.now();
    this.status = setSucceeded(this.status, "True", "Succeeded", "the step completed", now);
    this.status.completionTime = now.toISOString();
    this.status.results = [...results, ...this.identityResults()];
    await this.write();
    this.ctx.failpoint?.("after-terminal");
    this.ctx.events.emit(this.run, "Normal", "Succeeded", "the step completed");
    this.ctx.metrics?.runFinished("succeeded", "Succeeded");
    return done;
  }

  private async fail(err: unknown): Promise<Next> {
    if (!isRunFailure(err)) throw err;
    return this.end(err.reason, err.message, {});
  }

  /** Ends the current attempt: retries when the run has retries left, otherwise fails the run. */
  private async endAttempt(reason: string, message: string): Promise<Next> {
    const retries = this.run.spec.retries ?? 0;
    if (this.attempt >= retries) return this.end(reason, message, {});
    // A pod that ended by itself stays for its logs, as Tekton keeps a failed attempt's pod.
    if (reason === "CustomRunTimedOut" || reason === "StepImagePullFailed") {
      await this.ctx.cluster.deletePod(this.namespace, podName(this.name, this.attempt));
    }
    await this.revokeCredential();
    const now = this.ctx.now();
    const snapshot: CustomRunStatus = {
      ...setSucceeded(this.status, "False", reason, message, now),
      completionTime: now.toISOString(),
      results: this.identityResults(),
    };
    delete snapshot.retriesStatus;
    const extra = { ...snapshot.extraFields };
    delete extra.scopedStep;
    snapshot.extraFields = { ...extra, scopedStep: this.state };
    this.status = {
      ...this.status,
      retriesStatus: [...(this.status.retriesStatus ?? []), snapshot],
      startTime: now.toISOString(),
      results: [],
    };
    this.state = {};
    this.status = setSucceeded(
      this.status,
      "Unknown",
      "Running",
      `retrying (attempt ${this.attempt + 1} of ${retries + 1}) after ${reason}: ${message}`,
      now,
    );
    await this.write();
    this.ctx.events.emit(this.run, "Warning", "Retrying", `attempt failed (${reason}); retrying`);
    return again;
  }

  private async end(reason: string, message: string, opts: { cancelled?: boolean }): Promise<Next> {
    const pod = podName(this.name, this.attempt);
    if (opts.cancelled || reason === "CustomRunTimedOut")
      await this.ctx.cluster.deletePod(this.namespace, pod);
    await this.revokeCredential();
    const now = this.ctx.now();
    this.status = setSucceeded(this.status, "False", reason, message, now);
    this.status.completionTime = now.toISOString();
    this.status.results = this.identityResults();
    await this.write();
    this.ctx.failpoint?.("after-terminal");
    const event = opts.cancelled ? "Cancelled" : reason === "CustomRunTimedOut" ? "TimedOut" : "Failed";
    this.ctx.events.emit(this.run, "Warning", event, `${reason}: ${message}`);
    this.ctx.metrics?.runFinished("failed", reason);
    return done;
  }

  /** Removes every value of the attempt's credential Secret from text that came from the step. */
  private async redact(text: string): Promise<string> {
    const secret = await this.ctx.cluster.getSecret(
      this.namespace,
      credentialSecretName(this.name, this.attempt),
    );
    let out = text;
    for (const value of Object.values(secret?.data ?? {})) {
      const plain = Buffer.from(value, "base64").toString("utf8");
      for (const piece of [plain, ...plain.split("\n")].filter((p) => p.length >= 8))
        out = out.replaceAll(piece, "[redacted]");
    }
    return out;
  }
}

function describeIdentity(record: CredentialRecord): string {
  const r = record.results;
  return [
    r["identity-subject"] && `subject ${r["identity-subject"]}`,
    r["aws-assumed-role-arn"] && `as ${r["aws-assumed-role-arn"]}`,
    r["credentials-expiration"] && `until ${r["credentials-expiration"]}`,
  ]
    .filter(Boolean)
    .join(" ");
}

function adoptSecret(record: CredentialRecord, secret: V1Secret): CredentialRecord {
  const raw = secret.metadata?.annotations?.["scopedstep.dev/credential"];
  const saved = raw ? (JSON.parse(raw) as { results?: Record<string, string>; expiresAt?: string }) : {};
  return {
    ...record,
    state: "active",
    results: saved.results ?? {},
    ...(saved.expiresAt ? { expiresAt: saved.expiresAt } : {}),
  };
}

function mountFromRecord(secret: V1Secret | undefined) {
  const raw = secret?.metadata?.annotations?.["scopedstep.dev/credential"];
  if (!raw) return undefined;
  const saved = JSON.parse(raw) as {
    mount?: { secretEnv: Record<string, string>; env: Record<string, string>; files: Record<string, string> };
  };
  return saved.mount;
}
