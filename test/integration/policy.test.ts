// ScopedStepPolicy against the real API server: the generated CRD's server-side validation, and the
// PolicyStore following creations, edits and deletions without a restart. Policies are cluster-scoped
// and the control plane is shared, so every policy here selects only this file's own namespaces.
import { after, before, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { ApiException, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { parse } from "yaml";
import { kubeFromKubeConfig } from "../../controller/kube-client.ts";
import { createLogger } from "../../controller/log.ts";
import { PolicyStore } from "../../controller/policies.ts";
import type { PolicyDecision, PolicyGrant } from "../../tasks/scoped-step/policy.ts";
import { policyApi, type PolicyStatus } from "../../tasks/scoped-step/policy-schema.ts";
import { checkTraitProperties, type TraitProperties } from "../../tasks/scoped-step/schema.ts";
import { testCluster, testNamespace, type TestCluster } from "../support/cluster.ts";
import { yamlBlocks } from "../support/catalog.ts";
import { createRaw, statusMessage, type ApiObject } from "../support/raw-api.ts";
import { eventually } from "../support/wait.ts";

const account = "arn:aws:iam::111122223333";
const deployer = `${account}:role/team-a-deployer`;
const traitRef = "the scoped-identity trait on component api of Application payments";
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

interface StoredPolicy {
  metadata: { name: string; generation: number; resourceVersion: string };
  spec: Record<string, unknown>;
  status?: PolicyStatus;
}

let cluster: TestCluster;
let store: PolicyStore;

before(async () => {
  cluster = await testCluster();
  // No label cache, so a relabelled namespace counts at the next decision.
  store = new PolicyStore({
    kube: await kubeFromKubeConfig(cluster.kc),
    log: createLogger("silent"),
    namespaceLabelsTtlMs: 0,
  });
  store.start();
});

after(() => store.stop());

function trait(properties: Record<string, unknown>): TraitProperties {
  const checked = checkTraitProperties(properties, "trait");
  if (!checked.ok) throw new Error(checked.message);
  return checked.value;
}

const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString("hex")}`;

async function createPolicy(
  t: TestContext,
  name: string,
  spec: Record<string, unknown>,
): Promise<StoredPolicy> {
  const created = (await cluster.objects.createClusterCustomObject({
    ...policyApi,
    body: {
      apiVersion: `${policyApi.group}/${policyApi.version}`,
      kind: "ScopedStepPolicy",
      metadata: { name },
      spec,
    },
  })) as StoredPolicy;
  t.after(() => deletePolicy(name));
  return created;
}

async function deletePolicy(name: string): Promise<void> {
  try {
    await cluster.objects.deleteClusterCustomObject({ ...policyApi, name });
  } catch (err) {
    if (!(err instanceof ApiException && err.code === 404)) throw err;
  }
}

const getPolicy = async (name: string) =>
  (await cluster.objects.getClusterCustomObject({ ...policyApi, name })) as StoredPolicy;

async function patchSpec(name: string, spec: Record<string, unknown>): Promise<StoredPolicy> {
  return (await cluster.objects.patchClusterCustomObject(
    { ...policyApi, name, body: { spec } },
    mergePatch,
  )) as StoredPolicy;
}

/** Waits until the store's decision satisfies `accept`. */
function decisionFor(
  what: string,
  namespace: string,
  t: TraitProperties,
  accept: (d: PolicyDecision) => boolean,
): Promise<PolicyDecision> {
  return eventually(what, async () => {
    const d = await store.decide(namespace, t, traitRef);
    return accept(d) ? d : undefined;
  });
}

const grantedBy = (policy: string) => (d: PolicyDecision) => d.allowed && d.policy === policy;
const deniedWith = (reason: string) => (d: PolicyDecision) => !d.allowed && d.reason === reason;

function readyCondition(p: StoredPolicy) {
  return p.status?.conditions?.find((c) => c.type === "Ready");
}

test("the CRD accepts a valid policy, filling defaults, and rejects a structurally invalid one", async (t) => {
  const name = unique("crd-valid");
  const created = await createPolicy(t, name, {
    namespaces: ["nowhere-" + name],
    aws: { allowedRoleArns: [deployer] },
  });
  assert.deepEqual(created.spec.audiences, ["sts.amazonaws.com"]);
  assert.deepEqual(created.spec.deliveryModes, ["env", "file"]);
  assert.equal(created.spec.revocation, "secret");
  assert.equal(created.spec.maxTokenLifetimeSeconds, 600);
  assert.deepEqual(created.spec.aws, {
    allowedRoleArns: [deployer],
    allowedPolicyArns: [],
    maxSessionDuration: 900,
    requireSessionPolicy: false,
    allowedSessionTags: {},
    allowedTransitiveTagKeys: [],
  });
  assert.equal(created.spec.maxRetries, 3);
  assert.equal(created.spec.allowTenantSuppliedSubjectFacts, false);

  const refused = async (spec: Record<string, unknown>, field: RegExp) => {
    await assert.rejects(
      cluster.objects.createClusterCustomObject({
        ...policyApi,
        body: {
          apiVersion: "scopedstep.dev/v1alpha1",
          kind: "ScopedStepPolicy",
          metadata: { name: unique("crd-bad") },
          spec,
        },
      }),
      (err: unknown) => err instanceof ApiException && err.code === 422 && field.test(String(err.body)),
    );
  };
  await refused({ namespaceSelector: {}, revocation: "never" }, /spec\.revocation/);
  await refused({ namespaceSelector: {}, aws: { maxSessionDuration: 60 } }, /spec\.aws\.maxSessionDuration/);
  await refused({ namespaces: ["Not_A_Namespace"] }, /spec\.namespaces\[0\]/);
  await refused({ namespaceSelector: { matchExpressions: [{ key: "team", operator: "Near" }] } }, /operator/);
  await refused(
    { namespaceSelector: {}, aws: { allowedRoleArns: ["*"] } },
    /spec\.aws\.allowedRoleArns\[0\]/,
  );
  await refused({ namespaceSelector: {}, subjectTemplate: "x:{token}" }, /spec\.subjectTemplate/);
});

test("the store follows a policy's creation, update and deletion without a restart", async (t) => {
  const namespace = await testNamespace(cluster, "policy-reload");
  const name = unique("reload");
  const wants = trait({ aws: { roleArn: deployer } });
  await decisionFor("no policy yet", namespace, wants, deniedWith("PolicyNotFound"));

  await createPolicy(t, name, {
    namespaces: [namespace],
    aws: { allowedRoleArns: [`${account}:role/team-a-*`] },
  });
  const grant = (await decisionFor("the new policy", namespace, wants, grantedBy(name))) as PolicyGrant;
  assert.equal(grant.revocation, "secret");
  assert.ok(store.policies().some((p) => p.metadata.name === name));

  const ready = await eventually("Ready=True", async () => {
    const p = await getPolicy(name);
    return readyCondition(p)?.status === "True" ? p : undefined;
  });
  assert.equal(ready.status?.observedGeneration, ready.metadata.generation);
  assert.equal(readyCondition(ready)?.reason, "Valid");

  const updated = await patchSpec(name, { aws: { allowedRoleArns: [`${account}:role/read-only`] } });
  const denied = await decisionFor("the edited policy", namespace, wants, deniedWith("RoleNotAllowed"));
  assert.match(
    denied.allowed ? "" : denied.message,
    new RegExp(`by policy ${name}; allowed roles: .*role/read-only`),
  );
  await eventually("observedGeneration follows the edit", async () =>
    (await getPolicy(name)).status?.observedGeneration === updated.metadata.generation ? true : undefined,
  );

  await deletePolicy(name);
  await decisionFor("the deletion", namespace, wants, deniedWith("PolicyNotFound"));
  assert.ok(!store.policies().some((p) => p.metadata.name === name));
});

test("a policy the API server stores but the validator refuses allows nothing until it is fixed", async (t) => {
  // The CRD cannot express rules across fields; ajv can. Exists with values is what an operator
  // might write meaning "has this label with this value"; read loosely, it would select every
  // namespace, so it must not be read at all.
  const namespace = await testNamespace(cluster, "policy-invalid");
  const strict = unique("strict");
  const loose = unique("loose");
  const wants = trait({ aws: { roleArn: deployer } });
  await createPolicy(t, strict, {
    namespaces: [namespace],
    aws: { allowedRoleArns: [`${account}:role/read-only`] },
  });
  await createPolicy(t, loose, {
    namespaces: [namespace],
    namespaceSelector: {
      matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "Exists", values: [namespace] }],
    },
    aws: { allowedRoleArns: ["arn:aws:iam::*:role/*"] },
    deliveryModes: ["env", "file", "token-only"],
  });

  const marked = await eventually("Ready=False on the invalid policy", async () => {
    const p = await getPolicy(loose);
    return readyCondition(p)?.status === "False" ? p : undefined;
  });
  assert.equal(readyCondition(marked)?.reason, "InvalidSpec");
  assert.match(
    readyCondition(marked)?.message ?? "",
    /matchExpressions\.0\.values: .*; the policy is ignored and allows nothing/,
  );

  const denied = await decisionFor("the valid policy alone", namespace, wants, deniedWith("RoleNotAllowed"));
  assert.deepEqual(denied.allowed ? [] : denied.policies, [strict], "the invalid policy takes no part");
  assert.ok(!store.policies().some((p) => p.metadata.name === loose));

  await patchSpec(loose, {
    namespaceSelector: {
      matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: [namespace] }],
    },
  });
  await decisionFor("the fixed policy", namespace, wants, grantedBy(loose));
  await eventually("Ready=True once fixed", async () =>
    readyCondition(await getPolicy(loose))?.status === "True" ? true : undefined,
  );
});

test("namespace labels drive selection, and a new label counts at the next decision", async (t) => {
  const label = `policy-test.scopedstep.dev/${randomBytes(4).toString("hex")}`;
  const labelled = await testNamespace(cluster, "policy-labelled");
  const plain = await testNamespace(cluster, "policy-plain");
  const labelNamespace = (name: string) =>
    cluster.core.patchNamespace({ name, body: { metadata: { labels: { [label]: "trusted" } } } }, mergePatch);
  await labelNamespace(labelled);
  const name = unique("labels");
  await createPolicy(t, name, {
    namespaceSelector: { matchLabels: { [label]: "trusted" } },
    aws: { allowedRoleArns: [deployer] },
  });
  const wants = trait({ aws: { roleArn: deployer } });

  await decisionFor("the labelled namespace", labelled, wants, grantedBy(name));
  assert.equal((await store.namespaceLabels(labelled))[label], "trusted");
  const d = await store.decide(plain, wants, traitRef);
  assert.ok(!d.allowed && d.reason === "PolicyNotFound", `the unlabelled namespace is not selected`);

  await labelNamespace(plain);
  await decisionFor("the namespace once labelled", plain, wants, grantedBy(name));
});

test("docs/policy.md: the example, applied as written, grants and refuses as the page says", async (t) => {
  const [example] = await yamlBlocks("docs/policy.md");
  assert.ok(example, "docs/policy.md has its example");
  const policy = parse(example.text) as ApiObject;
  assert.equal(policy.metadata.name, "payments");
  const res = await createRaw(cluster.kc, policy);
  assert.equal(res.status, 201, statusMessage(res));
  assert.deepEqual(res.warnings, []);
  t.after(() => deletePolicy("payments"));
  // The namespace as the example's selector wants it; another team's is not selected.
  const payments = await testNamespace(cluster, "policy-docs");
  await cluster.core.patchNamespace(
    { name: payments, body: { metadata: { labels: { team: "payments" } } } },
    mergePatch,
  );
  const other = await testNamespace(cluster, "policy-docs-other");

  const role = `${account}:role/payments-deployer`;
  const sessionPolicy = {
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: "*" }],
  };
  const readOnly = "arn:aws:iam::aws:policy/ReadOnlyAccess";
  // A key given as undefined is left out, as a trait that does not set it.
  const wants = (aws: Record<string, unknown>) =>
    trait({
      aws: Object.fromEntries(
        Object.entries({
          roleArn: role,
          sessionPolicy,
          policyArns: [readOnly],
          sessionDuration: 1800,
          ...aws,
        }).filter(([, v]) => v !== undefined),
      ),
    });

  const granted = await decisionFor("the example to grant", payments, wants({}), grantedBy("payments"));
  assert.ok(granted.allowed);
  assert.equal(granted.revocation, "deny-policy");
  for (const [why, aws, reason] of [
    ["no session policy", { sessionPolicy: undefined }, "SessionPolicyRequired"],
    ["longer than 1800 s", { sessionDuration: 3600 }, "SessionDurationNotAllowed"],
    ["another team's role", { roleArn: `${account}:role/finance-deployer` }, "RoleNotAllowed"],
    [
      "a managed policy not listed",
      { policyArns: ["arn:aws:iam::aws:policy/AdministratorAccess"] },
      "PolicyArnNotAllowed",
    ],
  ] as const) {
    const d = await store.decide(payments, wants(aws), traitRef);
    assert.ok(!d.allowed && d.reason === reason, `${why}: ${JSON.stringify(d)}`);
  }
  const unselected = await store.decide(other, wants({}), traitRef);
  assert.ok(
    !unselected.allowed && unselected.reason === "PolicyNotFound",
    "a namespace without team=payments",
  );
});
