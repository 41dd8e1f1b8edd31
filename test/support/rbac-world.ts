// The controller as the release installs it, permission-wise: the RBAC of catalog/release.yaml
// (possibly with one verb taken away), bound to the release's ServiceAccount in a namespace of the
// test's own, and the real controller running with a token of that ServiceAccount (TokenRequest
// API). Around it, what a run with credentials needs: the loopback AWS peer trusting the
// controller's issuer, the test kubelet, a ScopedStepPolicy, an Application with the trait and a
// ScopedStep definition.
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import {
  ApiException,
  CoreV1Api,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { parse, parseAllDocuments } from "yaml";
import type { CustomRun, CustomRunSpec } from "../../tasks/scoped-step/types.ts";
import { startAwsPeer, type AwsPeer } from "../../simulators/aws/server.ts";
import { createTrustingRole, registerIssuer } from "./aws/trust.ts";
import { testCluster, testNamespace, type TestCluster } from "./cluster.ts";
import { startController, type ControllerProcess } from "./controller.ts";
import { startTestKubelet, type TestKubelet } from "../../simulators/kubelet/index.ts";
import { eventually } from "./wait.ts";
import { createApplication, identityComponent } from "./application.ts";
import { writeExpiredLedgerEntry } from "./ledger.ts";

export const releasePath = fileURLToPath(new URL("../../catalog/release.yaml", import.meta.url));
const namespacedDir = fileURLToPath(new URL("../../catalog/controller/0.1/namespaced", import.meta.url));
export const releaseNamespace = "scoped-step";
/** Tekton's namespace as the release names it (--tekton-namespace's default). */
export const releaseTektonNamespace = "tekton-pipelines";
export const serviceAccount = "scoped-step-controller";
export const account = "111122223333";
export const roleArn = `arn:aws:iam::${account}:role/rbac-deployer`;

export interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

/** The roles the release binds to the controller's ServiceAccount, by name. */
export interface ControllerRbac {
  /** Bound cluster-wide. */
  clusterRoles: { name: string; rules: Rule[] }[];
  /** Roles in the controller's own namespace. */
  roles: { name: string; rules: Rule[] }[];
  /** ClusterRoles bound by a RoleBinding in each namespace the controller serves (namespaced install). */
  tenantRoles: { name: string; rules: Rule[] }[];
  /** Roles in Tekton's namespace (its config-defaults ConfigMap). */
  tektonRoles: { name: string; rules: Rule[] }[];
}

interface Doc {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: Rule[];
  roleRef?: { kind: string; name: string };
  subjects?: { kind: string; name: string; namespace?: string }[];
}

async function readYamlDocs(file: string): Promise<Doc[]> {
  const stream = parseAllDocuments(await readFile(file, "utf8"));
  return (Array.isArray(stream) ? stream : []).map((d) => d.toJS() as Doc | null).filter((d) => d !== null);
}

/** The cluster-wide install: catalog/release.yaml. */
export async function releaseRbac(): Promise<ControllerRbac> {
  return controllerRbac(await readYamlDocs(releasePath));
}

/**
 * The namespaced install: release.yaml with the overlay in catalog/controller/0.1/namespaced
 * applied as kustomize applies it (its own resources added, the `$patch: delete` patches removing
 * their targets). Also returns the namespaces it binds and the ones it configures the controller
 * to watch.
 */
export async function namespacedRbac(): Promise<ControllerRbac & { bound: string[]; watched: string[] }> {
  const { docs, watched } = await namespacedInstall();
  const bound = tenantBindings(docs).map((d) => d.metadata.namespace ?? "");
  return { ...controllerRbac(docs), bound, watched };
}

/**
 * The namespaced install's documents (the release with the overlay), the ones the overlay
 * deletes, what it adds, and the namespaces it has the controller watch.
 */
export async function namespacedInstall(): Promise<{
  docs: Doc[];
  added: Doc[];
  removed: Doc[];
  watched: string[];
}> {
  const k = parse(await readFile(path.join(namespacedDir, "kustomization.yaml"), "utf8")) as {
    resources: string[];
    patches: { patch: string }[];
  };
  if (!k.resources.includes("..")) throw new Error("the namespaced overlay does not build on the release");
  let docs = await readYamlDocs(releasePath);
  const added: Doc[] = [];
  for (const resource of k.resources.filter((r) => r !== "..")) {
    added.push(...(await readYamlDocs(path.join(namespacedDir, resource))));
  }
  docs.push(...added);
  const removed: Doc[] = [];
  let watched: string[] = [];
  for (const { patch } of k.patches) {
    const target = parse(patch) as Doc & { $patch?: string; data?: Record<string, string> };
    const same = (d: Doc) =>
      d.kind === target.kind &&
      d.metadata.name === target.metadata.name &&
      d.metadata.namespace === target.metadata.namespace;
    if (!docs.some(same))
      throw new Error(
        `the namespaced overlay patches ${target.kind} ${target.metadata.name}, which the release lacks`,
      );
    if (target.$patch === "delete") {
      removed.push(...docs.filter(same));
      docs = docs.filter((d) => !same(d));
    }
    const setting = target.data?.["watch-namespaces"];
    if (target.kind === "ConfigMap" && setting !== undefined)
      watched = setting.split(",").map((n) => n.trim());
  }
  return { docs, added, removed, watched };
}

/**
 * What switching an installed release to the namespaced mode for `namespaces` takes, as an
 * operator's copy of the overlay would do it: the objects the overlay adds, with its per-namespace
 * RoleBindings made for `namespaces` instead of the examples it lists; the objects it deletes.
 */
export async function namespacedSwitch(
  namespaces: string[],
): Promise<{ apply: Record<string, unknown>[]; remove: { kind: string; name: string }[] }> {
  const { added, removed } = await namespacedInstall();
  const perNamespace = tenantBindings(added);
  const [template] = perNamespace;
  if (!template) throw new Error("the namespaced overlay binds no tenant namespace");
  const bindings = namespaces.map((ns) => ({
    ...template,
    metadata: { ...template.metadata, namespace: ns },
  }));
  return {
    apply: [...added.filter((d) => !perNamespace.includes(d)), ...bindings] as unknown as Record<
      string,
      unknown
    >[],
    remove: removed.map((d) => ({ kind: d.kind, name: d.metadata.name })),
  };
}

const boundTo = (d: Doc) =>
  (d.subjects ?? []).some(
    (s) => s.kind === "ServiceAccount" && s.name === serviceAccount && s.namespace === releaseNamespace,
  );

/** RoleBindings of the controller in namespaces other than its own and Tekton's. */
const tenantBindings = (docs: Doc[]) =>
  docs.filter(
    (d) =>
      d.kind === "RoleBinding" &&
      d.metadata.namespace !== releaseNamespace &&
      d.metadata.namespace !== releaseTektonNamespace &&
      boundTo(d),
  );

function controllerRbac(docs: Doc[]): ControllerRbac {
  const roleOf = (kind: string, name: string, namespace?: string) => {
    const role = docs.find(
      (d) => d.kind === kind && d.metadata.name === name && d.metadata.namespace === namespace,
    );
    if (!role?.rules) throw new Error(`the install binds ${kind} ${name}, which it does not define`);
    return { name, rules: role.rules };
  };
  const tenants = tenantBindings(docs);
  return {
    clusterRoles: docs
      .filter((d) => d.kind === "ClusterRoleBinding" && boundTo(d))
      .map((b) => roleOf("ClusterRole", b.roleRef?.name ?? "")),
    roles: docs
      .filter((d) => d.kind === "RoleBinding" && d.metadata.namespace === releaseNamespace && boundTo(d))
      .map((b) =>
        b.roleRef?.kind === "ClusterRole"
          ? roleOf("ClusterRole", b.roleRef.name)
          : roleOf("Role", b.roleRef?.name ?? "", releaseNamespace),
      ),
    tektonRoles: docs
      .filter(
        (d) => d.kind === "RoleBinding" && d.metadata.namespace === releaseTektonNamespace && boundTo(d),
      )
      .map((b) => roleOf("Role", b.roleRef?.name ?? "", releaseTektonNamespace)),
    // Every tenant namespace gets the same ClusterRoles; the test binds them in its one namespace.
    tenantRoles: [...new Set(tenants.map((b) => b.roleRef?.name ?? ""))].map((name) => {
      if (tenants.some((b) => b.roleRef?.name === name && b.roleRef.kind !== "ClusterRole")) {
        throw new Error(`RoleBinding to ${name} in a tenant namespace must name a ClusterRole`);
      }
      return roleOf("ClusterRole", name);
    }),
  };
}

/** One verb on one resource in one of the controller's roles: the unit the minimality tests remove. */
export interface Permission {
  role: string;
  group: string;
  resource: string;
  verb: string;
}

export const describePermission = (p: Permission) =>
  `${p.verb} ${p.group ? `${p.group}/` : ""}${p.resource} (${p.role})`;

export function permissions(rbac: ControllerRbac): Permission[] {
  const out: Permission[] = [];
  for (const role of [...rbac.clusterRoles, ...rbac.roles, ...rbac.tenantRoles, ...rbac.tektonRoles]) {
    for (const rule of role.rules) {
      for (const group of rule.apiGroups) {
        for (const resource of rule.resources) {
          for (const verb of rule.verbs) out.push({ role: role.name, group, resource, verb });
        }
      }
    }
  }
  return out;
}

/** The RBAC with one permission taken away (from whichever rule of that role grants it). */
export function without(rbac: ControllerRbac, p: Permission): ControllerRbac {
  const strip = (role: { name: string; rules: Rule[] }) => {
    if (role.name !== p.role) return role;
    const rules = role.rules.flatMap((rule): Rule[] => {
      if (!rule.apiGroups.includes(p.group) || !rule.resources.includes(p.resource)) return [rule];
      if (!rule.verbs.includes(p.verb)) return [rule];
      // Split the rule so only this resource loses this verb.
      const others = rule.resources.filter((r) => r !== p.resource);
      const verbs = rule.verbs.filter((v) => v !== p.verb);
      return [
        ...(others.length > 0 ? [{ ...rule, resources: others }] : []),
        ...(verbs.length > 0 ? [{ ...rule, resources: [p.resource], verbs }] : []),
      ];
    });
    return { ...role, rules };
  };
  return {
    clusterRoles: rbac.clusterRoles.map(strip),
    roles: rbac.roles.map(strip),
    tenantRoles: rbac.tenantRoles.map(strip),
    tektonRoles: rbac.tektonRoles.map(strip),
  };
}

export interface RbacWorld {
  cluster: TestCluster;
  ns: string;
  controllerNs: string;
  peer: AwsPeer;
  issuer: string;
  policyName: string;
  /** A kubeconfig authenticating as the controller's ServiceAccount. */
  kubeconfig: string;
  kubelet: TestKubelet;
  controller?: ControllerProcess;
  startController(): ControllerProcess;
  /** Stops the controller, kubelet and AWS peer and deletes the cluster-scoped objects. */
  stop(): Promise<void>;
  createRun(name: string, spec: Partial<CustomRunSpec>): Promise<void>;
  getRun(name: string): Promise<CustomRun | undefined>;
  cancelRun(name: string): Promise<void>;
  /** A ledger entry for a session that expired an hour ago, as the controller would have left it. */
  writeExpiredLedgerEntry(): Promise<void>;
  /** Merges settings into the configuration ConfigMap. */
  configure(data: Record<string, string>): Promise<void>;
  deleteRun(name: string): Promise<void>;
}

const runs = { group: "tekton.dev", version: "v1beta1", plural: "customruns" } as const;
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

/**
 * The step every scenario runs: proves it holds working AWS credentials, then waits if told to,
 * says its last words and exits with the code it is given.
 */
export const stepSpec = {
  image: "amazon/aws-cli",
  application: "payments",
  component: "api",
  params: [
    { name: "endpoint", description: "The AWS peer." },
    { name: "hold", description: "Seconds to keep running after the AWS call.", default: "0" },
    { name: "exit", description: "The step's exit code.", default: "0" },
  ],
  results: [{ name: "caller" }],
  env: [
    { name: "AWS_ENDPOINT_URL", value: "$(params.endpoint)" },
    { name: "HOLD", value: "$(params.hold)" },
    { name: "EXIT", value: "$(params.exit)" },
  ],
  script: [
    "set -e",
    'curl -s -m 10 --aws-sigv4 "aws:amz:eu-west-1:sts" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \\',
    '  -H "x-amz-security-token: $AWS_SESSION_TOKEN" -d "Action=GetCallerIdentity&Version=2011-06-15" \\',
    "  \"$AWS_ENDPOINT_URL\" | sed -n 's:.*<Arn>\\(.*\\)</Arn>.*:\\1:p' > $(results.caller.path)",
    "test -s $(results.caller.path)",
    'sleep "$HOLD"',
    'echo "the step\'s last words"',
    'exit "$EXIT"',
  ].join("\n"),
};

type Cleanup = () => Promise<unknown>;
const worlds = new Set<Cleanup[]>();
async function cleanUp(cleanups: Cleanup[]): Promise<void> {
  worlds.delete(cleanups);
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
}
after(async () => {
  for (const cleanups of [...worlds]) await cleanUp(cleanups);
});

const ignoreNotFound = (err: unknown) => {
  if (!(err instanceof ApiException && err.code === 404)) throw err;
};

export async function startRbacWorld(
  rbac: ControllerRbac,
  opts: { emptyKeySecret?: boolean } = {},
): Promise<RbacWorld> {
  const cleanups: Cleanup[] = [];
  worlds.add(cleanups);
  const cluster = await testCluster();
  const { kc, objects } = cluster;
  const core = kc.makeApiClient(CoreV1Api);
  const rbacApi = kc.makeApiClient(RbacAuthorizationV1Api);
  const suffix = randomBytes(4).toString("hex");
  const ns = await testNamespace(cluster, "rbac-run");
  const controllerNs = await testNamespace(cluster, "rbac-ctl");
  // Tekton's namespace of this world, with a config-defaults for the controller to read.
  const tektonNs = await testNamespace(cluster, "rbac-tkn");
  await core.createNamespacedConfigMap({
    namespace: tektonNs,
    body: { metadata: { name: "config-defaults" }, data: { "default-maximum-resolution-timeout": "1m" } },
  });
  // A label only a policy's namespaceSelector reads, so the controller must get the namespace.
  const selectorLabel = { "scopedstep.dev/rbac-test": suffix };
  await core.patchNamespace({ name: ns, body: { metadata: { labels: selectorLabel } } }, mergePatch);
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: "default" } } });

  // The release's RBAC, moved to this test's namespaces; cluster-scoped names made unique.
  await core.createNamespacedServiceAccount({
    namespace: controllerNs,
    body: { metadata: { name: serviceAccount }, automountServiceAccountToken: true },
  });
  const subject = { kind: "ServiceAccount", name: serviceAccount, namespace: controllerNs };
  for (const role of rbac.clusterRoles) {
    const name = `${role.name}-${suffix}`;
    await rbacApi.createClusterRole({ body: { metadata: { name }, rules: role.rules } });
    await rbacApi.createClusterRoleBinding({
      body: {
        metadata: { name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
        subjects: [subject],
      },
    });
    cleanups.push(
      () => rbacApi.deleteClusterRoleBinding({ name }).catch(ignoreNotFound),
      () => rbacApi.deleteClusterRole({ name }).catch(ignoreNotFound),
    );
  }
  for (const role of rbac.tenantRoles) {
    const name = `${role.name}-${suffix}`;
    await rbacApi.createClusterRole({ body: { metadata: { name }, rules: role.rules } });
    await rbacApi.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: role.name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
        subjects: [subject],
      },
    });
    cleanups.push(() => rbacApi.deleteClusterRole({ name }).catch(ignoreNotFound));
  }
  // The release's Roles, each bound to the controller in its namespace: its own, and Tekton's.
  for (const [namespace, roles] of [
    [controllerNs, rbac.roles],
    [tektonNs, rbac.tektonRoles],
  ] as const) {
    for (const role of roles) {
      await rbacApi.createNamespacedRole({
        namespace,
        body: { metadata: { name: role.name }, rules: role.rules },
      });
      await rbacApi.createNamespacedRoleBinding({
        namespace,
        body: {
          metadata: { name: role.name },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.name },
          subjects: [subject],
        },
      });
    }
  }
  // The release ships the configuration ConfigMap; the controller reads it at start and watches it.
  await core.createNamespacedConfigMap({
    namespace: controllerNs,
    body: { metadata: { name: "scoped-step-config" }, data: { concurrency: "8" } },
  });
  if (opts.emptyKeySecret) {
    // As an operator may create it, to set labels or RBAC first; the controller fills it in.
    await core.createNamespacedSecret({
      namespace: controllerNs,
      body: { metadata: { name: "scoped-step-signing-keys" }, type: "Opaque" },
    });
  }

  const token = await core.createNamespacedServiceAccountToken({
    namespace: controllerNs,
    name: serviceAccount,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const server = kc.getCurrentCluster();
  if (!token.status?.token || !server?.caData) throw new Error("no ServiceAccount token or cluster CA");
  const dir = await mkdtemp(path.join(os.tmpdir(), "rbac-"));
  const kubeconfig = path.join(dir, "kubeconfig");
  await writeFile(
    kubeconfig,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: local",
      "  cluster:",
      `    server: ${server.server}`,
      `    certificate-authority-data: ${server.caData}`,
      "users:",
      `- name: ${serviceAccount}`,
      "  user:",
      `    token: ${token.status.token}`,
      "contexts:",
      "- name: local",
      `  context: {cluster: local, user: ${serviceAccount}, namespace: ${controllerNs}}`,
      "current-context: local",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );

  // AWS: a role this namespace's steps may assume through the controller's issuer.
  const peer = await startAwsPeer({ accountId: account });
  cleanups.push(() => peer.stop());
  const trusted = await registerIssuer(peer);
  const { issuer, port } = trusted;
  createTrustingRole(peer, trusted, { arn: roleArn, subjectLike: `system:scoped-step:${ns}:payments:*` });

  const policyName = `rbac-${suffix}`;
  await objects.createClusterCustomObject({
    group: "scopedstep.dev",
    version: "v1alpha1",
    plural: "scopedsteppolicies",
    body: {
      apiVersion: "scopedstep.dev/v1alpha1",
      kind: "ScopedStepPolicy",
      metadata: { name: policyName },
      spec: {
        namespaces: [ns],
        namespaceSelector: { matchLabels: selectorLabel },
        aws: { allowedRoleArns: [roleArn], maxSessionDuration: 900 },
        revocation: "deny-policy",
      },
    },
  });
  cleanups.push(() =>
    objects
      .deleteClusterCustomObject({
        group: "scopedstep.dev",
        version: "v1alpha1",
        plural: "scopedsteppolicies",
        name: policyName,
      })
      .catch(ignoreNotFound),
  );
  await createApplication(objects, ns, "payments", [
    identityComponent({ aws: { roleArn, region: "eu-west-1" } }),
  ]);
  await objects.createNamespacedCustomObject({
    group: "scopedstep.dev",
    version: "v1alpha1",
    namespace: ns,
    plural: "scopedsteps",
    body: {
      apiVersion: "scopedstep.dev/v1alpha1",
      kind: "ScopedStep",
      metadata: { name: "whoami" },
      spec: stepSpec,
    },
  });

  const kubelet = await startTestKubelet(kc, { namespace: ns });
  cleanups.push(() => kubelet.stop());

  const world: RbacWorld = {
    cluster,
    ns,
    controllerNs,
    peer,
    issuer,
    policyName,
    kubeconfig,
    kubelet,
    startController() {
      const c = startController({
        kubeconfig,
        namespace: controllerNs,
        watchNamespaces: [ns],
        flags: [
          "--credentials=aws",
          `--issuer-url=${issuer}`,
          "--allow-insecure-issuer=true",
          `--http-port=${port}`,
          `--sts-endpoint=${peer.endpoint}`,
          `--iam-endpoint=${peer.endpoint}`,
          "--aws-region=eu-west-1",
          `--tekton-namespace=${tektonNs}`,
        ],
        // The controller's own AWS credentials serve IAM only (deny-policy revocation).
        env: {
          AWS_ACCESS_KEY_ID: peer.adminCredentials.accessKeyId,
          AWS_SECRET_ACCESS_KEY: peer.adminCredentials.secretAccessKey,
          AWS_EC2_METADATA_DISABLED: "true",
        },
      });
      world.controller = c;
      cleanups.push(() => c.kill("SIGKILL"));
      return c;
    },
    stop: () => cleanUp(cleanups),
    async createRun(name, spec) {
      await objects.createNamespacedCustomObject({
        ...runs,
        namespace: ns,
        body: {
          apiVersion: "tekton.dev/v1beta1",
          kind: "CustomRun",
          metadata: { name },
          spec: {
            customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", name: "whoami" },
            params: [{ name: "endpoint", value: peer.endpoint }],
            ...spec,
          },
        },
      });
    },
    async getRun(name) {
      try {
        return (await objects.getNamespacedCustomObject({ ...runs, namespace: ns, name })) as CustomRun;
      } catch (err) {
        ignoreNotFound(err);
        return undefined;
      }
    },
    async cancelRun(name) {
      await objects.patchNamespacedCustomObject(
        {
          ...runs,
          namespace: ns,
          name,
          body: { spec: { status: "RunCancelled", statusMessage: "by the test" } },
        },
        mergePatch,
      );
    },
    async writeExpiredLedgerEntry() {
      await writeExpiredLedgerEntry(kc, controllerNs, ns);
    },
    async configure(data) {
      await core.patchNamespacedConfigMap(
        { namespace: controllerNs, name: "scoped-step-config", body: { data } },
        mergePatch,
      );
    },
    async deleteRun(name) {
      await objects.deleteNamespacedCustomObject({ ...runs, namespace: ns, name });
    },
  };
  return world;
}

/** Waits for the run to reach a condition reason (Running, Succeeded, ...). */
export function waitForReason(w: RbacWorld, name: string, reason: string, timeoutMs = 30_000) {
  return eventually(
    `run ${name} to be ${reason}`,
    async () => {
      const run = await w.getRun(name);
      return run?.status?.conditions?.find((c) => c.type === "Succeeded")?.reason === reason
        ? run
        : undefined;
    },
    { timeoutMs },
  );
}

/** Waits for the run's condition message to match. */
export function waitForMessage(w: RbacWorld, name: string, message: RegExp, timeoutMs = 30_000) {
  return eventually(
    `run ${name}'s message to match ${String(message)}`,
    async () => {
      const run = await w.getRun(name);
      return message.test(run?.status?.conditions?.find((c) => c.type === "Succeeded")?.message ?? "")
        ? run
        : undefined;
    },
    { timeoutMs },
  );
}
