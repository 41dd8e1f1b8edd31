// The release's RBAC is enough and no more. The real controller runs as the release's
// ServiceAccount (a TokenRequest token) with the release's roles: a run with AWS credentials
// succeeds and its credential is revoked, a cancelled and a deleted run are cleaned up, and no
// request is ever forbidden. Then, for every verb of every rule, the same controller without that
// one verb fails in a way an operator would see: the API server forbids exactly that request (the
// controller logs the 403) and a named symptom follows (the run never finishes, the credential is
// not revoked, the Lease is never taken, the controller exits...). A verb whose removal broke
// nothing would not belong in the role. The same proof runs for the namespaced install
// (catalog/controller/0.1/namespaced), whose tenant access is bound in the run's namespace only.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { CoreV1Api } from "@kubernetes/client-node";
import { stepState } from "../../tasks/scoped-step/status.ts";
import type { CustomRun } from "../../tasks/scoped-step/types.ts";
import { waitForLeader, type ControllerProcess } from "../support/controller.ts";
import {
  describePermission,
  namespacedRbac,
  permissions,
  releaseRbac,
  startRbacWorld,
  waitForMessage,
  waitForReason,
  without,
  type ControllerRbac,
  type Permission,
  type RbacWorld,
} from "../support/rbac-world.ts";
import { ledgerEntries as readLedger, ledgerNames } from "../support/ledger.ts";
import { eventually } from "../support/wait.ts";

/** A request the API server refused, as the controller logged it. */
interface Forbidden {
  verb: string;
  group: string;
  resource: string;
}

/**
 * Every forbidden request in the controller's output. An API error carries the server's message
 * ("... cannot get resource \"pods\" in API group \"\" ..."), escaped once or more inside a log
 * line or an uncaught error; a refused watch only its path, in the informer's log line.
 */
function forbiddenRequests(c: ControllerProcess): Forbidden[] {
  const out: Forbidden[] = [];
  const text = c.output().replaceAll("\\", "");
  for (const m of text.matchAll(/cannot (\S+) resource "([^"]+)" in API group "([^"]*)"/g)) {
    out.push({ verb: m[1] ?? "", resource: m[2] ?? "", group: m[3] ?? "" });
  }
  for (const line of c.logLines()) {
    const err = line.err as { statusCode?: number } | undefined;
    if (err?.statusCode !== 403 || line.msg !== "watch failed; listing again") continue;
    const p = /^\/apis?\/(?:([^/]+)\/)?v[^/]+\/(?:namespaces\/[^/]+\/)?([^/?]+)/.exec(String(line.path));
    out.push({ verb: "watch", group: p?.[1] ?? "", resource: p?.[2] ?? String(line.path) });
  }
  return out;
}

const same = (a: Forbidden, p: Permission) =>
  a.verb === p.verb && a.group === p.group && a.resource === p.resource;

const condition = (run: CustomRun | undefined) =>
  run?.status?.conditions?.find((c) => c.type === "Succeeded");

/** Polls `probe` for `ms`; fails as soon as it is false: for "this never happens (within the bound)". */
async function holdsFor(what: string, ms: number, probe: () => Promise<boolean> | boolean): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    assert.ok(await probe(), what);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const bound = 3000;

async function podPhase(w: RbacWorld, name: string): Promise<string | undefined> {
  const core = w.cluster.kc.makeApiClient(CoreV1Api);
  const pods = await core.listNamespacedPod({ namespace: w.ns });
  return pods.items.find((p) => p.metadata?.name === name)?.status?.phase;
}

async function runSecrets(w: RbacWorld, run: string): Promise<string[]> {
  const core = w.cluster.kc.makeApiClient(CoreV1Api);
  const list = await core.listNamespacedSecret({
    namespace: w.ns,
    labelSelector: `tekton.dev/customRun=${run}`,
  });
  return list.items.map((s) => s.metadata?.name ?? "");
}

async function eventReasons(w: RbacWorld): Promise<string[]> {
  const core = w.cluster.kc.makeApiClient(CoreV1Api);
  return (await core.listNamespacedEvent({ namespace: w.ns })).items.map((e) => e.reason ?? "");
}

async function policyReady(w: RbacWorld): Promise<string | undefined> {
  const policy = (await w.cluster.objects.getClusterCustomObject({
    group: "scopedstep.dev",
    version: "v1alpha1",
    plural: "scopedsteppolicies",
    name: w.policyName,
  })) as { status?: { conditions?: { type: string; status: string }[] } };
  return policy.status?.conditions?.find((c) => c.type === "Ready")?.status;
}

const sessionsMinted = (w: RbacWorld) => w.peer.sessions().length;

const ledgerEntries = (w: RbacWorld) => ledgerNames(w.cluster.kc, w.controllerNs);

/** What the scenario does, and what a missing verb must visibly break. */
interface Case {
  scenario:
    | "run"
    | "planted pod"
    | "cancel"
    | "delete"
    | "empty key Secret"
    | "configuration change"
    | "expired ledger entry"
    | "resolver run"
    | "failing step";
  symptom: string;
  check: (w: RbacWorld, c: ControllerProcess) => Promise<void>;
}

/** A run that never gets going: it sits without credentials for the whole bound. */
const neverProgresses = (what: (run: CustomRun | undefined) => boolean) => async (w: RbacWorld) =>
  holdsFor(
    "the run does not progress",
    bound,
    async () => what(await w.getRun("deploy")) && sessionsMinted(w) === 0,
  );

const exits = (code: number) => async (_w: RbacWorld, c: ControllerProcess) => {
  assert.equal(await c.exited, code, "the controller exits");
};

const neverLeads = async (w: RbacWorld, c: ControllerProcess) => {
  await holdsFor("the controller never takes the Lease", bound, async () => {
    const run = await w.getRun("deploy");
    return !c.output().includes('"became leader"') && run?.status === undefined;
  });
};

/** The watch is refused again and again: the informer falls back to listing, with backoff. */
const relistsInALoop = (resource: string) => async (_w: RbacWorld, c: ControllerProcess) => {
  await eventually(`watching ${resource} to be refused again and again`, () =>
    Promise.resolve(
      forbiddenRequests(c).filter((f) => f.verb === "watch" && f.resource === resource).length >= 3
        ? true
        : undefined,
    ),
  );
};

const noPodAndUnfinished = (w: RbacWorld) =>
  holdsFor("no pod and no finished run", bound, async () => {
    const run = await w.getRun("deploy");
    return (await podPhase(w, "deploy-pod")) === undefined && condition(run)?.status === "Unknown";
  });

const cases: Record<string, Case> = {
  // cluster-access
  "list scopedstep.dev/scopedsteppolicies": {
    scenario: "run",
    symptom: "policies never load: no decision, no credential, the run never finishes",
    check: neverProgresses((run) => condition(run)?.status !== "True"),
  },
  "watch scopedstep.dev/scopedsteppolicies": {
    scenario: "run",
    symptom: "policy changes are not watched: the controller re-lists with backoff",
    check: relistsInALoop("scopedsteppolicies"),
  },
  "patch scopedstep.dev/scopedsteppolicies/status": {
    scenario: "run",
    // What an operator sees with one controller is a policy that never shows Ready; here other
    // controllers share the cluster-scoped policies and would mark it, so the controller's own
    // complaint is the symptom.
    symptom: "the policy's Ready condition cannot be written",
    check: async (_w, c) => {
      await eventually("the controller to report it", () =>
        Promise.resolve(c.output().includes('"could not write policy status"') ? true : undefined),
      );
    },
  },
  "get namespaces": {
    scenario: "run",
    symptom:
      "neither a namespaceSelector nor the token's namespace UID can be read: no credential, the run never finishes",
    check: neverProgresses((run) => condition(run)?.status !== "True"),
  },
  // tenant-access
  "list tekton.dev/customruns": {
    scenario: "run",
    symptom: "runs are never seen",
    check: neverProgresses((run) => run?.status === undefined),
  },
  "watch tekton.dev/customruns": {
    scenario: "run",
    symptom: "runs are not watched: the controller re-lists with backoff",
    check: relistsInALoop("customruns"),
  },
  "patch tekton.dev/customruns": {
    scenario: "run",
    symptom: "no finalizer can be added: the run never starts",
    check: neverProgresses((run) => run?.status === undefined && !run?.metadata.finalizers),
  },
  "update tekton.dev/customruns/status": {
    scenario: "run",
    symptom: "no status can be written: the run never starts",
    check: neverProgresses((run) => run?.status === undefined),
  },
  "get pods": {
    scenario: "planted pod",
    symptom: "a pod planted at the step pod's name cannot be looked at: the run never finishes",
    check: (w) =>
      holdsFor(
        "the run stays unfinished",
        bound,
        async () => condition(await w.getRun("deploy"))?.status === "Unknown",
      ),
  },
  "list pods": {
    scenario: "run",
    // A pass reads the caches, so none runs before every informer has listed.
    symptom: "step pods are never listed: no pass runs, the run never starts",
    check: neverProgresses((run) => run?.status === undefined),
  },
  "watch pods": {
    scenario: "run",
    symptom: "step pods are not watched: the controller re-lists with backoff",
    check: relistsInALoop("pods"),
  },
  "get pods/log": {
    scenario: "failing step",
    symptom: "a failed step's message lacks its last log lines",
    check: async (w) => {
      const run = await waitForReason(w, "deploy", "Failed", 120_000);
      const message = condition(run)?.message ?? "";
      assert.match(message, /exited with code 3/);
      assert.doesNotMatch(message, /last words/);
    },
  },
  "create pods": {
    scenario: "run",
    symptom: "no step pod: the run never finishes",
    check: noPodAndUnfinished,
  },
  "delete pods": {
    scenario: "cancel",
    symptom: "a cancelled run's pod cannot be stopped: the run is never CustomRunCancelled",
    check: (w) =>
      holdsFor("the run is not cancelled and its pod runs on", bound, async () => {
        const run = await w.getRun("deploy");
        return condition(run)?.reason === "Running" && (await podPhase(w, "deploy-pod")) === "Running";
      }),
  },
  "get secrets": {
    scenario: "run",
    symptom: "the signing keys cannot be read: the controller exits at start",
    check: exits(2),
  },
  "create secrets": {
    scenario: "run",
    symptom: "the signing keys cannot be stored: the controller exits at start",
    check: exits(2),
  },
  "delete secrets": {
    scenario: "run",
    symptom: "the credential is never revoked: its Secret stays and the run never finishes",
    check: async (w) => {
      await eventually("the step pod to succeed", async () =>
        (await podPhase(w, "deploy-pod")) === "Succeeded" ? true : undefined,
      );
      await holdsFor("the credential stays unrevoked", bound, async () => {
        const run = await w.getRun("deploy");
        return (
          condition(run)?.status === "Unknown" &&
          stepState(run?.status ?? {}).credential?.state === "active" &&
          (await runSecrets(w, "deploy")).length === 1 &&
          Object.keys(w.peer.rolePolicies("rbac-deployer")).length === 0
        );
      });
    },
  },
  "create events": {
    scenario: "run",
    symptom: "no Events on the run",
    check: async (w) => {
      await waitForReason(w, "deploy", "Succeeded");
      assert.deepEqual(await eventReasons(w), []);
    },
  },
  "get core.oam.dev/applications": {
    scenario: "run",
    symptom: "the trait cannot be read: no credential, the run never finishes",
    check: neverProgresses((run) => condition(run)?.status !== "True"),
  },
  "list resolution.tekton.dev/resolutionrequests": {
    scenario: "run",
    symptom: "ResolutionRequests cannot be listed: the caches never sync, no run progresses",
    check: neverProgresses((run) => condition(run)?.status !== "True"),
  },
  "watch resolution.tekton.dev/resolutionrequests": {
    scenario: "run",
    symptom: "ResolutionRequests are not watched: the controller re-lists with backoff",
    check: relistsInALoop("resolutionrequests"),
  },
  "create resolution.tekton.dev/resolutionrequests": {
    scenario: "resolver run",
    symptom: "a step from a resolver cannot be asked for: the run waits, nothing is minted",
    check: neverProgresses((run) => condition(run)?.status !== "True"),
  },
  "get scopedstep.dev/scopedsteps": {
    scenario: "run",
    symptom: "the named step cannot be read: the run never finishes",
    check: neverProgresses((run) => condition(run)?.status !== "True"),
  },
  // the controller's namespace
  "create coordination.k8s.io/leases": {
    scenario: "run",
    symptom: "the Lease is never taken",
    check: neverLeads,
  },
  "get coordination.k8s.io/leases": {
    scenario: "run",
    symptom: "the Lease is never taken",
    check: neverLeads,
  },
  "update coordination.k8s.io/leases": {
    scenario: "run",
    symptom: "the Lease cannot be renewed: the leader stops and exits",
    check: async (w, c) => {
      await exits(1)(w, c);
      assert.match(c.output(), /"lost the leader lease"/);
    },
  },
  "get configmaps": {
    scenario: "run",
    symptom: "the configuration cannot be read: the controller exits at start with a clear error",
    check: async (w, c) => {
      await exits(2)(w, c);
      assert.match(c.output(), /invalid configuration: cannot read ConfigMap .*scoped-step-config/);
    },
  },
  "list configmaps": {
    scenario: "configuration change",
    symptom: "configuration changes are never applied (nor the ledger swept)",
    check: (_w, c) =>
      holdsFor("the change is not applied", bound, () => !c.output().includes('"configuration reloaded"')),
  },
  "watch configmaps": {
    scenario: "configuration change",
    symptom: "the configuration is not watched: the controller re-lists with backoff",
    check: relistsInALoop("configmaps"),
  },
  "create configmaps": {
    scenario: "run",
    symptom: "no ledger entry can be written: nothing is minted, the run never finishes",
    check: neverProgresses((run) => condition(run)?.status !== "True"),
  },
  "patch configmaps": {
    scenario: "run",
    symptom: "the ledger cannot record the mint: the step pod is never created, the run never finishes",
    check: (w) =>
      holdsFor("one session, no pod and no finished run", bound, async () => {
        const run = await w.getRun("deploy");
        return (
          sessionsMinted(w) === 1 &&
          (await podPhase(w, "deploy-pod")) === undefined &&
          condition(run)?.status === "Unknown"
        );
      }),
  },
  "delete configmaps": {
    scenario: "expired ledger entry",
    symptom: "ledger entries of expired sessions are never removed",
    check: (w) =>
      holdsFor("the expired entry stays", bound, async () => (await ledgerEntries(w)).length === 1),
  },
  "patch secrets": {
    scenario: "empty key Secret",
    symptom:
      "an operator-created key Secret cannot be filled (nor keys rotated): the controller exits at start",
    check: exits(2),
  },
};

/**
 * The Role in Tekton's namespace: its ConfigMap verbs share a name with the controller namespace's
 * own, so they are keyed by describePermission too.
 */
const tektonDefaultsRole = "scoped-step-controller-tekton-defaults";
const roleCases: Record<string, Case> = {
  [`list configmaps (${tektonDefaultsRole})`]: {
    scenario: "run",
    symptom: "Tekton's config-defaults is never read: runs go without its default pod template",
    check: (_w, c) =>
      holdsFor("the defaults are never read", bound, () => !c.output().includes('"Tekton defaults read"')),
  },
  [`watch configmaps (${tektonDefaultsRole})`]: {
    scenario: "run",
    symptom: "Tekton's config-defaults is not watched: the controller re-lists with backoff",
    check: relistsInALoop("configmaps"),
  },
};

/**
 * The namespaced install binds tenant-access in the run's namespace only, so its Secret verbs no
 * longer cover the signing keys (a Role of their own does, with the cases above): without them a
 * run's credential Secret cannot be read or written. Keyed by describePermission.
 */
const namespacedCases: Record<string, Case> = {
  "get secrets (scoped-step-controller-tenant-access)": {
    scenario: "run",
    symptom: "the credential Secret cannot be looked up before minting: the run never gets credentials",
    check: neverProgresses((run) => condition(run)?.status !== "True"),
  },
  "create secrets (scoped-step-controller-tenant-access)": {
    scenario: "run",
    symptom: "the credential Secret cannot be stored: no step pod, the run never finishes",
    check: noPodAndUnfinished,
  },
};

const modes = {
  "cluster-wide": { rbac: releaseRbac, overrides: {} as Record<string, Case> },
  namespaced: { rbac: namespacedRbac, overrides: namespacedCases },
};
type Mode = keyof typeof modes;
const caseFor = (mode: Mode, p: Permission): Case | undefined =>
  modes[mode].overrides[describePermission(p)] ?? roleCases[describePermission(p)] ?? cases[keyOf(p)];

const runParams = (w: RbacWorld) => [{ name: "endpoint", value: w.peer.endpoint }];
/** A step from Tekton's git resolver; no resolver runs here, so the run waits for its answer. */
const resolverRef = {
  apiVersion: "scopedstep.dev/v1alpha1",
  kind: "ScopedStep",
  resolver: "git",
  params: [{ name: "url", value: "https://git.example/catalog.git" }],
};

const keyOf = (p: Permission) => `${p.verb} ${p.group ? `${p.group}/` : ""}${p.resource}`;

/** Starts the scenario's world and controller and drives it to the point the verb is needed. */
async function scenario(
  rbac: ControllerRbac,
  kind: Case["scenario"],
): Promise<{ w: RbacWorld; c: ControllerProcess }> {
  const w = await startRbacWorld(rbac, { emptyKeySecret: kind === "empty key Secret" });
  if (kind === "expired ledger entry") await w.writeExpiredLedgerEntry();
  const c = w.startController();
  if (kind === "configuration change") {
    await eventually(
      "the controller to start",
      () => Promise.resolve(c.output().includes('"controller started"') ? true : undefined),
      { timeoutMs: 120_000 },
    );
    await w.configure({ concurrency: "4" });
    return { w, c };
  }
  if (kind === "expired ledger entry") return { w, c };
  if (kind === "resolver run") {
    await w.createRun("deploy", { customRef: { ...resolverRef } });
    return { w, c };
  }
  if (kind === "planted pod") {
    // Without the controller's label, so only a read by name shows it is not the run's.
    await w.cluster.kc.makeApiClient(CoreV1Api).createNamespacedPod({
      namespace: w.ns,
      body: {
        metadata: { name: "deploy-pod" },
        spec: { restartPolicy: "Never", containers: [{ name: "step", image: "alpine", command: ["true"] }] },
      },
    });
  }
  const hold = kind === "cancel" || kind === "delete" ? "300" : "0";
  const exit = kind === "failing step" ? "3" : "0";
  await w.createRun("deploy", {
    params: [...runParams(w), { name: "hold", value: hold }, { name: "exit", value: exit }],
  });
  if (hold === "300") {
    await waitForReason(w, "deploy", "Running", 120_000);
    if (kind === "cancel") await w.cancelRun("deploy");
    else await w.deleteRun("deploy");
  }
  return { w, c };
}

for (const mode of Object.keys(modes) as Mode[]) {
  test(`with the ${mode} install's RBAC, a run gets working AWS credentials, which are revoked; cancelled and deleted runs are cleaned up; configuration changes apply; nothing is forbidden`, async (t) => {
    const rbac = await modes[mode].rbac();
    const w = await startRbacWorld(rbac);
    t.after(() => w.stop());
    await w.writeExpiredLedgerEntry();
    const c = w.startController();
    await waitForLeader(c);
    await eventually("the expired ledger entry to be removed", async () =>
      (await ledgerEntries(w)).length === 0 ? true : undefined,
    );

    await w.createRun("deploy", {});
    const done = await waitForReason(w, "deploy", "Succeeded");
    const results = Object.fromEntries((done.status?.results ?? []).map((r) => [r.name, r.value]));
    assert.match(
      results.caller ?? "",
      /^arn:aws:sts::111122223333:assumed-role\/rbac-deployer\//,
      "the step called AWS",
    );
    assert.equal(stepState(done.status ?? {}).credential?.state, "revoked");
    await eventually("the credential Secret to be deleted", async () =>
      (await runSecrets(w, "deploy")).length === 0 ? true : undefined,
    );
    const deny = w.peer.rolePolicies("rbac-deployer")["scoped-step-revocations"] ?? "";
    assert.ok(
      deny.includes(results["aws-source-identity"] ?? "missing"),
      "the session is denied on the role",
    );
    const [entry] = await readLedger(w.cluster.kc, w.controllerNs);
    assert.equal(entry?.state, "revoked", "the ledger records the revocation");
    // Events are written without waiting for them, after the status that caused them.
    await eventually("CredentialMinted and CredentialRevoked Events", async () => {
      const reasons = await eventReasons(w);
      return reasons.includes("CredentialMinted") && reasons.includes("CredentialRevoked") ? true : undefined;
    });
    assert.equal(await policyReady(w), "True");

    await w.createRun("cancel", { params: [...runParams(w), { name: "hold", value: "300" }] });
    await waitForReason(w, "cancel", "Running");
    await w.cancelRun("cancel");
    await waitForReason(w, "cancel", "CustomRunCancelled");
    // A failed step's message quotes its log (get pods/log).
    await w.createRun("failing", { params: [...runParams(w), { name: "exit", value: "3" }] });
    const failed = await waitForReason(w, "failing", "Failed", 120_000);
    assert.match(
      condition(failed)?.message ?? "",
      /exited with code 3; last lines:[\s\S]*the step's last words/,
    );
    await eventually("the cancelled run's pod to be gone", async () =>
      (await podPhase(w, "cancel-pod")) === undefined ? true : undefined,
    );

    await w.createRun("delete", { params: [...runParams(w), { name: "hold", value: "300" }] });
    await waitForReason(w, "delete", "Running");
    await w.deleteRun("delete");
    await eventually("the deleted run to be gone with its pod and Secret", async () =>
      (await w.getRun("delete")) === undefined &&
      (await podPhase(w, "delete-pod")) === undefined &&
      (await runSecrets(w, "delete")).length === 0
        ? true
        : undefined,
    );

    await w.configure({ concurrency: "4" });
    await eventually("the configuration change to apply", () =>
      Promise.resolve(c.output().includes('"configuration reloaded"') ? true : undefined),
    );

    assert.ok(c.output().includes('"Tekton defaults read"'), "Tekton's config-defaults is read");
    await w.createRun("resolved", { customRef: resolverRef });
    await waitForMessage(w, "resolved", /waiting for resolver git \(ResolutionRequest git-[0-9a-f]+\)/);

    assert.deepEqual(forbiddenRequests(c), [], "no request was forbidden");
  });
}

test("with the release's RBAC, the controller fills a signing-key Secret an operator created empty", async (t) => {
  const w = await startRbacWorld(await releaseRbac(), { emptyKeySecret: true });
  t.after(() => w.stop());
  const c = w.startController();
  await waitForLeader(c);
  const core = w.cluster.kc.makeApiClient(CoreV1Api);
  const secret = await core.readNamespacedSecret({
    namespace: w.controllerNs,
    name: "scoped-step-signing-keys",
  });
  assert.ok(secret.data?.["keys.json"], "the keys are in the Secret");
  await w.createRun("deploy", {});
  await waitForReason(w, "deploy", "Succeeded");
  assert.deepEqual(forbiddenRequests(c), []);
});

test("every verb of the controller's roles has a minimality case, and every case a verb", async () => {
  const used = new Set<string>();
  for (const mode of Object.keys(modes) as Mode[]) {
    for (const p of permissions(await modes[mode].rbac())) {
      const described = describePermission(p);
      const key = described in modes[mode].overrides || described in roleCases ? described : keyOf(p);
      assert.ok(caseFor(mode, p), `${mode}: ${describePermission(p)} has no case`);
      used.add(key);
    }
  }
  assert.deepEqual(
    [...used].sort(),
    [...Object.keys(cases), ...Object.keys(namespacedCases), ...Object.keys(roleCases)].sort(),
  );
});

test("the namespaced install watches exactly the namespaces it binds the controller in, and grants nothing cluster-wide in them", async () => {
  const rbac = await namespacedRbac();
  assert.ok(rbac.bound.length > 0);
  assert.deepEqual([...rbac.watched].sort(), [...rbac.bound].sort());
  const clusterWide = permissions({ ...rbac, roles: [], tenantRoles: [], tektonRoles: [] });
  for (const p of clusterWide) {
    assert.ok(
      ["scopedsteppolicies", "scopedsteppolicies/status", "namespaces"].includes(p.resource),
      `${describePermission(p)} is cluster-wide`,
    );
  }
});

for (const mode of Object.keys(modes) as Mode[]) {
  describe(
    `${mode} install: without any one verb, the controller fails visibly`,
    { concurrency: 4 },
    async () => {
      const rbac = await modes[mode].rbac();
      for (const permission of permissions(rbac)) {
        const c = caseFor(mode, permission);
        if (!c) continue;
        // Generous waits: on a loaded machine a controller process can take tens of seconds to start.
        test(`${describePermission(permission)}: ${c.symptom}`, async (t) => {
          const { w, c: controller } = await scenario(without(rbac, permission), c.scenario);
          t.after(() => w.stop());
          await eventually(
            `the controller to be refused ${keyOf(permission)}`,
            () =>
              Promise.resolve(
                forbiddenRequests(controller).some((f) => same(f, permission)) ? true : undefined,
              ),
            { timeoutMs: 120_000 },
          ).catch((err: unknown) => {
            // What the controller did instead is the only clue to a wait that ran out.
            const tail = controller.output().split("\n").slice(-30).join("\n");
            throw new Error(`${(err as Error).message}; the controller's log ends:\n${tail}`);
          });
          await c.check(w, controller);
          const others = forbiddenRequests(controller).filter((f) => !same(f, permission));
          assert.deepEqual(others, [], "nothing else was forbidden");
        });
      }
    },
  );
}
