// Installs CRDs read from upstream modules (and from this repo) and waits until each is served.
import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  loadAllYaml,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from "@kubernetes/client-node";
import { moduleDir, type UpstreamModule } from "./upstream.ts";
import { waitFor } from "./processes.ts";

/**
 * No conversion webhook runs locally, so a CRD keeps only its storage version and loses the
 * webhook stanza; objects are then stored and served exactly as written.
 */
export function localCrd(crd: V1CustomResourceDefinition): V1CustomResourceDefinition {
  const copy = structuredClone(crd);
  delete copy.spec.conversion;
  const stored = copy.spec.versions.filter((v) => v.storage);
  if (stored.length === 1) copy.spec.versions = stored;
  return copy;
}

export async function readCrds(files: string[]): Promise<V1CustomResourceDefinition[]> {
  const crds: V1CustomResourceDefinition[] = [];
  for (const file of files) {
    // loadAllYaml maps wire names (x-kubernetes-*) onto the typed model the API client serializes.
    for (const obj of loadAllYaml(await readFile(file, "utf8")) as (V1CustomResourceDefinition | null)[]) {
      if (obj?.kind === "CustomResourceDefinition") crds.push(obj);
    }
  }
  return crds;
}

export async function upstreamCrdFiles(mod: UpstreamModule): Promise<string[]> {
  const dir = await moduleDir(mod);
  return mod.crdFiles.map((f) => path.join(dir, f));
}

export async function installCrds(kc: KubeConfig, crds: V1CustomResourceDefinition[]): Promise<void> {
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  const objects = kc.makeApiClient(CustomObjectsApi);
  await Promise.all(
    crds.map(async (raw) => {
      const crd = localCrd(raw);
      const name = crd.metadata?.name ?? "";
      await ext.createCustomResourceDefinition({ body: crd });
      await waitFor(
        `CRD ${name} Established`,
        async () => {
          const got = await ext.readCustomResourceDefinition({ name });
          return (got.status?.conditions ?? []).some((c) => c.type === "Established" && c.status === "True");
        },
        { intervalMs: 100 },
      );
      const version = crd.spec.versions.find((v) => v.served)?.name ?? "";
      await waitFor(
        `CRD ${name} served`,
        async () => {
          await objects.listClusterCustomObject({
            group: crd.spec.group,
            version,
            plural: crd.spec.names.plural,
          });
          return true;
        },
        { intervalMs: 100 },
      );
    }),
  );
}
