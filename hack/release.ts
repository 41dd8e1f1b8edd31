// Files derived from the catalog's sources and from code, written by `make release`:
//   - catalog/release.yaml: namespace, CRDs and controller, in apply order, from the controller's
//     kustomization.yaml (the same list `kubectl apply -k` reads);
//   - catalog/release-monitoring.yaml: ServiceMonitor, PrometheusRule and the Grafana dashboard,
//     from monitoring/kustomization.yaml (they need the Prometheus Operator's CRDs);
//   - catalog/helm/scoped-step: the Helm chart that renders release.yaml's objects (hack/helm-chart.ts);
//   - next to each catalog ScopedStep, its packaging as a Tekton Task (<name>.task.yaml), which
//     every Tekton resolver serves, the cluster resolver included (tasks/scoped-step/packaged-task.ts);
//   - the scoped-identity TraitDefinition, whose CUE parameter block is generated from the same
//     JSON Schema the controller validates traits with (traitSchema), and KubeVela's schema
//     ConfigMap for it, so `vela show scoped-identity` works without KubeVela compiling the CUE.
// Every object of a release carries app.kubernetes.io/version = package.json's version; comments
// in the sources are kept. test/integration/catalog.test.ts fails when a committed copy is stale.
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { format, getFileInfo, resolveConfig } from "prettier";
import { Document, parse, parseAllDocuments, stringify } from "yaml";
import { taskFromStep } from "../tasks/scoped-step/packaged-task.ts";
import { traitSchema } from "../tasks/scoped-step/schema.ts";
import { helmChartFiles, type SourceDocument } from "./helm-chart.ts";

export const repoRoot = fileURLToPath(new URL("..", import.meta.url));
export const controllerDir = "catalog/controller/0.1";
export const traitDir = "catalog/trait/scoped-identity/0.1";
const stepsDir = "catalog/scopedstep";
export const imageRepository = "ghcr.io/scoped-step/scoped-step";
/** The namespace every object of the releases lives in (the chart: the release's namespace). */
export const releaseNamespace = "scoped-step";

const versionLabel = "app.kubernetes.io/version";
/** No folding: long lines (CUE, PromQL, JSON) stay as written, multi-line text as literal blocks. */
const yamlOptions = { lineWidth: 0, blockQuote: "literal" } as const;

export interface GeneratedFile {
  /** Relative to the repository root. */
  path: string;
  content: string;
}

// --- the scoped-identity trait ------------------------------------------------------------------

type Schema = Record<string, unknown>;

/** Shown by `vela show`, which reads `// +usage=` comments in the CUE parameter block. */
const usage: Record<string, string> = {
  audience: "Audience (aud) of the OIDC token minted for the step",
  tokenExpirationSeconds:
    "Lifetime of the OIDC token, in seconds; default 600 (token-only: 300), never above the policy's maximum",
  delivery:
    "How the step gets its credentials: env (AWS_* variables), file (a shared credentials file) or token-only (the OIDC token alone, as a file)",
  aws: "The AWS role the step assumes with the token (STS AssumeRoleWithWebIdentity)",
  "aws.roleArn": "ARN of the IAM role; its trust policy must trust the issuer and the step's subject",
  "aws.sessionDuration": "STS session duration in seconds, at most the role's maximum",
  "aws.sessionPolicy":
    "Inline session policy (a JSON policy document, as an object or a string) that scopes the session below the role",
  "aws.policyArns": "Managed policies that scope the session below the role",
  "aws.region": "STS region; the controller's --aws-region when unset",
  "aws.sessionTags":
    "Session tags (principal tags) for the session, key to value; each must be allowed by the policy, and keys under scoped-step: are the controller's",
  "aws.transitiveTagKeys": "Session tag keys that survive role chaining",
};

/** The JSON Schema keywords the CUE translation understands; anything else is an error. */
const known = new Set([
  "type",
  "properties",
  "required",
  "additionalProperties",
  "default",
  "enum",
  "minLength",
  "maxLength",
  "pattern",
  "minimum",
  "maximum",
  "items",
  "minItems",
  "maxItems",
  "maxProperties",
  "anyOf",
]);

class CueWriter {
  readonly imports = new Set<string>();

  /** A CUE expression for a JSON Schema; `indent` is the depth of the enclosing field. */
  expression(schema: Schema, where: string, indent: number): string {
    for (const key of Object.keys(schema)) {
      if (!known.has(key))
        throw new Error(`${where}: JSON Schema keyword "${key}" has no CUE translation here`);
    }
    const value = this.constraint(schema, where, indent);
    if (schema.default === undefined) return value;
    if (schema.enum) {
      const values = (schema.enum as unknown[]).map(
        (v) => (v === schema.default ? "*" : "") + JSON.stringify(v),
      );
      return values.join(" | ");
    }
    const conjunction = value.includes(" & ") || value.includes(" | ");
    return `*${JSON.stringify(schema.default)} | ${conjunction ? `(${value})` : value}`;
  }

  private constraint(schema: Schema, where: string, indent: number): string {
    if (schema.anyOf) {
      return (schema.anyOf as Schema[])
        .map((s, i) => {
          const e = this.expression(s, `${where}.anyOf[${i}]`, indent);
          return e.includes(" & ") || e.includes(" | ") ? `(${e})` : e;
        })
        .join(" | ");
    }
    if (schema.enum) return (schema.enum as unknown[]).map((v) => JSON.stringify(v)).join(" | ");
    const parts: string[] = [];
    switch (schema.type) {
      case "string":
        parts.push("string");
        if (schema.minLength !== undefined) parts.push(this.call("strings", "MinRunes", schema.minLength));
        if (schema.maxLength !== undefined) parts.push(this.call("strings", "MaxRunes", schema.maxLength));
        if (schema.pattern !== undefined) parts.push(`=~${JSON.stringify(schema.pattern)}`);
        break;
      case "integer":
        parts.push("int");
        if (schema.minimum !== undefined) parts.push(`>=${JSON.stringify(schema.minimum)}`);
        if (schema.maximum !== undefined) parts.push(`<=${JSON.stringify(schema.maximum)}`);
        break;
      case "boolean":
        parts.push("bool");
        break;
      case "array":
        parts.push(
          `[...${this.wrap(this.expression((schema.items ?? {}) as Schema, `${where}[]`, indent))}]`,
        );
        if (schema.minItems !== undefined) parts.push(this.call("list", "MinItems", schema.minItems));
        if (schema.maxItems !== undefined) parts.push(this.call("list", "MaxItems", schema.maxItems));
        break;
      case "object":
        parts.push(this.struct(schema, where, indent));
        if (schema.maxProperties !== undefined) {
          parts.push(this.call("struct", "MaxFields", schema.maxProperties));
        }
        break;
      default:
        throw new Error(`${where}: type ${JSON.stringify(schema.type)} has no CUE translation here`);
    }
    return parts.join(" & ");
  }

  /** A struct: its properties as fields (optional unless required or defaulted), closed if the schema is. */
  struct(schema: Schema, where: string, indent: number): string {
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    const additional = schema.additionalProperties;
    const pad = "\t".repeat(indent + 1);
    const lines: string[] = [];
    for (const [name, property] of Object.entries(properties)) {
      const path = where ? `${where}.${name}` : name;
      if (usage[path]) lines.push(`${pad}// +usage=${usage[path]}`);
      const required = ((schema.required ?? []) as string[]).includes(name) || property.default !== undefined;
      const label = /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : JSON.stringify(name);
      lines.push(`${pad}${label}${required ? "" : "?"}: ${this.expression(property, path, indent + 1)}`);
    }
    if (additional && typeof additional === "object") {
      lines.push(`${pad}[string]: ${this.expression(additional as Schema, `${where}.*`, indent + 1)}`);
    }
    if (lines.length === 0) return additional === false ? "close({})" : "{...}";
    const body = `{\n${lines.join("\n")}\n${"\t".repeat(indent)}}`;
    return additional === false ? `close(${body})` : body;
  }

  private call(pkg: string, fn: string, arg: unknown): string {
    this.imports.add(pkg);
    return `${pkg}.${fn}(${String(arg)})`;
  }

  private wrap(expression: string): string {
    return expression.includes(" & ") || expression.includes(" | ") ? `(${expression})` : expression;
  }
}

/** The TraitDefinition's CUE template: imports and the parameter block, and no outputs. */
export function traitCueTemplate(): string {
  const writer = new CueWriter();
  const parameter = writer.struct(traitSchema, "", 0);
  const imports = [...writer.imports].sort().map((p) => `\t${JSON.stringify(p)}`);
  return [
    ...(imports.length > 0 ? ["import (", ...imports, ")", ""] : []),
    "// The trait only carries data: the scoped-step controller reads it from the Application when a",
    "// pipeline step names this component. It renders nothing and patches no workload.",
    `parameter: ${parameter}`,
    "",
  ].join("\n");
}

const generatedHeader = (source: string) => `# Generated from ${source} by \`make release\`; do not edit.\n`;

const traitLabels = {
  "app.kubernetes.io/name": "scoped-step",
  "app.kubernetes.io/part-of": "scoped-step",
  [versionLabel]: "0.1",
};

export function traitDefinition(): Record<string, unknown> {
  return {
    apiVersion: "core.oam.dev/v1beta1",
    kind: "TraitDefinition",
    metadata: {
      name: "scoped-identity",
      namespace: "vela-system",
      labels: traitLabels,
      annotations: {
        "definition.oam.dev/description":
          "Gives pipeline steps that name this component their own short-lived cloud identity (scoped-step).",
      },
    },
    spec: {
      appliesToWorkloads: ["*"],
      podDisruptive: false,
      schematic: { cue: { template: traitCueTemplate() } },
    },
  };
}

/** What KubeVela's definition controller would store for the trait, from traitSchema itself. */
export function traitSchemaConfigMap(): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: "trait-schema-scoped-identity",
      namespace: "vela-system",
      labels: {
        ...traitLabels,
        "definition.oam.dev": "schema",
        "definition.oam.dev/name": "scoped-identity",
      },
    },
    data: { "openapi-v3-json-schema": `${JSON.stringify(traitSchema, null, 2)}\n` },
  };
}

// --- releases -----------------------------------------------------------------------------------

interface Kustomization {
  resources?: string[];
  configMapGenerator?: {
    name: string;
    namespace?: string;
    files?: string[];
    options?: { labels?: Record<string, string>; disableNameSuffixHash?: boolean };
  }[];
}

const supportedKustomization = new Set(["apiVersion", "kind", "resources", "configMapGenerator"]);

/** The documents a kustomization lists, in order: resources (files or folders), then generated ConfigMaps. */
async function kustomizationDocuments(dir: string): Promise<{ source: string; doc: Document }[]> {
  const file = path.join(repoRoot, dir, "kustomization.yaml");
  const k = parse(await readFile(file, "utf8")) as Kustomization & Record<string, unknown>;
  for (const key of Object.keys(k)) {
    if (!supportedKustomization.has(key))
      throw new Error(`${file}: ${key} is not supported by hack/release.ts`);
  }
  const out: { source: string; doc: Document }[] = [];
  for (const resource of k.resources ?? []) {
    const target = path.join(dir, resource);
    if ((await stat(path.join(repoRoot, target))).isDirectory()) {
      out.push(...(await kustomizationDocuments(target)));
      continue;
    }
    const docs = parseAllDocuments(await readFile(path.join(repoRoot, target), "utf8"));
    if (!Array.isArray(docs)) continue;
    for (const doc of docs) {
      if (doc.errors.length > 0) throw new Error(`${target}: ${doc.errors.map((e) => e.message).join("; ")}`);
      if (doc.contents !== null) out.push({ source: target, doc });
    }
  }
  for (const generator of k.configMapGenerator ?? []) {
    if (generator.options?.disableNameSuffixHash !== true) {
      throw new Error(
        `${file}: configMapGenerator ${generator.name} needs options.disableNameSuffixHash: true`,
      );
    }
    const data: Record<string, string> = {};
    for (const entry of generator.files ?? []) {
      const [key = "", from = key] = entry.includes("=")
        ? entry.split("=", 2)
        : [path.basename(entry), entry];
      data[key] = await readFile(path.join(repoRoot, dir, from), "utf8");
    }
    const doc = new Document({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        name: generator.name,
        ...(generator.namespace ? { namespace: generator.namespace } : {}),
        labels: generator.options.labels ?? {},
      },
      data,
    });
    out.push({ source: `${dir}/kustomization.yaml (configMapGenerator)`, doc });
  }
  return out;
}

/**
 * The namespaced install's overlay (namespaced/kustomization.yaml): the documents it adds to the
 * release, and its patches. kustomize applies it; the Helm chart renders it when watchNamespaces is set.
 */
async function namespacedOverlay(): Promise<{
  documents: SourceDocument[];
  patches: Record<string, unknown>[];
}> {
  const dir = `${controllerDir}/namespaced`;
  const k = parse(await readFile(path.join(repoRoot, dir, "kustomization.yaml"), "utf8")) as {
    resources?: string[];
    patches?: { patch: string }[];
  };
  const documents: SourceDocument[] = [];
  for (const resource of (k.resources ?? []).filter((r) => r !== "..")) {
    const source = `${dir}/${resource}`;
    for (const doc of parseAllDocuments(await readFile(path.join(repoRoot, source), "utf8")) as Document[]) {
      if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors.map((e) => e.message).join("; ")}`);
      if (doc.contents !== null) documents.push({ source, doc });
    }
  }
  return { documents, patches: (k.patches ?? []).map((p) => parse(p.patch) as Record<string, unknown>) };
}

function stamp(doc: Document, version: string): void {
  doc.setIn(["metadata", "labels", versionLabel], version);
  if (doc.getIn(["kind"]) === "Deployment") {
    doc.setIn(["spec", "template", "metadata", "labels", versionLabel], version);
    const containers = doc.getIn(["spec", "template", "spec", "containers"]) as
      { items: unknown[] } | undefined;
    for (let i = 0; i < (containers?.items.length ?? 0); i++) {
      const image = doc.getIn(["spec", "template", "spec", "containers", i, "image"]);
      if (typeof image === "string" && image.startsWith(`${imageRepository}:`)) {
        doc.setIn(["spec", "template", "spec", "containers", i, "image"], `${imageRepository}:${version}`);
      }
    }
  }
}

async function release(dir: string, title: string, version: string): Promise<string> {
  const parts = [`# ${title}, version ${version}.\n${generatedHeader(`${dir}/kustomization.yaml`)}`];
  let previous = "";
  for (const { source, doc } of await kustomizationDocuments(dir)) {
    stamp(doc, version);
    // Say where each file starts; a generated file's own "do not edit" header would mislead here.
    // The parser attaches a leading comment to the document, its map or the map's first key.
    type Commented = { commentBefore?: string | null };
    const contents = doc.contents as (Commented & { items?: { key?: Commented }[] }) | null;
    const holders: Commented[] = [doc, ...(contents ? [contents] : []), contents?.items?.[0]?.key ?? {}];
    const own = holders
      .map((h) => h.commentBefore)
      .filter(Boolean)
      .join("\n")
      .replace(/^ ?Generated from .*do not edit\.$/m, "")
      .trim();
    const comment = [source === previous ? "" : ` Source: ${source}`, own ? ` ${own}` : ""].filter(Boolean);
    for (const h of holders) h.commentBefore = null;
    if (contents) contents.commentBefore = comment.length > 0 ? comment.join("\n") : null;
    previous = source;
    parts.push(`---\n${doc.toString(yamlOptions).replace(/^---\n/, "")}`);
  }
  return parts.join("");
}

async function pretty(file: string, text: string): Promise<string> {
  // Helm's templates are not YAML until rendered (.prettierignore), and NOTES.txt is plain text.
  const info = await getFileInfo(path.join(repoRoot, file), {
    ignorePath: path.join(repoRoot, ".prettierignore"),
  });
  if (info.ignored || !info.inferredParser) return text;
  const options = (await resolveConfig(path.join(repoRoot, file))) ?? {};
  return format(text, { ...options, filepath: path.join(repoRoot, file) });
}

export async function packageVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(path.join(repoRoot, "package.json"), "utf8")) as { version: string };
  return pkg.version;
}

/** Every file `make release` writes, with the content it should have now. */
/** The Task packaging of every catalog ScopedStep that has one, beside it. */
async function packagedSteps(): Promise<GeneratedFile[]> {
  const files: GeneratedFile[] = [];
  for (const name of (await readdir(path.join(repoRoot, stepsDir))).sort()) {
    for (const version of (await readdir(path.join(repoRoot, stepsDir, name))).sort()) {
      const source = `${stepsDir}/${name}/${version}/${name}.yaml`;
      const step = parse(await readFile(path.join(repoRoot, source), "utf8")) as Parameters<
        typeof taskFromStep
      >[0];
      const task = taskFromStep(step);
      if (!task) continue;
      files.push({
        path: `${stepsDir}/${name}/${version}/${name}.task.yaml`,
        content:
          `# The ScopedStep ${name} packaged as a Tekton Task, for Tekton's resolvers (the cluster resolver\n` +
          `# among them): a pipeline task names it with apiVersion scopedstep.dev/v1alpha1, kind ScopedStep.\n` +
          generatedHeader(source) +
          stringify(task, yamlOptions),
      });
    }
  }
  return files;
}

export async function releaseFiles(): Promise<GeneratedFile[]> {
  const version = await packageVersion();
  const files: GeneratedFile[] = [
    {
      path: `${traitDir}/scoped-identity.yaml`,
      content:
        generatedHeader("tasks/scoped-step/schema.ts (traitSchema)") +
        stringify(traitDefinition(), yamlOptions),
    },
    {
      path: `${traitDir}/trait-schema-scoped-identity.yaml`,
      content:
        generatedHeader("tasks/scoped-step/schema.ts (traitSchema)") +
        stringify(traitSchemaConfigMap(), yamlOptions),
    },
    {
      path: "catalog/release.yaml",
      content: await release(controllerDir, "scoped-step: namespace, CRDs and controller", version),
    },
    {
      path: "catalog/release-monitoring.yaml",
      content: await release(
        `${controllerDir}/monitoring`,
        "scoped-step monitoring: ServiceMonitor, PrometheusRule, Grafana dashboard",
        version,
      ),
    },
    ...(await packagedSteps()),
    ...helmChartFiles({
      version,
      imageRepository,
      releaseNamespace,
      release: await kustomizationDocuments(controllerDir),
      monitoring: await kustomizationDocuments(`${controllerDir}/monitoring`),
      namespaced: await namespacedOverlay(),
    }),
  ];
  return Promise.all(files.map(async (f) => ({ path: f.path, content: await pretty(f.path, f.content) })));
}

if (import.meta.main) {
  for (const file of await releaseFiles()) {
    await mkdir(path.dirname(path.join(repoRoot, file.path)), { recursive: true });
    await writeFile(path.join(repoRoot, file.path), file.content);
    console.log(file.path);
  }
}
