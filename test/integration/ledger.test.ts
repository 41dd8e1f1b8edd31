// The credential ledger holds its ground against the tenant: whatever a namespace user does to the
// run (strip its finalizer, delete it mid-step), and whenever the controller dies, every session
// minted is denied by the AWS peer, from entries the tenant can neither read nor touch.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { identityComponent } from "../support/application.ts";
import { deployRole, startIdentityWorld, type IdentityWorld } from "../support/identity-world.ts";
import { ledgerEntries, ledgerNames, writeExpiredLedgerEntry } from "../support/ledger.ts";
import { statusOf, tenantConfig } from "../support/tenant.ts";
import { eventually } from "../support/wait.ts";
import { condition } from "../support/world.ts";

const world: Promise<IdentityWorld> = startIdentityWorld(
  {
    aws: { allowedRoleArns: ["arn:aws:iam::111122223333:role/payments-*"], maxSessionDuration: 3600 },
    revocation: "deny-policy",
  },
  { flags: ["--ledger-sweep-seconds=1"] },
).then(async (w) => {
  await w.createApplication("payments", [
    identityComponent({ aws: { roleArn: deployRole, region: "eu-west-1" } }),
  ]);
  return w;
});

const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const runs = { group: "tekton.dev", version: "v1beta1", plural: "customruns" } as const;

/** A step that holds its session until the test is done with it. */
const holdingStep = (w: IdentityWorld) => ({
  params: [
    { name: "image", value: "amazon/aws-cli" },
    { name: "script", value: "while [ ! -f /workspace/release ]; do sleep 0.2; done" },
    { name: "env", value: { AWS_ENDPOINT_URL: w.peer.endpoint } },
    { name: "application", value: "payments" },
    { name: "component", value: "api" },
  ],
});

/** An S3 read the role allows: it works while the session is live and is refused once it is denied. */
function readWith(w: IdentityWorld, secret: Record<string, string>) {
  const s3 = new S3Client({
    region: "eu-west-1",
    endpoint: w.peer.endpoint,
    forcePathStyle: true,
    credentials: {
      accessKeyId: secret.accessKeyId ?? "",
      secretAccessKey: secret.secretAccessKey ?? "",
      sessionToken: secret.sessionToken ?? "",
    },
  });
  return () => s3.send(new GetObjectCommand({ Bucket: "artifacts", Key: "hello.txt" }));
}

async function refused(read: () => Promise<unknown>): Promise<true | undefined> {
  try {
    await read();
    return undefined;
  } catch (err) {
    if (err instanceof Error && /explicit deny/i.test(err.message)) return true;
    throw err;
  }
}

async function gone(w: IdentityWorld, name: string): Promise<true | undefined> {
  try {
    await w.getRun(name);
    return undefined;
  } catch (err) {
    if (err instanceof ApiException && err.code === 404) return true;
    throw err;
  }
}

/** The run's ledger entry, once it records the revocation. */
const revokedEntry = (w: IdentityWorld, run: string) =>
  eventually(`the ledger to record ${run}'s revocation`, async () =>
    (await ledgerEntries(w.cluster.kc, w.controllerNs)).find(
      (e) => e.run.name === run && e.state === "revoked",
    ),
  );

/** Strips the run's finalizers and deletes it, through the given API client. */
async function stripAndDelete(objects: CustomObjectsApi, namespace: string, name: string): Promise<void> {
  await objects.patchNamespacedCustomObject(
    { ...runs, namespace, name, body: { metadata: { finalizers: null } } },
    mergePatch,
  );
  await objects.deleteNamespacedCustomObject({ ...runs, namespace, name });
}

test("a tenant who strips the finalizer and deletes a running run loses the session: the peer refuses it", async () => {
  const w = await world;
  await w.createRun("erased", holdingStep(w));
  await w.waitForRun("erased", "to run", (r) => condition(r)?.reason === "Running");
  const secret = await w.secretData("erased-credentials-0");
  assert.ok(secret?.accessKeyId, "the step holds a session");
  const read = readWith(w, secret);
  await read(); // live: the role allows this read

  const tenant = (await tenantConfig(w.cluster, w.ns)).makeApiClient(CustomObjectsApi);
  await stripAndDelete(tenant, w.ns, "erased");
  await eventually("the run to be gone", () => gone(w, "erased"));

  await eventually("the session to be refused by the peer", () => refused(read));
  // The deny is written first, then the ledger records it.
  const entry = await revokedEntry(w, "erased");
  assert.equal(entry.revocation, "deny-policy");
  assert.equal(
    entry.intent.sessionName,
    w.peer.sessions().find((s) => s.accessKeyId === secret.accessKeyId)?.roleSessionName,
  );
  await eventually("the orphaned credential Secret to be deleted", async () =>
    (await w.secretData("erased-credentials-0")) ? undefined : true,
  );
});

test("a controller killed after the intent is in the ledger revokes on restart from the ledger alone, the run deleted meanwhile", async () => {
  const w = await world;
  await w.restartController({ SCOPED_STEP_FAILPOINT: "after-secret" });
  const doomed = w.controller;
  await w.createRun("orphaned", holdingStep(w));
  await doomed?.exited;
  assert.equal(doomed?.child.signalCode, "SIGKILL", "the controller died after storing the credential");

  const secret = await w.secretData("orphaned-credentials-0");
  assert.ok(secret?.accessKeyId, "the session was minted and stored");
  const [entry] = (await ledgerEntries(w.cluster.kc, w.controllerNs)).filter(
    (e) => e.run.name === "orphaned",
  );
  assert.equal(entry?.state, "minted", "the ledger names the credential");
  assert.ok(
    entry.intent.sourceIdentity &&
      entry.intent.roleArn === deployRole &&
      entry.intent.account === "111122223333",
  );

  // With no controller running, the run and its status (which named the credential) go away.
  await stripAndDelete(w.cluster.objects, w.ns, "orphaned");
  await eventually("the run to be gone", () => gone(w, "orphaned"));
  const read = readWith(w, secret);
  await read(); // nothing has revoked it yet

  await w.restartController();
  await eventually("the session to be refused by the peer", () => refused(read));
  await revokedEntry(w, "orphaned");
  // The audit line follows the ledger's update.
  await eventually("the revocation's audit line, from the ledger", () =>
    Promise.resolve(/"via":"ledger".*"why":"run deleted"/.test(w.controller?.output() ?? "") || undefined),
  );
});

test("ledger entries are removed once their sessions have expired, and kept until then", async () => {
  const w = await world;
  const expired = await writeExpiredLedgerEntry(w.cluster.kc, w.controllerNs, w.ns);
  await eventually("the expired entry to be removed", async () =>
    (await ledgerEntries(w.cluster.kc, w.controllerNs)).some((e) => e.run.uid === expired.run.uid)
      ? undefined
      : true,
  );
  // The revoked entries of the tests above name sessions that are still valid: they stay.
  const kept = await ledgerEntries(w.cluster.kc, w.controllerNs);
  assert.ok(
    kept.some((e) => e.run.name === "erased" && e.state === "revoked"),
    "a live session's entry stays",
  );
});

test("the tenant can neither read nor change the ledger", async () => {
  const w = await world;
  await w.createRun("audited", {
    params: holdingStep(w).params.map((p) => (p.name === "script" ? { ...p, value: "true" } : p)),
  });
  await w.waitDone("audited");
  const [name] = await ledgerNames(w.cluster.kc, w.controllerNs);
  assert.ok(name, "there is an entry to attack");
  const core = (await tenantConfig(w.cluster, w.ns)).makeApiClient(CoreV1Api);
  const namespace = w.controllerNs;
  assert.equal(await statusOf(core.listNamespacedConfigMap({ namespace })), 403, "list");
  assert.equal(await statusOf(core.listConfigMapForAllNamespaces()), 403, "list across namespaces");
  assert.equal(await statusOf(core.readNamespacedConfigMap({ namespace, name })), 403, "get");
  assert.equal(await statusOf(core.deleteNamespacedConfigMap({ namespace, name })), 403, "delete");
  assert.equal(
    await statusOf(
      core.patchNamespacedConfigMap({ namespace, name, body: { data: { state: "revoked" } } }, mergePatch),
    ),
    403,
    "patch",
  );
  assert.equal(
    await statusOf(
      core.createNamespacedConfigMap({ namespace, body: { metadata: { name: "credential-forged-0" } } }),
    ),
    403,
    "create",
  );
  assert.ok((await ledgerNames(w.cluster.kc, w.controllerNs)).includes(name), "the entry is untouched");
});
