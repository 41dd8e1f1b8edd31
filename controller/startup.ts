// What an operator sees when the controller cannot start: the APIs it needs are checked through
// discovery (no extra RBAC) before anything watches them, and every start-up failure is written
// both to the log and as an Event on the controller's own Pod, where `kubectl describe pod` and
// `kubectl get events` show it next to the CrashLoopBackOff.
import { randomBytes } from "node:crypto";
import { KubeError, resourcePath, type Kube } from "./kube-client.ts";

export interface RequiredApi {
  group: string;
  version: string;
  resource: string;
  /** The CustomResourceDefinition that serves it. */
  crd: string;
  /** Where an operator gets it. */
  install: string;
}

export const requiredApis: RequiredApi[] = [
  {
    group: "tekton.dev",
    version: "v1beta1",
    resource: "customruns",
    crd: "customruns.tekton.dev",
    install: "install Tekton Pipelines v0.62 or later (https://tekton.dev/docs/installation/pipelines/)",
  },
  {
    group: "core.oam.dev",
    version: "v1beta1",
    resource: "applications",
    crd: "applications.core.oam.dev",
    install: "install KubeVela (vela install), or at least its Application CRD",
  },
  {
    group: "scopedstep.dev",
    version: "v1alpha1",
    resource: "scopedsteps",
    crd: "scopedsteps.scopedstep.dev",
    install: "apply catalog/release.yaml (or catalog/crds/)",
  },
  {
    group: "scopedstep.dev",
    version: "v1alpha1",
    resource: "scopedsteppolicies",
    crd: "scopedsteppolicies.scopedstep.dev",
    install: "apply catalog/release.yaml (or catalog/crds/)",
  },
];

/** The required APIs the API server does not serve, read from its discovery documents (all at once). */
export async function missingApis(
  kube: Kube,
  required: RequiredApi[] = requiredApis,
): Promise<RequiredApi[]> {
  const groupVersions = [...new Set(required.map((a) => `${a.group}/${a.version}`))];
  const served = new Map(
    await Promise.all(
      groupVersions.map(async (gv) => {
        try {
          const list = await kube.request<{ resources?: { name: string }[] }>("GET", `/apis/${gv}`);
          return [gv, new Set((list.resources ?? []).map((r) => r.name))] as const;
        } catch (err) {
          if (!(err instanceof KubeError && err.statusCode === 404)) throw err;
          return [gv, undefined] as const;
        }
      }),
    ),
  );
  return required.filter((a) => !served.get(`${a.group}/${a.version}`)?.has(a.resource));
}

export function missingApisMessage(missing: RequiredApi[]): string {
  return missing
    .map(
      (a) =>
        `the API server does not serve ${a.group}/${a.version} ${a.resource} (CRD ${a.crd}): ${a.install}`,
    )
    .join("; ");
}

/**
 * A Warning Event on this replica's Pod (POD_NAME and POD_UID from the downward API, as the
 * release sets them). Best effort: outside a Pod, or without the right to write it, nothing.
 */
export async function podEvent(
  kube: Kube,
  namespace: string,
  reason: string,
  message: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<boolean> {
  const name = env.POD_NAME;
  if (!name) return false;
  const now = new Date();
  const body = {
    metadata: { name: `${name}.${randomBytes(8).toString("hex")}`, namespace },
    involvedObject: {
      apiVersion: "v1",
      kind: "Pod",
      name,
      namespace,
      ...(env.POD_UID ? { uid: env.POD_UID } : {}),
    },
    type: "Warning",
    reason,
    message: message.slice(0, 1024),
    source: { component: "scoped-step-controller", host: name },
    reportingComponent: "scoped-step-controller",
    reportingInstance: name,
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
  return kube
    .request("POST", resourcePath({ apiVersion: "v1", plural: "events" }, namespace), { body })
    .then(() => true)
    .catch(() => false);
}
