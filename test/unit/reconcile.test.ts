// The run lifecycle driven pass by pass against an in-memory API server: every phase, every way a
// run ends, and a crash at every failpoint. The integration tests play the same against the real one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { failpoints } from "../../tasks/scoped-step/ports.ts";
import { RunFailure } from "../../tasks/scoped-step/failure.ts";
import { phaseOf } from "../../tasks/scoped-step/phase.ts";
import { observe } from "../../tasks/scoped-step/reconcile.ts";
import { stepState } from "../../tasks/scoped-step/status.ts";
import { runOwnerReference } from "../../tasks/scoped-step/pod.ts";
import type { CustomRun, CustomRunSpec } from "../../tasks/scoped-step/types.ts";
import {
  Crash,
  fakeSecretValues,
  fakeWorld,
  FakeLedger,
  ns,
  stepParams,
  type FakeWorld,
} from "../support/fake-cluster.ts";

const ref = { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" };
const cond = (run: CustomRun | undefined) => run?.status?.conditions?.find((c) => c.type === "Succeeded");
const results = (run: CustomRun | undefined) =>
  Object.fromEntries((run?.status?.results ?? []).map((r) => [r.name, r.value]));
const phase = async (w: FakeWorld, name: string) =>
  phaseOf(await observe(w.cluster.run(ns, name), w.ctx)).name;
const done = (run: CustomRun | undefined) => ["True", "False"].includes(cond(run)?.status ?? "");
const exited = (exitCode: number, message: string) => ({ terminated: { exitCode, message } });
const startedAt = '[{"key":"StartedAt","value":"2026-01-01T00:00:00.000Z","type":3}]';

function start(w: FakeWorld, name: string, spec: Partial<CustomRunSpec> = {}) {
  w.cluster.addRun(ns, name, { customRef: ref, params: stepParams(), ...spec });
}

/** A Secret planted at a name the run will use, as a tenant can before the run exists. */
const forged = (name: string, annotation: string) => ({
  metadata: {
    name,
    namespace: ns,
    labels: { "tekton.dev/customRun": "run" },
    annotations: { "scopedstep.dev/credential": annotation },
  },
  stringData: { accessKeyId: "TENANTKEY" },
});

async function untilPod(w: FakeWorld, name: string, pod = `${name}-pod`) {
  await w.settle(name, () => w.cluster.pods.has(`${ns}/${pod}`));
}

test("a run walks every phase to success: intent, mint, pod, running, results, revoked, released", async () => {
  const w = fakeWorld();
  start(w, "ok");
  assert.equal(await phase(w, "ok"), "new");
  // What the API server holds when the provider is asked to mint.
  const atMint: { finalizers?: string[]; state?: string; startTime?: string; ledger?: string[] }[] = [];
  const mint = w.provider.mint.bind(w.provider);
  w.provider.mint = async (facts, grant, recorded) => {
    await recorded;
    const run = w.cluster.run(ns, "ok");
    const ledger = (await w.ctx.ledger.list()).map((e) => e.state);
    atMint.push({
      ...(run.metadata.finalizers ? { finalizers: run.metadata.finalizers } : {}),
      ...(run.status?.startTime ? { startTime: run.status.startTime } : {}),
      state: stepState(run.status ?? {}).credential?.state ?? "none",
      ledger,
    });
    return mint(facts, grant, recorded);
  };
  // One reconcile: the intent pass goes straight on to the mint pass and creates the pod.
  await w.pass("ok");
  assert.equal(atMint.length, 1);
  assert.deepEqual(atMint[0]?.finalizers, ["scopedstep.dev/cleanup"], "the finalizer is on before the mint");
  assert.equal(atMint[0]?.state, "minting", "the intent is in status before the mint");
  assert.ok(atMint[0]?.startTime, "the intent pass also starts the run");
  assert.deepEqual(atMint[0]?.ledger, ["intent"], "and in the ledger");
  let run = w.cluster.run(ns, "ok");
  assert.equal(cond(run)?.reason, "Started");
  assert.equal(w.provider.minted.length, 1);
  assert.equal(stepState(run.status ?? {}).credential?.state, "active");
  assert.equal(stepState(run.status ?? {}).pod, "ok-pod");
  assert.ok(w.cluster.secrets.has(`${ns}/ok-credentials-0`));
  const env = w.cluster.pods.get(`${ns}/ok-pod`)?.spec?.containers[0]?.env ?? [];
  assert.ok(env.some((e) => e.valueFrom?.secretKeyRef?.name === "ok-credentials-0"));

  await w.pass("ok");
  assert.equal(cond(w.cluster.run(ns, "ok"))?.reason, "Started", "a pending pod keeps the run Started");
  w.cluster.setStepState(ns, "ok-pod", { running: {} });
  await w.pass("ok");
  assert.equal(cond(w.cluster.run(ns, "ok"))?.reason, "Running");

  w.cluster.setStepState(ns, "ok-pod", exited(0, '[{"key":"out","value":"done","type":1}]'), "Succeeded");
  await w.pass("ok");
  run = w.cluster.run(ns, "ok");
  assert.equal(cond(run)?.status, "True");
  assert.equal(results(run).out, "done");
  assert.equal(results(run)["identity-subject"], `system:scoped-step:${ns}:ok`);
  assert.ok(results(run)["revoked-at"]);
  assert.equal(w.provider.revoked.length, 1);
  assert.equal(w.cluster.secrets.size, 0, "the credential Secret goes with the revocation");
  assert.equal(await phase(w, "ok"), "ended");
  await w.pass("ok");
  assert.deepEqual(w.cluster.run(ns, "ok").metadata.finalizers, []);
  assert.deepEqual(
    w.events.map((e) => e.reason),
    ["Started", "CredentialMinted", "CredentialRevoked", "Succeeded"],
  );
});

test("a failing step fails the run with its exit code and last lines, credential values redacted", async () => {
  const w = fakeWorld();
  start(w, "bad");
  await untilPod(w, "bad");
  const printed = `echo ${fakeSecretValues.secretAccessKey}\nno such bucket`;
  // What the step printed is in its log; the entrypoint's message holds only its own entries.
  w.cluster.logs.set(`${ns}/bad-pod`, printed);
  w.cluster.setStepState(ns, "bad-pod", exited(7, startedAt), "Failed");
  const run = await w.settle("bad", done);
  assert.equal(cond(run)?.reason, "Failed");
  assert.match(cond(run)?.message ?? "", /exited with code 7/);
  assert.match(cond(run)?.message ?? "", /no such bucket/);
  assert.doesNotMatch(JSON.stringify(run), new RegExp(fakeSecretValues.secretAccessKey));
  assert.ok(w.events.some((e) => e.type === "Warning" && e.reason === "Failed"));
  assert.equal(w.provider.revoked.length, 1);
});

test("retries re-run the step with a fresh credential and file each attempt in retriesStatus", async () => {
  const w = fakeWorld();
  start(w, "again", { retries: 1 });
  await untilPod(w, "again");
  w.cluster.setStepState(ns, "again-pod", exited(3, "first"), "Failed");
  await w.settle("again", (r) => (r?.status?.retriesStatus?.length ?? 0) === 1);
  assert.equal(w.provider.revoked.length, 1, "the failed attempt's credential is revoked before the retry");
  assert.ok(w.events.some((e) => e.reason === "Retrying"));
  await untilPod(w, "again", "again-pod-retry1");
  assert.equal(w.provider.minted.length, 2);
  assert.equal(w.provider.minted[1]?.attempt, 1);
  w.cluster.setStepState(ns, "again-pod-retry1", exited(3, "second"), "Failed");
  const run = await w.settle("again", done);
  assert.equal(cond(run)?.reason, "Failed");
  assert.equal(run?.status?.retriesStatus?.length, 1);
  assert.equal(stepState(run?.status?.retriesStatus?.[0] ?? {}).credential?.state, "revoked");
  assert.equal(w.provider.revoked.length, 2);
  assert.ok(w.cluster.pods.has(`${ns}/again-pod`), "a pod that failed by itself stays for its logs");
});

test("cancelling a running run deletes its pod, revokes, and says CustomRunCancelled", async () => {
  const w = fakeWorld();
  start(w, "stop");
  await untilPod(w, "stop");
  w.cluster.editRun(ns, "stop", (r) => {
    r.spec.status = "RunCancelled";
    r.spec.statusMessage = "no longer needed";
  });
  const run = await w.settle("stop", done);
  assert.equal(cond(run)?.reason, "CustomRunCancelled");
  assert.equal(cond(run)?.message, "no longer needed");
  assert.equal(w.cluster.pods.size, 0);
  assert.equal(w.provider.revoked.length, 1);
  assert.ok(w.events.some((e) => e.reason === "Cancelled"));
});

test("the timeout runs from the start of the attempt; the pass asks to come back when it is due", async () => {
  const w = fakeWorld();
  start(w, "slow", { timeout: "30s" });
  await untilPod(w, "slow");
  const next = await w.pass("slow");
  assert.ok(next.requeueAfterMs !== undefined && next.requeueAfterMs <= 30_050);
  w.clock.now = new Date(w.clock.now.getTime() + 31_000);
  const run = await w.settle("slow", done);
  assert.equal(cond(run)?.reason, "CustomRunTimedOut");
  assert.match(cond(run)?.message ?? "", /timed out after 30s/);
  assert.equal(w.cluster.pods.size, 0, "a timed-out pod is deleted");
  assert.ok(w.events.some((e) => e.reason === "TimedOut"));
});

test("bad input and refusals end the run with the reason their module named, and mint nothing", async () => {
  const cases: [string, (w: FakeWorld) => void, string][] = [
    ["InvalidTimeout", (w) => start(w, "r", { timeout: "soon" }), "InvalidTimeout"],
    [
      "no ScopedStep",
      (w) => start(w, "r", { customRef: { ...ref, name: "missing" }, params: [] }),
      "ScopedStepNotFound",
    ],
    [
      "no Application",
      (w) => {
        w.cluster.applications.clear();
        start(w, "r");
      },
      "ApplicationNotFound",
    ],
    [
      "policy",
      (w) => {
        w.refuse = new RunFailure("RoleNotAllowed", "no");
        start(w, "r");
      },
      "RoleNotAllowed",
    ],
  ];
  for (const [what, setup, reason] of cases) {
    const w = fakeWorld();
    setup(w);
    const run = await w.settle("r", done);
    assert.equal(cond(run)?.reason, reason, what);
    assert.equal(w.provider.minted.length, 0, what);
    assert.ok(
      w.events.some((e) => e.type === "Warning" && e.reason === "Failed"),
      what,
    );
  }
});

test("a mint the provider refuses ends the run and revokes by the recorded intent", async () => {
  const w = fakeWorld();
  start(w, "nomint");
  w.provider.failNextMint = new RunFailure("AWSRoleTrustRejected", "the role does not trust the issuer");
  const run = await w.settle("nomint", done);
  assert.equal(cond(run)?.reason, "AWSRoleTrustRejected");
  assert.equal(w.provider.revoked.length, 1);
  assert.equal(w.provider.revoked[0]?.state, "minting");
});

test("the revocation method is recorded and published; a mint that issued nothing is not revoked", async () => {
  const w = fakeWorld();
  start(w, "denied");
  await untilPod(w, "denied");
  w.cluster.setStepState(ns, "denied-pod", exited(0, "[]"), "Succeeded");
  let run = await w.settle("denied", done);
  assert.equal(results(run).revocation, "deny-policy");
  assert.deepEqual(stepState(run?.status ?? {}).credential?.revocation, { method: "deny-policy" });

  const refused = fakeWorld();
  start(refused, "sts-said-no");
  refused.provider.failNextMint = new RunFailure("AWSRoleTrustRejected", "untrusted", {
    nothingIssued: true,
  });
  run = await refused.settle("sts-said-no", done);
  assert.equal(cond(run)?.reason, "AWSRoleTrustRejected");
  assert.equal(refused.provider.revoked.length, 0, "nothing was issued, so nothing is revoked");
  const record = stepState(run?.status ?? {}).credential;
  assert.equal(record?.state, "revoked");
  assert.deepEqual(record?.revocation, { method: "none" });
  const [entry] = await refused.ctx.ledger.list();
  assert.equal(entry?.state, "revoked", "the ledger says so too: the sweeper denies nothing");
  assert.equal(entry?.revocation, "none: nothing was issued");
});

test("a revocation that falls back to expiry still ends the run, with a Warning that says why", async () => {
  const w = fakeWorld();
  w.provider.revocation = { method: "expiry", detail: "the role's deny list is full (10240 characters)" };
  start(w, "full");
  await untilPod(w, "full");
  w.cluster.setStepState(ns, "full-pod", exited(0, '[{"key":"out","value":"done","type":1}]'), "Succeeded");
  const run = await w.settle("full", done);
  assert.equal(cond(run)?.status, "True");
  assert.equal(results(run).revocation, "expiry");
  const warning = w.events.find((e) => e.reason === "RevocationFellBackToExpiry");
  assert.equal(warning?.type, "Warning");
  assert.match(warning?.message ?? "", /deny list is full/);
  assert.ok(!w.events.some((e) => e.reason === "CredentialRevoked"), "it was not revoked");
});

test("a trait or policy changed between the intent and the mint is refused, with nothing minted", async () => {
  const w = fakeWorld();
  start(w, "swap");
  // The controller stops after writing the intent; the pass after it resolves again.
  w.crashAt = "after-intent";
  await assert.rejects(w.pass("swap"), Crash);
  assert.match(
    stepState(w.cluster.run(ns, "swap").status ?? {}).credential?.grant ?? "",
    /^sha256:[0-9a-f]{64}$/,
  );
  const app = w.cluster.applications.get(`${ns}/payments`);
  const trait = app?.spec.components?.[0]?.traits?.[0];
  assert.ok(trait);
  trait.properties = { aws: { roleArn: "arn:aws:iam::999988887777:role/admin" } };
  const run = await w.settle("swap", done);
  assert.equal(cond(run)?.reason, "GrantChangedBeforeMint");
  assert.match(cond(run)?.message ?? "", /component api of Application payments/);
  assert.equal(w.provider.minted.length, 0);
  assert.equal(w.provider.revoked.length, 0);
  assert.deepEqual(stepState(run?.status ?? {}).credential?.revocation, { method: "none" });
  assert.equal(w.cluster.pods.size, 0);
});

test("a pod or Secret the run does not own is never adopted, mounted or read: the run fails naming it", async () => {
  const forgedAnnotation = JSON.stringify({
    results: { "identity-subject": "system:scoped-step:kube-system:evil:x" },
    mount: { secretEnv: { AWS_ACCESS_KEY_ID: "k" }, env: {}, files: {} },
  });
  const cases: [string, (w: FakeWorld) => Promise<unknown>, string][] = [
    [
      "forged Secret",
      (w) => w.cluster.createSecret(forged("run-credentials-0", forgedAnnotation)),
      "CredentialSecretNotOwned",
    ],
    [
      "malformed Secret",
      (w) => w.cluster.createSecret(forged("run-credentials-0", "{not json")),
      "CredentialSecretNotOwned",
    ],
    [
      "pre-created pod",
      async (w) => {
        await w.cluster.createPod({
          metadata: { name: "run-pod", namespace: ns, labels: { "tekton.dev/customRun": "run" } },
        });
        w.cluster.setStepState(
          ns,
          "run-pod",
          exited(0, '[{"key":"out","value":"forged","type":1}]'),
          "Succeeded",
        );
      },
      "StepPodNotOwned",
    ],
  ];
  for (const [what, plant, reason] of cases) {
    const w = fakeWorld();
    await plant(w);
    start(w, "run");
    const run = await w.settle("run", done);
    assert.equal(cond(run)?.reason, reason, what);
    assert.match(cond(run)?.message ?? "", /was not created for this run/, what);
    const written = JSON.stringify([run, w.events]);
    assert.ok(
      !written.includes("evil") && !written.includes("forged"),
      `${what}: nothing of it is published`,
    );
    for (const pod of w.cluster.pods.values()) {
      assert.ok(!JSON.stringify(pod.spec ?? {}).includes("run-credentials-0"), `${what}: not mounted`);
    }
    assert.equal(
      w.cluster.pods.size + w.cluster.secrets.size,
      1,
      `${what}: the planted object is left alone`,
    );
  }
});

test("the run's own Secret changed after the controller wrote it is not adopted: the run fails instead of looping", async () => {
  const w = fakeWorld();
  start(w, "edited");
  w.crashAt = "after-secret";
  await assert.rejects(w.pass("edited"), Crash);
  const secret = w.cluster.secrets.get(`${ns}/edited-credentials-0`);
  assert.ok(secret?.metadata?.annotations);
  secret.metadata.annotations["scopedstep.dev/credential"] = "{broken";
  const run = await w.settle("edited", done);
  assert.equal(cond(run)?.reason, "CredentialSecretNotOwned");
  assert.match(cond(run)?.message ?? "", /or was changed after it was/);
  assert.equal(w.provider.revoked.length, 1, "the credential minted before the crash is revoked");
});

test("a Secret carrying the run's UID as its owner but not written by the controller is refused", async () => {
  const w = fakeWorld();
  start(w, "copied");
  w.crashAt = "after-intent";
  await assert.rejects(w.pass("copied"), Crash);
  // The tenant reads the run's UID and plants a Secret that names the run as its controller.
  const run = await w.cluster.getRun(ns, "copied");
  assert.ok(run);
  const secret = forged(
    "copied-credentials-0",
    JSON.stringify({
      results: { "identity-subject": "system:scoped-step:kube-system:evil:x" },
      mount: { secretEnv: { AWS_ACCESS_KEY_ID: "k" }, env: {}, files: {} },
    }),
  );
  await w.cluster.createSecret({
    ...secret,
    metadata: { ...secret.metadata, ownerReferences: [runOwnerReference(run)] },
  });
  const ended = await w.settle("copied", done);
  assert.equal(cond(ended)?.reason, "CredentialSecretNotOwned");
  assert.ok(!JSON.stringify([ended, w.events]).includes("evil"), "nothing of it is published");
  for (const pod of w.cluster.pods.values())
    assert.ok(!JSON.stringify(pod.spec ?? {}).includes("copied-credentials-0"), "not mounted");
  assert.equal(w.provider.minted.length, 0, "nothing was minted for it");
});

test("a Secret minted by a version that kept no digest in the ledger is still adopted after an upgrade", async () => {
  const w = fakeWorld();
  start(w, "upgraded");
  w.crashAt = "after-secret";
  await assert.rejects(w.pass("upgraded"), Crash);
  const ledger = w.ctx.ledger as FakeLedger;
  for (const entry of ledger.entries.values()) delete entry.secretDigest;
  await untilPod(w, "upgraded");
  w.cluster.setStepState(
    ns,
    "upgraded-pod",
    exited(0, '[{"key":"out","value":"done","type":1}]'),
    "Succeeded",
  );
  const run = await w.settle("upgraded", done);
  assert.equal(cond(run)?.status, "True", cond(run)?.message);
  assert.equal(w.provider.minted.length, 1, "adopted, not minted again");
});

test("a transient mint error is thrown for the queue to retry, and the next pass mints", async () => {
  const w = fakeWorld();
  start(w, "flaky");
  w.provider.failNextMint = new Error("connection reset");
  await assert.rejects(w.pass("flaky"), /connection reset/);
  assert.equal(await phase(w, "flaky"), "minting");
  await w.pass("flaky");
  assert.ok(w.cluster.pods.has(`${ns}/flaky-pod`));
});

test("a pod deleted under a running step ends the attempt with StepPodMissing", async () => {
  const w = fakeWorld();
  start(w, "gone");
  await untilPod(w, "gone");
  await w.cluster.deletePod(ns, "gone-pod");
  assert.equal(await phase(w, "gone"), "pod-missing");
  const run = await w.settle("gone", done);
  assert.equal(cond(run)?.reason, "StepPodMissing");
});

test("an image that cannot be pulled fails the attempt; a retry deletes the stuck pod", async () => {
  const w = fakeWorld();
  start(w, "pull", { retries: 1 });
  await untilPod(w, "pull");
  w.cluster.setStepState(
    ns,
    "pull-pod",
    { waiting: { reason: "ErrImagePull", message: "not found" } },
    "Pending",
  );
  await w.settle("pull", (r) => (r?.status?.retriesStatus?.length ?? 0) === 1);
  assert.ok(!w.cluster.pods.has(`${ns}/pull-pod`));
  assert.equal(
    w.cluster.run(ns, "pull").status?.retriesStatus?.[0]?.conditions?.[0]?.reason,
    "StepImagePullFailed",
  );
});

test("deleting a run revokes its credential, removes its pod and Secret, then lets it go", async () => {
  const w = fakeWorld();
  start(w, "doomed");
  await untilPod(w, "doomed");
  w.cluster.editRun(ns, "doomed", (r) => (r.metadata.deletionTimestamp = w.clock.now));
  assert.equal(await phase(w, "doomed"), "deleting");
  await w.pass("doomed");
  assert.equal(w.cluster.runs.size, 0);
  assert.equal(w.cluster.pods.size + w.cluster.secrets.size, 0);
  assert.equal(w.provider.revoked.length, 1);
});

test("a run of another custom task is left alone", async () => {
  const w = fakeWorld();
  w.cluster.addRun(ns, "other", { customRef: { apiVersion: "example.dev/v1", kind: "Other" } });
  await w.pass("other");
  assert.equal(w.cluster.run(ns, "other").status, undefined);
});

test("a write that loses a conflict is retried by the next pass without minting twice", async () => {
  const w = fakeWorld();
  start(w, "race");
  // The intent's write goes through; the mint's loses.
  w.cluster.conflictAfterWrites = 1;
  await assert.rejects(w.pass("race"), /conflict/);
  assert.equal(await phase(w, "race"), "stored", "the minted credential was stored before the write");
  assert.ok(w.cluster.pods.has(`${ns}/race-pod`), "the pod was created before the write, too");
  await w.pass("race");
  assert.equal(w.provider.minted.length, 1, "the stored credential is adopted, not minted again");
  assert.equal(stepState(w.cluster.run(ns, "race").status ?? {}).credential?.state, "active");
});

/** Passes until the run has ended and let go, playing a kubelet that runs the step at once. */
async function driveToEnd(w: FakeWorld, name: string): Promise<{ run?: CustomRun; crashed: boolean }> {
  let crashed = false;
  for (let i = 0; i < 40; i++) {
    const run = await w.cluster.getRun(ns, name);
    if (done(run) && (run?.metadata.finalizers ?? []).length === 0) return { run, crashed };
    const pod = w.cluster.pods.get(`${ns}/${name}-pod`);
    if (pod && !pod.status)
      w.cluster.setStepState(ns, `${name}-pod`, exited(0, '[{"key":"out","value":"done","type":1}]'));
    await w.pass(name).catch((err: unknown) => {
      if (!(err instanceof Crash)) throw err;
      crashed = true;
    });
  }
  throw new Error(`run ${name} did not end`);
}

for (const point of failpoints.filter((p) => p !== "after-failure")) {
  test(`a pass that stops ${point} converges: one pod, the result, the credential revoked`, async () => {
    const w = fakeWorld();
    start(w, "crash");
    w.crashAt = point;
    const { run, crashed } = await driveToEnd(w, "crash");
    assert.ok(crashed, `the lifecycle reached ${point}`);
    assert.equal(cond(run)?.status, "True", cond(run)?.message);
    assert.equal(results(run).out, "done");
    assert.equal(stepState(run?.status ?? {}).credential?.state, "revoked");
    assert.equal(w.cluster.pods.size, 1);
    assert.equal(w.cluster.secrets.size, 0);
    assert.ok(w.provider.revoked.length >= 1);
    // Minting again is allowed only when the first credential was never recorded or stored.
    assert.equal(w.provider.minted.length, point === "after-mint" ? 2 : 1);
  });
}

const jwtShape = /eyJ[\w-]{6,}/;

for (const point of ["after-failure", "after-revoke", "after-terminal"] as const) {
  test(`a step that prints its credentials and fails, with a stop ${point}, publishes none of them`, async () => {
    const w = fakeWorld();
    start(w, "leaky");
    await untilPod(w, "leaky");
    const printed = Object.values(fakeSecretValues).join("\n");
    w.cluster.setStepState(
      ns,
      "leaky-pod",
      exited(1, `${printed}\ntoken eyJhbGciOiJSUzI1NiJ9.e30.sig`),
      "Failed",
    );
    w.crashAt = point;
    await assert.rejects(w.settle("leaky", done), Crash);
    const run = await w.settle("leaky", (r) => done(r) && (r?.metadata.finalizers ?? []).length === 0);
    assert.equal(cond(run)?.reason, "Failed");
    assert.match(cond(run)?.message ?? "", /\[redacted\]/);
    const written = JSON.stringify([run, w.events]);
    for (const value of Object.values(fakeSecretValues))
      assert.ok(!written.includes(value), `${value} leaked`);
    assert.doesNotMatch(written, jwtShape);
  });
}

test("a ledger that cannot take the intent fails the pass before anything is stored, however fast the provider", async () => {
  const w = fakeWorld();
  // A provider that ignores `recorded` and answers at once: the lifecycle still waits for the ledger.
  const mint = w.provider.mint.bind(w.provider);
  w.provider.mint = (facts, grant) => mint(facts, grant);
  const ledger = w.ctx.ledger;
  w.ctx.ledger = { ...ledger, recordIntent: () => Promise.reject(new Error("etcd timed out")) };
  start(w, "run");
  await assert.rejects(w.pass("run"), /etcd timed out/, "thrown for the queue to retry");
  assert.equal(w.cluster.secrets.size + w.cluster.pods.size, 0, "no Secret, no pod");
  assert.equal(stepState(w.cluster.run(ns, "run").status ?? {}).credential?.state, "minting");

  w.ctx.ledger = ledger;
  await untilPod(w, "run");
  assert.equal(stepState(w.cluster.run(ns, "run").status ?? {}).credential?.state, "active");
  assert.ok(w.cluster.secrets.has(`${ns}/run-credentials-0`));
});

test("a Secret planted while the intent is written is refused at the mint, which is revoked, not mounted", async () => {
  const w = fakeWorld();
  const writeStatus = w.cluster.writeStatus.bind(w.cluster);
  let planted = false;
  // The new attempt's Secret is looked up beside the intent's status write: plant one just after.
  w.cluster.writeStatus = async (run, status) => {
    const written = await writeStatus(run, status);
    if (!planted) {
      planted = true;
      await w.cluster.createSecret(forged("run-credentials-0", "{}"));
    }
    return written;
  };
  start(w, "run");
  const run = await w.settle("run", done);
  assert.equal(cond(run)?.reason, "CredentialSecretNotOwned");
  assert.equal(w.provider.minted.length, 1, "the look-ahead saw no Secret, so the mint went ahead");
  assert.equal(w.provider.revoked.length, 1, "and its credential was revoked");
  assert.equal(w.cluster.pods.size, 0, "no pod mounted anything");
  assert.deepEqual(
    [...w.cluster.secrets.values()].map((s) => s.data?.accessKeyId),
    [Buffer.from("TENANTKEY").toString("base64")],
    "the planted Secret is left alone",
  );
});
