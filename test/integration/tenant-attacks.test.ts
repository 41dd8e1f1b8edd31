// Attacks on the run lifecycle played as the namespace tenant (the `edit` user, by impersonation):
// objects planted at the names a run will use, an Application edited between the credential's
// intent and its mint, and a step going after the entrypoint it shares volumes with.
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api, CustomObjectsApi, type V1OwnerReference } from "@kubernetes/client-node";
import { annotations, labels } from "../../tasks/scoped-step/pod.ts";
import type { Application } from "../../tasks/scoped-step/types.ts";
import { deployRole, startIdentityWorld, type IdentityWorld } from "../support/identity-world.ts";
import { tenantConfig } from "../support/tenant.ts";
import { condition, resultsOf } from "../support/world.ts";

const scopedIdentity = (roleArn: string) => [
  {
    name: "api",
    type: "webservice",
    traits: [{ type: "scoped-identity", properties: { aws: { roleArn, region: "eu-west-1" } } }],
  },
];

const world = startIdentityWorld({
  aws: { allowedRoleArns: ["arn:aws:iam::111122223333:role/payments-*"], maxSessionDuration: 3600 },
}).then(async (w) => {
  await w.createApplication("payments", scopedIdentity(deployRole));
  const kc = await tenantConfig(w.cluster, w.ns);
  return { w, core: kc.makeApiClient(CoreV1Api), objects: kc.makeApiClient(CustomObjectsApi) };
});

const runs = { group: "tekton.dev", version: "v1beta1", plural: "customruns" } as const;

async function tenantRun(
  t: Awaited<typeof world>,
  name: string,
  application = "payments",
  workspaces: unknown[] = [],
  script = "echo real > $(results.out.path)",
) {
  await t.objects.createNamespacedCustomObject({
    ...runs,
    namespace: t.w.ns,
    body: {
      apiVersion: "tekton.dev/v1beta1",
      kind: "CustomRun",
      metadata: { name },
      spec: {
        customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" },
        params: [
          { name: "image", value: "alpine" },
          { name: "script", value: script },
          { name: "results", value: ["out"] },
          { name: "application", value: application },
          { name: "component", value: "api" },
        ],
        workspaces,
      },
    },
  });
}

async function runAndEvents(w: IdentityWorld, name: string): Promise<string> {
  return JSON.stringify([await w.getRun(name), await w.events(name)]);
}

const forgedRecord = JSON.stringify({
  results: { "identity-subject": "system:scoped-step:kube-system:evil:x", "aws-role-arn": "arn:forged" },
  mount: { secretEnv: { AWS_ACCESS_KEY_ID: "accessKeyId" }, env: {}, files: {} },
});

/** A Secret at the run's credential name, written by the tenant with tenant keys inside. */
async function plantSecret(
  t: Awaited<typeof world>,
  name: string,
  record: string,
  ownerReferences: V1OwnerReference[] = [],
) {
  await t.core.createNamespacedSecret({
    namespace: t.w.ns,
    body: {
      metadata: {
        name: `${name}-credentials-0`,
        labels: { [labels.customRun]: name, [labels.attempt]: "0" },
        annotations: { "scopedstep.dev/credential": record },
        ownerReferences,
      },
      stringData: { accessKeyId: "TENANTKEY" },
    },
  });
}

for (const [name, record] of [
  ["planted-secret", forgedRecord],
  ["malformed-secret", "{not json"],
] as const) {
  test(`a Secret the tenant plants at a run's credential name (${name}) is never adopted or mounted`, async () => {
    const t = await world;
    await plantSecret(t, name, record);
    await tenantRun(t, name);
    const run = await t.w.waitDone(name);
    assert.equal(condition(run)?.reason, "CredentialSecretNotOwned", condition(run)?.message);
    assert.match(
      condition(run)?.message ?? "",
      new RegExp(`Secret ${name}-credentials-0 .* not created for this run`),
    );
    await t.w.waitForEvents(name, ["Failed"]);
    const written = await runAndEvents(t.w, name);
    assert.ok(!written.includes("evil") && !written.includes("arn:forged"), "nothing of it is published");
    const mounted = (await t.w.pods()).filter((p) =>
      JSON.stringify(p.spec).includes(`${name}-credentials-0`),
    );
    assert.deepEqual(mounted, [], "no pod mounts it");
    assert.ok(await t.w.secretData(`${name}-credentials-0`), "the tenant's Secret is left alone");
  });
}

test("a Secret the tenant plants with the run's own UID as its owner is still never adopted or mounted", async () => {
  const t = await world;
  const name = "copied-uid";
  // The controller stops after recording the intent, before it mints: the window a tenant needs.
  await t.w.restartController({ SCOPED_STEP_FAILPOINT: "after-intent" });
  const doomed = t.w.controller;
  await tenantRun(t, name);
  await doomed?.exited;
  const run = (await t.objects.getNamespacedCustomObject({ ...runs, namespace: t.w.ns, name })) as {
    apiVersion: string;
    kind: string;
    metadata: { uid: string };
  };
  await plantSecret(t, name, forgedRecord, [
    { apiVersion: run.apiVersion, kind: run.kind, name, uid: run.metadata.uid, controller: true },
  ]);
  await t.w.restartController();
  const ended = await t.w.waitDone(name);
  assert.equal(condition(ended)?.reason, "CredentialSecretNotOwned", condition(ended)?.message);
  await t.w.waitForEvents(name, ["Failed"]);
  const written = await runAndEvents(t.w, name);
  assert.ok(!written.includes("evil") && !written.includes("arn:forged"), "nothing of it is published");
  const mounted = (await t.w.pods()).filter((p) => JSON.stringify(p.spec).includes(`${name}-credentials-0`));
  assert.deepEqual(mounted, [], "no pod mounts it");
  const minted = t.w.peer.sessions().filter((s) => s.roleSessionName?.includes(run.metadata.uid.slice(0, 8)));
  assert.deepEqual(minted, [], "nothing is minted for a run whose credential name is taken");
});

test("a pod the tenant plants at a run's pod name is never read: its output is not the run's", async () => {
  const t = await world;
  const name = "planted-pod";
  await t.core.createNamespacedPod({
    namespace: t.w.ns,
    body: {
      metadata: {
        name: `${name}-pod`,
        labels: { [labels.customRun]: name, [labels.attempt]: "0" },
        annotations: { [annotations.results]: "out" },
      },
      spec: {
        restartPolicy: "Never",
        containers: [
          {
            name: "step",
            image: "alpine",
            command: ["/bin/sh", "-c", `echo '[{"key":"out","value":"forged"}]' > /dev/termination-log`],
          },
        ],
      },
    },
  });
  await tenantRun(t, name);
  const run = await t.w.waitDone(name);
  assert.equal(condition(run)?.reason, "StepPodNotOwned", condition(run)?.message);
  assert.notEqual(resultsOf(run).out, "forged");
  assert.ok(!(await runAndEvents(t.w, name)).includes("forged"));
});

test("the mint uses the grant the intent recorded: an Application edited in between is refused", async () => {
  const t = await world;
  const name = "swapped-grant";
  await t.w.createApplication("swap", scopedIdentity(deployRole));
  await t.w.restartController({ SCOPED_STEP_FAILPOINT: "after-intent" });
  const doomed = t.w.controller;
  await tenantRun(t, name, "swap");
  await doomed?.exited;
  const apps = { group: "core.oam.dev", version: "v1beta1", plural: "applications", namespace: t.w.ns };
  const app = (await t.objects.getNamespacedCustomObject({ ...apps, name: "swap" })) as Application;
  const other = "arn:aws:iam::111122223333:role/payments-admin";
  app.spec = { components: scopedIdentity(other) };
  await t.objects.replaceNamespacedCustomObject({ ...apps, name: "swap", body: app });

  await t.w.restartController();
  const run = await t.w.waitDone(name);
  assert.equal(condition(run)?.reason, "GrantChangedBeforeMint", condition(run)?.message);
  assert.deepEqual(
    t.w.peer.sessions().filter((s) => s.roleSessionName.includes(name)),
    [],
    "no session was minted, on either role",
  );
});

test("a workspace the tenant binds to another run's credential Secret is refused: no pod mounts it", async () => {
  const t = await world;
  // A victim run holding its credentials while the attack runs.
  await tenantRun(t, "victim", "payments", [], "sleep 300");
  await t.w.waitForRun("victim", "to run with its credentials", (r) => condition(r)?.reason === "Running");
  const attacks = {
    "steal-secret": [{ name: "loot", secret: { secretName: "victim-credentials-0" } }],
    "steal-projected": [
      { name: "loot", projected: { sources: [{ secret: { name: "victim-credentials-0" } }] } },
    ],
  };
  for (const [name, workspaces] of Object.entries(attacks)) await tenantRun(t, name, "payments", workspaces);
  for (const name of Object.keys(attacks)) {
    const run = await t.w.waitDone(name);
    assert.equal(condition(run)?.reason, "WorkspaceNotAllowed", condition(run)?.message);
    assert.match(
      condition(run)?.message ?? "",
      /Secret victim-credentials-0, which is named as a run's credential Secret/,
    );
  }
  const mounting = (await t.w.pods()).filter(
    (p) => p.metadata?.name !== "victim-pod" && JSON.stringify(p.spec).includes("victim-credentials-0"),
  );
  assert.deepEqual(mounting, [], "no pod but the victim's own mounts its credentials");
  await t.w.patchRunSpec("victim", { status: "RunCancelled" });
  await t.w.waitDone("victim");
});

test("a step cannot replace the entrypoint, its script or Tekton's step links: they are read-only to it", async () => {
  const t = await world;
  // Each attempt must fail; a changed or missing target is reported in the result.
  const script = [
    "out=''",
    "for f in /tekton/bin/entrypoint /tekton/scripts/step /tekton/steps/step-step; do",
    '  [ -e "$f" ] || [ -L "$f" ] || { out="$out missing:$f"; continue; }',
    '  if (: > "$f") 2>/dev/null || rm -f "$f" 2>/dev/null || ln -sfn /bin/sh "$f" 2>/dev/null; then',
    '    out="$out changed:$f"',
    "  fi",
    "done",
    'if (: > /tekton/bin/planted) 2>/dev/null; then out="$out planted"; fi',
    'printf "attempts:%s" "$out" > $(results.out.path)',
  ].join("\n");
  await tenantRun(t, "overwrite-entrypoint", "payments", [], script);
  const run = await t.w.waitDone("overwrite-entrypoint");
  assert.equal(condition(run)?.reason, "Succeeded", condition(run)?.message);
  assert.equal(resultsOf(run).out, "attempts:", "every attempt on the shared volumes failed");
  const bin = t.w.kubelet?.volumePath(t.w.ns, "overwrite-entrypoint-pod", "tekton-internal-bin");
  assert.ok(bin, "the pod's entrypoint volume");
  const copied = await readFile(`${bin}/entrypoint`);
  assert.ok(
    copied.subarray(0, 4).equals(Buffer.from("\x7fELF")),
    "the volume still holds Tekton's entrypoint",
  );
});
