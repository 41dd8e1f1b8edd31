// The scoped-step run lifecycle: one level-triggered pass over a CustomRun. A pass observes the
// run, its current pod and credential Secret, asks `decide` (phase.ts) for one action, carries it
// out, writes status at most once, and reports what changed (transitions.ts). It can stop at any
// line and the next pass converges. A new attempt's intent pass goes straight on to the mint pass
// with the run it just wrote and the step it just resolved, so the step pod is one reconcile away.
import {
  adoptStored,
  identityResults,
  mintCredential,
  nothingIssued,
  recordIntent,
  revokeCredential,
  secretDigest,
} from "./credential.ts";
import { deletesPod, finishRun, retryAttempt, retryable, type Draft, type Ending } from "./ending.ts";
import { isRunFailure } from "./failure.ts";
import { ensureFinalizer, releaseFinalizer } from "./finalizer.ts";
import { sweepRun } from "./sweep.ts";
import { needsLog, podOutcome, stepRunSeconds } from "./outcome.ts";
import {
  attemptOf,
  attemptRecord,
  decide,
  podNotOwned,
  timeLeftMs,
  type Action,
  type Observed,
} from "./phase.ts";
import { buildStepPod, credentialSecretName, ownedBy, podName } from "./pod.ts";
import type { Failpoint, Next, TaskContext } from "./ports.ts";
import { resolveRun, runFacts, type Pending, type Resolved } from "./resolve.ts";
import { isDone, sameStatus, setSucceeded, stepState, withStepState } from "./status.ts";
import { reportTransition } from "./transitions.ts";
import { isScopedStepRun, type CustomRun, type CustomRunStatus } from "./types.ts";
import type { V1Pod, V1Secret } from "@kubernetes/client-node";

const done: Next = {};
const again: Next = { requeueAfterMs: 0 };

/** What an action leaves behind: the status to write (if any), then where to stop for crash tests. */
interface Outcome {
  draft?: Draft;
  next: Next;
  failpoint?: Failpoint;
  /** The intent was recorded for this step and grant: once it is written, the mint pass follows. */
  resolved?: Resolved;
}

/** Where a pass leaves the run: when to come back, or the pass to go straight on to. */
interface Passed {
  next: Next;
  then?: { run: CustomRun; resolved: Resolved };
}

export async function reconcileRun(namespace: string, name: string, ctx: TaskContext): Promise<Next> {
  const run = await ctx.cluster.getRun(namespace, name);
  if (!run) {
    // Deleted, possibly with its finalizer stripped first: the ledger still knows its credentials.
    await sweepRun(ctx, namespace, name);
    return done;
  }
  if (!isScopedStepRun(run)) return done;
  const observed = await observe(run, ctx);
  const action = decide(observed);
  const secret = action.kind === "record-intent" ? lookAhead(run, ctx) : undefined;
  const first = await execute(action, observed, ctx);
  if (!first.then) return first.next;
  // The intent is in status: mint now, with what was resolved a moment ago. A later pass (after a
  // crash, say) resolves again and refuses a grant that changed in between.
  const minting = { ...(await observe(first.then.run, ctx, secret)), resolved: first.then.resolved };
  return (await execute(decide(minting), minting, ctx)).next;
}

/** A credential Secret read ahead of the pass that needs it; `read` fails as undefined. */
interface SecretAhead {
  name: string;
  read: Promise<{ secret: V1Secret | undefined } | undefined>;
}

/**
 * The new attempt's credential Secret, read while its intent is recorded rather than after. Nothing
 * of this attempt's can be at that name yet, so whatever is there now is foreign, as it would be a
 * moment later; one planted in between is refused when the mint's create finds the name taken.
 */
function lookAhead(run: CustomRun, ctx: TaskContext): SecretAhead {
  const name = credentialSecretName(run.metadata.name ?? "", attemptOf(run));
  const read = ctx.cluster.getSecret(run.metadata.namespace ?? "", name).then(
    (secret) => ({ secret }),
    () => undefined,
  );
  return { name, read };
}

/** Reads the attempt's pod and, only when it can matter, its credential Secret. */
export async function observe(run: CustomRun, ctx: TaskContext, ahead?: SecretAhead): Promise<Observed> {
  const observed: Observed = { run, now: ctx.now(), defaultTimeoutMs: ctx.defaultTimeoutMs };
  const record = attemptRecord(run);
  if (run.metadata.deletionTimestamp || isDone(run.status) || !record) return observed;
  const namespace = run.metadata.namespace ?? "";
  const name = run.metadata.name ?? "";
  const pod = await ctx.cluster.getPod(namespace, podName(name, record.attempt));
  if (pod && ownedBy(pod, run)) observed.pod = pod;
  else if (pod) observed.foreignPod = pod.metadata?.name ?? "";
  if (observed.pod && needsLog(observed.pod)) observed.log = await stepLog(ctx, namespace, observed.pod);
  const needsSecret =
    record.state === "minting" || !observed.pod || podOutcome(observed.pod).phase === "failed";
  if (record.state !== "revoked" && needsSecret) {
    const secretName = credentialSecretName(name, record.attempt);
    const early = ahead?.name === secretName ? await ahead.read : undefined;
    const secret = early ? early.secret : await ctx.cluster.getSecret(namespace, secretName);
    if (secret && ownedBy(secret, run) && (await vouchedFor(secret, run, record.attempt, ctx)))
      observed.secret = secret;
    else if (secret) observed.foreignSecret = secret.metadata?.name ?? "";
  }
  return observed;
}

/** The failed step's last lines; a log that cannot be read leaves the message without them. */
async function stepLog(ctx: TaskContext, namespace: string, pod: V1Pod): Promise<string | undefined> {
  try {
    return await ctx.cluster.podLogTail(namespace, pod.metadata?.name ?? "", "step", 20);
  } catch (err) {
    ctx.log.warn({ pod: pod.metadata?.name, err: String(err) }, "cannot read the failed step's log");
    return undefined;
  }
}

/**
 * Whether the ledger holds this Secret's digest. An owner reference proves nothing: a namespace
 * user can copy the run's UID into a Secret of their own before the controller writes the real one.
 */
async function vouchedFor(secret: V1Secret, run: CustomRun, attempt: number, ctx: TaskContext) {
  const entry = await ctx.ledger.get(run.metadata.uid ?? "", attempt);
  if (!entry) return false;
  // Minted by a version that recorded no digest: the owner reference is all there is to go on.
  if (entry.secretDigest === undefined) return entry.state === "minted";
  return entry.secretDigest === secretDigest(secret);
}

async function execute(action: Action, o: Observed, ctx: TaskContext): Promise<Passed> {
  switch (action.kind) {
    case "finalize":
      await finalize(o.run, ctx);
      return { next: done };
    case "release":
      await releaseFinalizer(ctx.cluster, o.run);
      return { next: done };
    case "revoke": {
      const draft = draftOf(o.run);
      if (draft.state.credential)
        draft.state.credential = await revokeCredential(ctx, o.run, draft.state.credential);
      return commit(ctx, o, o.run, { draft, next: again });
    }
  }
  // A new attempt's step, trait and grant are read while the finalizer goes on; what they say is
  // acted on only once it is there.
  const resolution = action.kind === "record-intent" ? resolving(o, ctx) : undefined;
  resolution?.catch(() => undefined);
  // Everything below creates things the finalizer must be there to clean up.
  const { run, added } = await ensureFinalizer(ctx.cluster, o.run);
  if (added) ctx.failpoint?.("after-finalizer");
  const outcome = await progress(action, { ...o, run }, ctx, resolution);
  return commit(ctx, o, run, outcome);
}

async function progress(
  action: Action,
  o: Observed,
  ctx: TaskContext,
  resolution?: ReturnType<typeof resolving>,
): Promise<Outcome> {
  const draft = draftOf(o.run);
  switch (action.kind) {
    case "record-intent": {
      const resolved = await (resolution ?? resolving(o, ctx));
      if ("refused" in resolved) return end(resolved.refused, o, draft, ctx);
      if ("pending" in resolved) return awaitResolver(resolved, o, draft);
      const facts = runFacts(o.run, attemptOf(o.run), resolved.step);
      draft.state.credential = recordIntent(ctx.credentials, facts, resolved.grant);
      if (!draft.status.startTime) {
        const now = o.now;
        draft.status = setSucceeded(
          draft.status,
          "Unknown",
          "Started",
          "resolving the step and its identity",
          now,
        );
        draft.status.startTime = now.toISOString();
      }
      return { draft, next: again, failpoint: "after-intent", resolved };
    }
    case "start-pod":
      return startPod(action.credential, o, draft, ctx);
    case "adopt":
      if (draft.state.credential) draft.state.credential = adoptStored(draft.state.credential, action.saved);
      return { draft, next: again };
    case "observe-pod":
      draft.state.pod = action.pod;
      draft.status = setSucceeded(draft.status, "Unknown", action.reason, action.message, ctx.now());
      return { draft, next: done };
    case "record-failure":
      draft.state.failure = action.failure;
      draft.status = setSucceeded(
        draft.status,
        "Unknown",
        "Running",
        "the step failed; ending the attempt",
        o.now,
      );
      return { draft, next: again, failpoint: "after-failure" };
    case "end":
      return end(action.ending, o, draft, ctx);
    default:
      throw new Error(`action ${action.kind} is not a step of progress`);
  }
}

/** Creates the attempt's pod, with its credential minted now, adopted, or as recorded. */
async function startPod(
  credential: Extract<Action, { kind: "start-pod" }>["credential"],
  o: Observed,
  draft: Draft,
  ctx: TaskContext,
): Promise<Outcome> {
  const resolved = await resolving(o, ctx);
  if ("refused" in resolved) return end(resolved.refused, o, draft, ctx);
  if ("pending" in resolved) return awaitResolver(resolved, o, draft);
  const attempt = attemptOf(o.run);
  const record = draft.state.credential;
  let mount = typeof credential === "object" && "mount" in credential ? credential.mount : undefined;
  if (credential === "mint" && record) {
    try {
      const minted = await mintCredential(
        ctx,
        o.run,
        record,
        runFacts(o.run, attempt, resolved.step),
        resolved.grant,
      );
      draft.state.credential = minted.record;
      mount = minted.mount;
    } catch (err) {
      if (!isRunFailure(err)) throw err;
      if (err.nothingIssued) draft.state.credential = nothingIssued(record, ctx.now());
      // A Secret that took the credential's name first is the tenant's: revocation leaves it.
      const seen = err.foreignSecret ? { ...o, foreignSecret: err.foreignSecret } : o;
      return end({ kind: "refused", reason: err.reason, message: err.message }, seen, draft, ctx);
    }
  } else if (typeof credential === "object" && "adopt" in credential && record) {
    draft.state.credential = adoptStored(record, credential.adopt);
    mount = credential.adopt.mount;
  }
  const secretName = credentialSecretName(o.run.metadata.name ?? "", attempt);
  const pod = buildStepPod({
    run: o.run,
    step: resolved.step,
    attempt,
    ...(mount ? { credential: { secretName, mount } } : {}),
    ...(ctx.entrypointImage ? { entrypointImage: ctx.entrypointImage } : {}),
  });
  const name = pod.metadata?.name ?? "";
  if (!(await ctx.cluster.createPod(pod))) {
    // The name is taken by a pod the cache of step pods does not show: look at whose it is.
    const existing = await ctx.cluster.getPod(o.run.metadata.namespace ?? "", name, { live: true });
    if (existing && !ownedBy(existing, o.run)) return end(podNotOwned(o.run, name), o, draft, ctx);
  }
  ctx.failpoint?.("after-pod");
  draft.state.pod = name;
  // Worded as the pod's first sighting will be (outcome.ts), so that sighting writes nothing.
  const message = `step pod ${name} is not running yet (Pending)`;
  draft.status = setSucceeded(draft.status, "Unknown", "Started", message, ctx.now());
  return { draft, next: done };
}

/**
 * A resolver is still working on the step. The request's change wakes the run (the engine
 * watches requests the run owns); the requeue is for the resolution's deadline and the run's own.
 */
function awaitResolver(pending: Pending, o: Observed, draft: Draft): Outcome {
  if (!draft.status.startTime) draft.status.startTime = o.now.toISOString();
  draft.status = setSucceeded(draft.status, "Unknown", "Started", pending.pending, o.now);
  const runLeft = timeLeftMs({ ...o, run: { ...o.run, status: draft.status } }) ?? Infinity;
  return { draft, next: { requeueAfterMs: Math.max(Math.min(pending.retryAfterMs, runLeft), 0) + 50 } };
}

/** Ends the attempt: revokes its credential, then retries or finishes the run. */
async function end(ending: Ending, o: Observed, draft: Draft, ctx: TaskContext): Promise<Outcome> {
  const seconds = o.pod ? stepRunSeconds(o.pod) : undefined;
  if (seconds !== undefined) ctx.metrics?.podRunSeconds(seconds);
  const attempt = attemptOf(o.run);
  const retries = o.run.spec.retries ?? 0;
  const retrying = retryable(ending) && attempt < retries;
  if (deletesPod(ending, retrying))
    await ctx.cluster.deletePod(o.run.metadata.namespace ?? "", podName(o.run.metadata.name ?? "", attempt));
  if (draft.state.credential) {
    const secretIsForeign = o.foreignSecret !== undefined;
    draft.state.credential = await revokeCredential(ctx, o.run, draft.state.credential, { secretIsForeign });
  }
  const identity = identityResults(draft.state.credential);
  const now = ctx.now();
  if (retrying) return { draft: retryAttempt(draft, ending, now, identity, retries), next: again };
  // Straight on to releasing the run: its finalizer comes off once the end is written.
  return { draft: finishRun(draft, ending, now, identity), next: again, failpoint: "after-terminal" };
}

async function finalize(run: CustomRun, ctx: TaskContext): Promise<void> {
  const namespace = run.metadata.namespace ?? "";
  const name = run.metadata.name ?? "";
  for (const pod of await ctx.cluster.listRunPods(namespace, name))
    if (ownedBy(pod, run)) await ctx.cluster.deletePod(namespace, pod.metadata?.name ?? "");
  const record = stepState(run.status ?? {}).credential;
  if (record) await revokeCredential(ctx, run, record);
  await sweepRun(ctx, namespace, name);
  // Credential Secrets have one name per attempt: read by name, never listed (no RBAC to list).
  for (let attempt = 0; attempt <= (run.status?.retriesStatus?.length ?? 0); attempt++) {
    const secret = await ctx.cluster.getSecret(namespace, credentialSecretName(name, attempt));
    if (secret && ownedBy(secret, run))
      await ctx.cluster.deleteSecret(namespace, secret.metadata?.name ?? "");
  }
  await releaseFinalizer(ctx.cluster, run);
}

/** The step and grant: resolved earlier in this reconcile, or now. */
async function resolving(o: Observed, ctx: TaskContext): Promise<Resolved | Pending | { refused: Ending }> {
  if (o.resolved) return o.resolved;
  try {
    return await resolveRun(o.run, ctx);
  } catch (err) {
    if (!isRunFailure(err)) throw err;
    return { refused: { kind: "refused", reason: err.reason, message: err.message } };
  }
}

/** A copy of the run's status to change: the cached run is never touched. JSON, as it was read. */
function draftOf(run: CustomRun): Draft {
  const status = JSON.parse(JSON.stringify(run.status ?? {})) as CustomRunStatus;
  return { status, state: stepState(status) };
}

/**
 * Writes the pass's status once, reports the change, and schedules the attempt's timeout; a written
 * intent hands the run on to the mint pass.
 */
async function commit(ctx: TaskContext, o: Observed, run: CustomRun, outcome: Outcome): Promise<Passed> {
  let written = run;
  let wrote = false;
  if (outcome.draft) {
    const { status, state } = outcome.draft;
    const next = withStepState({ ...status, observedGeneration: run.metadata.generation }, state);
    if (!sameStatus(run.status, next)) {
      written = await ctx.cluster.writeStatus(run, next);
      wrote = true;
    }
  }
  if (outcome.failpoint) ctx.failpoint?.(outcome.failpoint);
  reportTransition(written, o.run.status ?? {}, ctx);
  if (outcome.resolved && wrote)
    return { next: outcome.next, then: { run: written, resolved: outcome.resolved } };
  if (outcome.next.requeueAfterMs !== undefined || isDone(written.status)) return { next: outcome.next };
  const left = timeLeftMs({ ...o, run: written });
  return { next: left === undefined ? outcome.next : { requeueAfterMs: Math.max(left, 0) + 50 } };
}
