// Reading the catalog as the tests see it: every YAML document under catalog/, with the file it
// came from, and the Prometheus Operator's CRDs for the monitoring kinds the catalog uses.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ApiextensionsV1Api, type KubeConfig } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";
import { installCrds, readCrds, upstreamCrdFiles } from "../../hack/cluster/crds.ts";
import { prometheusOperator } from "../../hack/cluster/upstream.ts";
import { chartDir } from "../../hack/helm-chart.ts";
import type { ApiObject } from "./raw-api.ts";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
export const catalogRoot = path.join(repoRoot, "catalog");

/** Catalog files relative to the repository root, sorted; kustomization.yaml files are not objects. */
export async function catalogFiles(ext: string): Promise<string[]> {
  const entries = await readdir(catalogRoot, { recursive: true, withFileTypes: true });
  return (
    entries
      // kustomization.yaml is kustomize's; *_test.yaml are promtool's rule tests.
      .filter(
        (e) =>
          e.isFile() &&
          e.name.endsWith(ext) &&
          e.name !== "kustomization.yaml" &&
          !e.name.endsWith("_test.yaml"),
      )
      .map((e) => path.relative(repoRoot, path.join(e.parentPath, e.name)))
      // The Helm chart's templates are YAML once helm renders them: test/integration/helm.test.ts.
      .filter((f) => !f.startsWith(`${chartDir}/`))
      .sort()
  );
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

/**
 * Installs the Prometheus Operator's CRDs for the kinds the catalog uses, from the operator's own
 * module, unless they are there already.
 */
export async function installMonitoringCrds(kc: KubeConfig): Promise<void> {
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  const existing = new Set(
    (await ext.listCustomResourceDefinition()).items.map((crd) => crd.metadata?.name ?? ""),
  );
  const crds = (await readCrds(await upstreamCrdFiles(prometheusOperator))).filter(
    (crd) => !existing.has(crd.metadata?.name ?? ""),
  );
  await installCrds(kc, crds);
}
