// The namespace user the product must hold its ground against: a person bound to the built-in
// `edit` ClusterRole in their own namespace, as a platform team grants pipeline authors. Tests
// reach the API server as that user by impersonation, so the API server's own RBAC decides what the
// tenant can do, never the test.
//
// `edit` is an aggregated role. kube-controller-manager's aggregation controller fills its rules
// from every ClusterRole labelled `rbac.authorization.k8s.io/aggregate-to-edit`. Where no
// controller-manager runs, the harness does the same union once the labelled roles are in place:
// Kubernetes' own (`system:aggregate-to-edit`), Tekton's (from its module's config/), this
// project's (catalog/controller/0.1/aggregate-roles.yaml) and one for KubeVela Applications, which
// KubeVela's chart leaves to the operator.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  ApiException,
  AuthorizationV1Api,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1ClusterRole,
  type V1PolicyRule,
} from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { moduleDir, tekton } from "../../hack/cluster/upstream.ts";
import { pooledConnections } from "../../controller/kubeconfig.ts";
import type { TestCluster } from "./cluster.ts";
import { eventually } from "./wait.ts";

const aggregateLabel = "rbac.authorization.k8s.io/aggregate-to-edit";
const ownRoles = fileURLToPath(new URL("../../catalog/controller/0.1/aggregate-roles.yaml", import.meta.url));

const applicationsRole: V1ClusterRole = {
  metadata: { name: "kubevela-applications-aggregate-edit", labels: { [aggregateLabel]: "true" } },
  rules: [
    {
      apiGroups: ["core.oam.dev"],
      resources: ["applications"],
      verbs: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    },
  ],
};

async function clusterRolesFrom(file: string): Promise<V1ClusterRole[]> {
  return parseAllDocuments(await readFile(file, "utf8"))
    .map((d) => d.toJSON() as V1ClusterRole & { kind?: string })
    .filter((d) => d.kind === "ClusterRole");
}

async function apply(rbac: RbacAuthorizationV1Api, role: V1ClusterRole): Promise<void> {
  const name = role.metadata?.name ?? "";
  try {
    await rbac.createClusterRole({ body: role });
  } catch (err) {
    if (!(err instanceof ApiException) || err.code !== 409) throw err;
    const current = await rbac.readClusterRole({ name });
    current.rules = role.rules ?? [];
    await rbac.replaceClusterRole({ name, body: current });
  }
}

/** Fills `edit` from the roles aggregated into it, as the aggregation controller would. */
async function aggregateEdit(rbac: RbacAuthorizationV1Api): Promise<void> {
  const sources = await rbac.listClusterRole({ labelSelector: `${aggregateLabel}=true` });
  const rules: V1PolicyRule[] = [];
  const seen = new Set<string>();
  for (const role of sources.items.sort((a, b) =>
    (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? ""),
  )) {
    for (const rule of role.rules ?? []) {
      const key = JSON.stringify(rule);
      if (!seen.has(key)) rules.push(rule);
      seen.add(key);
    }
  }
  for (;;) {
    const edit = await rbac.readClusterRole({ name: "edit" });
    edit.rules = rules;
    try {
      await rbac.replaceClusterRole({ name: "edit", body: edit });
      return;
    } catch (err) {
      if (!(err instanceof ApiException) || err.code !== 409) throw err;
    }
  }
}

let installed: Promise<void> | undefined;

async function installEditRole(cluster: TestCluster): Promise<void> {
  const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
  const tektonRoles = await clusterRolesFrom(
    path.join(await moduleDir(tekton), "config", "clusterrole-aggregate-edit.yaml"),
  );
  for (const role of [...tektonRoles, ...(await clusterRolesFrom(ownRoles)), applicationsRole])
    await apply(rbac, role);
  await aggregateEdit(rbac);
}

/** The HTTP status a request ends with: 200 when it succeeds, the API server's code otherwise. */
export async function statusOf(op: Promise<unknown>): Promise<number> {
  try {
    await op;
    return 200;
  } catch (err) {
    if (err instanceof ApiException) return err.code;
    throw err;
  }
}

/** The user name a namespace's tenant is known by to the API server. */
export const tenantUser = (namespace: string): string => `tenant:${namespace}`;

/**
 * A KubeConfig that acts as the namespace's tenant: the admin's credentials, impersonating a user
 * whose only grant is the `edit` ClusterRole bound in `namespace`.
 */
export async function tenantConfig(cluster: TestCluster, namespace: string): Promise<KubeConfig> {
  installed ??= installEditRole(cluster);
  await installed;
  const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
  const user = tenantUser(namespace);
  try {
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: "tenant-edit" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "edit" },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: user }],
      },
    });
  } catch (err) {
    if (!(err instanceof ApiException) || err.code !== 409) throw err;
  }
  const kc = new KubeConfig();
  kc.loadFromString(cluster.kc.exportConfig());
  const current = kc.getCurrentUser();
  if (!current) throw new Error("the admin kubeconfig has no current user");
  kc.users = kc.users.map((u) => (u.name === current.name ? { ...u, impersonateUser: user } : u));
  await untilGranted(kc, namespace);
  return pooledConnections(kc);
}

/** What the tenant must be able to write; the API server's authorizer sees new bindings a moment late. */
const tenantWrites: [group: string, resource: string][] = [
  ["", "secrets"],
  ["", "pods"],
  ["tekton.dev", "customruns"],
  ["core.oam.dev", "applications"],
  ["scopedstep.dev", "scopedsteps"],
];

async function untilGranted(kc: KubeConfig, namespace: string): Promise<void> {
  const authz = kc.makeApiClient(AuthorizationV1Api);
  for (const [group, resource] of tenantWrites) {
    await eventually(
      `the tenant of ${namespace} to be allowed to create ${resource}`,
      async () => {
        const review = await authz.createSelfSubjectAccessReview({
          body: { spec: { resourceAttributes: { namespace, group, resource, verb: "create" } } },
        });
        return review.status?.allowed ? true : undefined;
      },
      { timeoutMs: 120_000 },
    );
  }
}
