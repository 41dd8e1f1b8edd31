// Reading the catalog as the tests see it: every YAML document under catalog/, with the file it
// came from, and stand-in CRDs for the Prometheus Operator kinds the local control plane lacks.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  ApiextensionsV1Api,
  loadAllYaml,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { installCrds } from "../../hack/cluster/crds.ts";
import type { ApiObject } from "./raw-api.ts";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
export const catalogRoot = path.join(repoRoot, "catalog");

/** Catalog files relative to the repository root, sorted; kustomization.yaml files are not objects. */
export async function catalogFiles(ext: string): Promise<string[]> {
  const entries = await readdir(catalogRoot, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith(ext) && e.name !== "kustomization.yaml")
    .map((e) => path.relative(repoRoot, path.join(e.parentPath, e.name)))
    .sort();
}

export async function readDocs(file: string): Promise<ApiObject[]> {
  const stream = parseAllDocuments(await readFile(path.join(repoRoot, file), "utf8"));
  const docs = Array.isArray(stream) ? stream : [];
  for (const d of docs) if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]?.message ?? ""}`);
  return docs.map((d) => d.toJS() as ApiObject | null).filter((d): d is ApiObject => d !== null);
}

/** The ```yaml blocks of a Markdown file, each with the heading it sits under. */
export async function yamlBlocks(file: string): Promise<{ heading: string; text: string }[]> {
  const text = await readFile(path.join(repoRoot, file), "utf8");
  const blocks: { heading: string; text: string }[] = [];
  let heading = "";
  // Fences first: a `# ...` line inside a shell example is no heading.
  for (const m of text.matchAll(/^```(\w*)\n([\s\S]*?)^```$|^(#+ .+)$/gm)) {
    if (m[3]) heading = m[3].replace(/^#+ /, "");
    else if (m[1] === "yaml") blocks.push({ heading, text: m[2] ?? "" });
  }
  return blocks;
}

export async function catalogDocs(): Promise<{ file: string; doc: ApiObject }[]> {
  const out: { file: string; doc: ApiObject }[] = [];
  for (const file of await catalogFiles(".yaml")) {
    for (const doc of await readDocs(file)) out.push({ file, doc });
  }
  return out;
}

// The Prometheus Operator's CRDs are not installed here. These stand-ins know the fields the
// catalog uses and keep everything else (x-kubernetes-preserve-unknown-fields), so a ServiceMonitor
// or PrometheusRule is checked for shape (required fields, types, durations) though not for every
// field the real CRDs define.
const duration =
  "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$";
const standInCrds = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: { kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
              required: [selector, endpoints]
              properties:
                selector: { type: object, x-kubernetes-preserve-unknown-fields: true }
                namespaceSelector:
                  type: object
                  properties:
                    any: { type: boolean }
                    matchNames: { type: array, items: { type: string } }
                endpoints:
                  type: array
                  minItems: 1
                  items:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
                    properties:
                      port: { type: string }
                      path: { type: string }
                      interval: { type: string, pattern: "${duration}" }
                      scrapeTimeout: { type: string, pattern: "${duration}" }
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: { kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [groups]
              properties:
                groups:
                  type: array
                  items:
                    type: object
                    required: [name, rules]
                    properties:
                      name: { type: string, minLength: 1 }
                      interval: { type: string, pattern: "${duration}" }
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: { type: string }
                            record: { type: string }
                            expr: { type: string, minLength: 1 }
                            for: { type: string, pattern: "${duration}" }
                            labels: { type: object, additionalProperties: { type: string } }
                            annotations: { type: object, additionalProperties: { type: string } }
`;

/** Installs the stand-in monitoring.coreos.com CRDs unless they (or the real ones) are there. */
export async function installMonitoringStandIns(kc: KubeConfig): Promise<void> {
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  const existing = new Set(
    (await ext.listCustomResourceDefinition()).items.map((crd) => crd.metadata?.name ?? ""),
  );
  const crds = (loadAllYaml(standInCrds) as V1CustomResourceDefinition[]).filter(
    (crd) => !existing.has(crd.metadata?.name ?? ""),
  );
  await installCrds(kc, crds);
}
