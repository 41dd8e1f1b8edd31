// Claims on the cluster with a real node, bound as a provisioner binds them: each Pending claim of
// the storage class, or of no class (as a claim written for a cluster's default class is, here where
// no default class exists), gets a hostPath volume of its own (a directory under the cluster's
// folder), reserved for it by claimRef, and the controller-manager's binder does the rest.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { NodeTestCluster } from "./cluster.ts";

export const hostStorageClass = "host";

/** Provisions until stopped; `volumes` lists the directories it made, by claim name. */
export function provisionHostPathClaims(
  c: NodeTestCluster,
  namespace: string,
): { stop: () => void; volumes: Map<string, string> } {
  const volumes = new Map<string, string>();
  let stopped = false;
  const pass = async () => {
    const claims = await c.core.listNamespacedPersistentVolumeClaim({ namespace });
    for (const claim of claims.items) {
      const name = claim.metadata?.name ?? "";
      const storageClassName = claim.spec?.storageClassName;
      if (claim.status?.phase !== "Pending" || ![hostStorageClass, undefined].includes(storageClassName))
        continue;
      if (volumes.has(name)) continue;
      const dir = path.join(c.dir, "volumes", namespace, name);
      await mkdir(dir, { recursive: true });
      await c.core.createPersistentVolume({
        body: {
          metadata: { name: `pv-${namespace}-${name}`.slice(0, 253) },
          spec: {
            capacity: { storage: claim.spec?.resources?.requests?.storage ?? "1Gi" },
            accessModes: claim.spec?.accessModes ?? ["ReadWriteOnce"],
            ...(storageClassName ? { storageClassName } : {}),
            hostPath: { path: dir, type: "Directory" },
            claimRef: { namespace, name, uid: claim.metadata?.uid },
          },
        },
      });
      volumes.set(name, dir);
    }
  };
  void (async () => {
    while (!stopped) {
      await pass().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  return {
    stop: () => {
      stopped = true;
    },
    volumes,
  };
}
