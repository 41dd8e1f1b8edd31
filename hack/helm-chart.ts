// The Helm chart catalog/helm/scoped-step, written by `make release` from the same documents as
// catalog/release.yaml, so the two cannot drift: with default values the chart renders release.yaml's
// objects (but the Namespace, which `helm install --create-namespace` makes), and each value changes
// only what it names:
//   - image, replicas, resources: the controller Deployment;
//   - issuerUrl, awsRegion, settings: the scoped-step-config ConfigMap (settings: any other
//     controller setting by flag name, but those the Deployment sets as flags or environment);
//   - extraVolumes, extraVolumeMounts: the controller Pod's (an IdP's client secret, say);
//   - watchNamespaces: that ConfigMap's watch-namespaces, and the RBAC of the namespaced install
//     (catalog/controller/0.1/namespaced): its `$patch: delete` targets left out, its Roles added,
//     its tenant RoleBinding rendered once per namespace;
//   - monitoring.enabled: the objects of catalog/release-monitoring.yaml;
//   - namespace.create: the Namespace, with its Pod Security labels.
// Namespaced objects go to the release's namespace. The CRDs go to crds/, which Helm installs
// before the templates and never upgrades or deletes: uninstalling the chart must not delete every
// ScopedStep and ScopedStepPolicy in the cluster. test/integration/helm.test.ts renders the chart
// with helm and compares it with the releases object by object.
import { Document, isScalar, isSeq, stringify, visit, type Scalar } from "yaml";
import { options } from "../controller/config.ts";
import type { GeneratedFile } from "./release.ts";

export const chartDir = "catalog/helm/scoped-step";

export interface SourceDocument {
  /** The file it comes from, relative to the repository root. */
  source: string;
  doc: Document;
}

export interface ChartSources {
  /** package.json's version: the chart's version and appVersion. */
  version: string;
  /** The controller's image, without a tag. */
  imageRepository: string;
  /** The namespace the releases install into. */
  releaseNamespace: string;
  /** catalog/release.yaml's documents, in order, not yet stamped with the version. */
  release: SourceDocument[];
  /** catalog/release-monitoring.yaml's documents. */
  monitoring: SourceDocument[];
  /** The namespaced install's overlay: the documents it adds, and its patches. */
  namespaced: { documents: SourceDocument[]; patches: Record<string, unknown>[] };
}

const versionLabel = "app.kubernetes.io/version";
const configMapName = "scoped-step-config";
const yamlOptions = { lineWidth: 0, blockQuote: "literal", flowCollectionPadding: false } as const;
/** The chart's values for settings of the ConfigMap, by flag name. */
const settings = {
  "issuer-url": "issuerUrl",
  "aws-region": "awsRegion",
  "signing-key-store": "signingKeyStore",
  "kms-key-id": "kmsKeyId",
  "kms-region": "kmsRegion",
} as const;

/**
 * The text of one document as a template: values the chart computes are first set as tokens, then
 * replaced by template actions once the document is YAML text. `root` is how the template reaches
 * the chart's top-level objects: `.` at the top, `$.` inside a range.
 */
class TemplateWriter {
  private readonly slots: ((keyIndent: number) => string)[] = [];
  readonly root: "." | "$.";
  constructor(root: "." | "$.") {
    this.root = root;
  }

  /** A token for a scalar the template writes: `{{ expression }}`, where `@.` stands for the root. */
  value(expression: string): string {
    return this.slot(() => `{{ ${expression.replaceAll("@.", this.root)} }}`);
  }

  /**
   * A token for text the template writes as it is; the function gets the key's indentation. Used
   * as a key, the token stands for its whole line.
   */
  slot(text: (keyIndent: number) => string): string {
    this.slots.push(text);
    return `__slot_${this.slots.length - 1}__`;
  }

  text(doc: Document): string {
    const yaml = doc.toString(yamlOptions).replace(/^---\n/, "");
    return this.fill(escapeActions(yaml));
  }

  private fill(yaml: string): string {
    return yaml
      .split("\n")
      .map((line) => {
        const indent = /^( *)(- )?/.exec(line) ?? ["", ""];
        const keyIndent = (indent[1]?.length ?? 0) + (indent[2] ? 2 : 0);
        const slot = (n: string) => {
          const text = this.slots[Number(n)];
          if (!text) throw new Error(`no slot ${n}`);
          return text(keyIndent);
        };
        const key = /^ *__slot_(\d+)__:/.exec(line);
        if (key) return slot(key[1] ?? "");
        // A token as a whole sequence item stands for its whole line too, at the item's indentation.
        const item = /^( *)- __slot_(\d+)__$/.exec(line);
        if (item) return this.slots[Number(item[2])]?.(item[1]?.length ?? 0) ?? "";
        return line.replace(/(["']?)__slot_(\d+)__\1/g, (_, _q, n: string) => slot(n));
      })
      .join("\n");
  }
}

/** Go template delimiters in the sources (alert annotations) are text, not actions. */
function escapeActions(text: string): string {
  const escaped = text.replace(/\{\{.*?\}\}/g, (action) => {
    if (action.includes("`")) throw new Error(`cannot escape ${action} for Helm: it holds a backquote`);
    return `{{\`${action}\`}}`;
  });
  if (/\{\{|\}\}/.test(escaped.replace(/\{\{`.*?`\}\}/g, "")))
    throw new Error(`unpaired {{ or }} in ${text.slice(0, 80)}`);
  return escaped;
}

type Path = (string | number)[];
const get = (doc: Document, path: Path): unknown => doc.getIn(path);

/** Edits every document gets: the version label, and the release namespace wherever it is named. */
function common(doc: Document, t: TemplateWriter, releaseNamespace: string): void {
  const version = t.value("@.Chart.AppVersion | quote");
  doc.setIn(["metadata", "labels", versionLabel], version);
  if (get(doc, ["kind"]) === "Deployment")
    doc.setIn(["spec", "template", "metadata", "labels", versionLabel], version);
  if (get(doc, ["kind"]) === "Namespace") doc.setIn(["metadata", "name"], t.value("@.Release.Namespace"));
  visit(doc, {
    Pair(_, pair) {
      const key = isScalar(pair.key) ? pair.key.value : undefined;
      const value = pair.value;
      if (key === "namespace" && isScalar(value) && value.value === releaseNamespace) {
        value.value = t.value("@.Release.Namespace");
      }
      if (key === "matchNames" && isSeq(value)) {
        for (const item of value.items as Scalar[]) {
          if (item.value === releaseNamespace) item.value = t.value("@.Release.Namespace");
        }
      }
    },
  });
}

function deployment(doc: Document, t: TemplateWriter, imageRepository: string): void {
  doc.setIn(["spec", "replicas"], t.value(".Values.replicas"));
  const containers = (get(doc, ["spec", "template", "spec", "containers"]) as { items: unknown[] }).items;
  let found = false;
  for (let i = 0; i < containers.length; i++) {
    const at = (k: string): Path => ["spec", "template", "spec", "containers", i, k];
    const image = get(doc, at("image"));
    if (typeof image !== "string" || !image.startsWith(`${imageRepository}:`)) continue;
    found = true;
    doc.setIn(
      at("image"),
      t.slot(() => '"{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"'),
    );
    doc.setIn(at("imagePullPolicy"), t.value(".Values.image.pullPolicy"));
    doc.setIn(
      at("resources"),
      t.slot((indent) => `{{- toYaml .Values.resources | nindent ${indent + 2} }}`),
    );
    doc.addIn(at("volumeMounts"), listSlot(t, ".Values.extraVolumeMounts"));
  }
  if (!found) throw new Error(`the Deployment has no container running ${imageRepository}`);
  doc.addIn(["spec", "template", "spec", "volumes"], listSlot(t, ".Values.extraVolumes"));
}

/** The items of a list value, appended to a list of the document (nothing when the value is empty). */
function listSlot(t: TemplateWriter, value: string): string {
  return t.slot((indent) => {
    const pad = " ".repeat(indent);
    return `${pad}{{- with ${value} }}\n{{ toYaml . | indent ${indent} }}\n${pad}{{- end }}`;
  });
}

/** Annotations only when given (IRSA's role ARN), so that the default render is release.yaml's. */
function serviceAccount(doc: Document, t: TemplateWriter): void {
  if (get(doc, ["metadata", "annotations"]) !== undefined)
    throw new Error("the ServiceAccount has annotations of its own: merge them with the chart's");
  doc.setIn(
    [
      "metadata",
      t.slot((indent) =>
        [
          `${" ".repeat(indent)}{{- with .Values.serviceAccount.annotations }}`,
          `${" ".repeat(indent)}annotations:`,
          `${" ".repeat(indent + 2)}{{- toYaml . | nindent ${indent + 2} }}`,
          `${" ".repeat(indent)}{{- end }}`,
        ].join("\n"),
      ),
    ],
    "",
  );
}

function configMap(doc: Document, t: TemplateWriter): void {
  for (const [flag, value] of Object.entries(settings)) {
    if (get(doc, ["data", flag]) === undefined) throw new Error(`${configMapName} has no ${flag}`);
    doc.setIn(["data", flag], t.value(`.Values.${value} | quote`));
  }
  // The release's other settings keep their value unless `settings` names them; the rest of
  // `settings` follows them.
  const written: string[] = [];
  for (const pair of (get(doc, ["data"]) as { items: { key: Scalar; value: Scalar }[] }).items) {
    const flag = String(pair.key.value);
    if (flag in settings) continue;
    written.push(flag);
    const fallback = JSON.stringify(String(pair.value.value));
    pair.value = doc.createNode(
      t.value(`index @.Values.settings ${JSON.stringify(flag)} | default ${fallback} | quote`),
    );
  }
  const omitted = written.map((f) => JSON.stringify(f)).join(" ");
  doc.setIn(
    [
      "data",
      t.slot((indent) =>
        [
          `${" ".repeat(indent)}{{- range $flag, $value := omit .Values.settings ${omitted} }}`,
          `${" ".repeat(indent)}{{ $flag }}: {{ $value | quote }}`,
          `${" ".repeat(indent)}{{- end }}`,
        ].join("\n"),
      ),
    ],
    "",
  );
  // Only when listed, so that the default render is release.yaml's ConfigMap.
  doc.setIn(
    [
      "data",
      t.slot((indent) =>
        [
          `${" ".repeat(indent)}{{- with .Values.watchNamespaces }}`,
          `${" ".repeat(indent)}watch-namespaces: {{ join "," . | quote }}`,
          `${" ".repeat(indent)}{{- end }}`,
        ].join("\n"),
      ),
    ],
    "",
  );
}

/** A generated ConfigMap's data (the dashboard) is a file of the chart, read with .Files.Get. */
function filesData(doc: Document, t: TemplateWriter, files: GeneratedFile[]): void {
  const data = get(doc, ["data"]) as { items: { key: Scalar; value: Scalar }[] };
  for (const { key, value } of data.items) {
    const content = String(value.value);
    const name = String(key.value);
    if (/\n\n$/.test(content))
      throw new Error(`${name}: trailing blank lines do not survive a literal block`);
    files.push({ path: `${chartDir}/files/${name}`, content });
    const chomp = content.endsWith("\n") ? "|" : "|-";
    value.value = t.slot((indent) => `${chomp}\n{{ .Files.Get "files/${name}" | indent ${indent + 2} }}`);
  }
}

const sameObject = (a: Document, kind: unknown, name: unknown) =>
  get(a, ["kind"]) === kind && get(a, ["metadata", "name"]) === name;

/** Which documents the namespaced install drops, and a check that its ConfigMap patch is only the watch list. */
function namespacedPatches(sources: ChartSources): { kind: unknown; name: unknown }[] {
  const dropped: { kind: unknown; name: unknown }[] = [];
  for (const patch of sources.namespaced.patches) {
    const metadata = (patch.metadata ?? {}) as Record<string, unknown>;
    const target = { kind: patch.kind, name: metadata.name };
    if (!sources.release.some(({ doc }) => sameObject(doc, target.kind, target.name)))
      throw new Error(
        `the namespaced overlay patches ${String(target.kind)} ${String(target.name)}, not in the release`,
      );
    if (patch.$patch === "delete") {
      dropped.push(target);
      continue;
    }
    const keys = Object.keys(patch.data ?? {});
    if (target.name !== configMapName || keys.join() !== "watch-namespaces")
      throw new Error(
        `the chart renders the namespaced overlay's deletes and its watch-namespaces setting only, not its patch of ${String(target.kind)} ${String(target.name)}`,
      );
  }
  return dropped;
}

interface TemplateDocument {
  text: string;
  /** A Go template condition the document is rendered under. */
  when?: string;
}

function templateFile(source: string, docs: TemplateDocument[]): string {
  const header = `{{- /* Generated from ${source} by \`make release\`; do not edit. */ -}}\n`;
  const parts = docs.map(({ text, when }) => (when ? `{{- if ${when} }}\n${text}{{- end }}\n` : text));
  return header + parts.join("---\n");
}

/** One RoleBinding a watched namespace, from the overlay's identical RoleBindings (one per example namespace). */
function tenantBindings(docs: SourceDocument[], releaseNamespace: string): string {
  const [first] = docs;
  if (!first) throw new Error("the namespaced overlay binds the controller in no namespace");
  const bare = (d: Document) => {
    const js = d.toJS() as { metadata: Record<string, unknown> };
    delete js.metadata.namespace;
    return JSON.stringify(js);
  };
  for (const { source, doc } of docs) {
    if (bare(doc) !== bare(first.doc))
      throw new Error(`${source}: the tenant RoleBindings must differ in their namespace only`);
  }
  const doc = first.doc.clone();
  const t = new TemplateWriter("$.");
  common(doc, t, releaseNamespace);
  doc.setIn(["metadata", "namespace"], t.value("."));
  setLeadingComment(
    doc,
    " The tenant access, bound in each namespace the controller serves: by a RoleBinding, the\n" +
      " ClusterRole's rules apply in that namespace only.",
  );
  return `{{- range .Values.watchNamespaces }}\n---\n${t.text(doc)}{{- end }}\n`;
}

/** Replaces a document's leading comment, which the parser keeps on the document, its map or the map's first key. */
function setLeadingComment(doc: Document, comment: string | null): void {
  type Commented = { commentBefore?: string | null };
  const contents = doc.contents as (Commented & { items?: { key?: Commented }[] }) | null;
  for (const holder of [doc, contents, contents?.items?.[0]?.key]) if (holder) holder.commentBefore = null;
  if (contents) contents.commentBefore = comment;
}

function crdFile(source: string, doc: Document, version: string): string {
  const copy = doc.clone();
  setLeadingComment(copy, null);
  copy.setIn(["metadata", "labels", versionLabel], version);
  return `# Generated from ${source} by \`make release\`; do not edit.\n${copy.toString(yamlOptions)}`;
}

/** Every file of the chart. */
export function helmChartFiles(sources: ChartSources): GeneratedFile[] {
  const { releaseNamespace } = sources;
  const files: GeneratedFile[] = [];
  const templates = new Map<string, { source: string; docs: TemplateDocument[] }>();
  const add = (source: string, file: string, doc: TemplateDocument) => {
    const entry = templates.get(file) ?? { source, docs: [] };
    if (entry.source !== source)
      throw new Error(`templates/${file} would come from ${source} and ${entry.source}`);
    entry.docs.push(doc);
    templates.set(file, entry);
  };
  const base = (source: string) => source.replace(/^.*\//, "");

  const dropped = namespacedPatches(sources);
  const groups: [SourceDocument[], string | undefined][] = [
    [sources.release, undefined],
    [sources.monitoring, ".Values.monitoring.enabled"],
  ];
  for (const [docs, group] of groups) {
    for (const { source: from, doc: original } of docs) {
      let source = from;
      const kind = get(original, ["kind"]);
      if (kind === "CustomResourceDefinition") {
        files.push({
          path: `${chartDir}/crds/${base(source)}`,
          content: crdFile(source, original, sources.version),
        });
        continue;
      }
      const doc = original.clone();
      const t = new TemplateWriter(".");
      common(doc, t, releaseNamespace);
      let when = group;
      if (kind === "Namespace") when = ".Values.namespace.create";
      if (dropped.some((d) => sameObject(original, d.kind, d.name))) when = "not .Values.watchNamespaces";
      if (kind === "Deployment") deployment(doc, t, sources.imageRepository);
      if (kind === "ServiceAccount") serviceAccount(doc, t);
      if (kind === "ConfigMap" && get(original, ["metadata", "name"]) === configMapName) configMap(doc, t);
      let file = base(source);
      if (source.endsWith("(configMapGenerator)")) {
        filesData(doc, t, files);
        file = `${String(get(original, ["metadata", "name"]))}.yaml`;
        source = `${source.replace(/ \(configMapGenerator\)$/, "")}'s configMapGenerator`;
      }
      add(source, file, { text: t.text(doc), when });
    }
  }
  const tenants: SourceDocument[] = [];
  for (const entry of sources.namespaced.documents) {
    if (get(entry.doc, ["metadata", "namespace"]) !== releaseNamespace) {
      tenants.push(entry);
      continue;
    }
    const doc = entry.doc.clone();
    const t = new TemplateWriter(".");
    common(doc, t, releaseNamespace);
    add(entry.source, base(entry.source), { text: t.text(doc), when: ".Values.watchNamespaces" });
  }
  const tenantSource = tenants[0]?.source ?? "";
  add(tenantSource, base(tenantSource), { text: tenantBindings(tenants, releaseNamespace) });

  for (const [file, { source, docs }] of templates) {
    files.push({ path: `${chartDir}/templates/${file}`, content: templateFile(source, docs) });
  }
  const deploymentDoc = sources.release.find(({ doc }) => get(doc, ["kind"]) === "Deployment")?.doc;
  const config = sources.release.find(({ doc }) => sameObject(doc, "ConfigMap", configMapName))?.doc;
  if (!deploymentDoc || !config) throw new Error("the release has no controller Deployment or ConfigMap");
  files.push(
    { path: `${chartDir}/Chart.yaml`, content: chartYaml(sources.version) },
    { path: `${chartDir}/values.yaml`, content: valuesYaml(sources, deploymentDoc, config) },
    {
      path: `${chartDir}/values.schema.json`,
      content: `${JSON.stringify(valuesSchema(settingsAllowed(deploymentDoc)), null, 2)}\n`,
    },
    { path: `${chartDir}/templates/NOTES.txt`, content: notes },
  );
  return files;
}

function chartYaml(version: string): string {
  const chart = {
    apiVersion: "v2",
    name: "scoped-step",
    description:
      "A Tekton custom task controller that gives each pipeline step its own short-lived cloud identity",
    type: "application",
    version,
    appVersion: version,
    home: "https://github.com/scoped-step/scoped-step",
    sources: ["https://github.com/scoped-step/scoped-step"],
    keywords: ["tekton", "oidc", "aws", "sts", "kubevela"],
  };
  return `# Generated by \`make release\` (version: package.json's); do not edit.\n${stringify(chart, yamlOptions)}`;
}

function valuesYaml(sources: ChartSources, deploymentDoc: Document, config: Document): string {
  const y = (value: unknown) => stringify(value, yamlOptions).trimEnd();
  const container = (
    deploymentDoc.toJS() as {
      spec: {
        template: { spec: { containers: { image: string; imagePullPolicy: string; resources: unknown }[] } };
      };
    }
  ).spec.template.spec.containers.find((c) => c.image.startsWith(`${sources.imageRepository}:`));
  const data = (config.toJS() as { data: Record<string, string> }).data;
  const indented = (value: unknown) => y(value).replace(/^/gm, "  ");
  return `# The chart's values. Generated from catalog/controller/0.1 by \`make release\`; do not edit: the
# defaults are those of catalog/release.yaml, which the chart renders with them.

image:
  repository: ${y(sources.imageRepository)}
  # Empty: the chart's appVersion.
  tag: ""
  pullPolicy: ${y(container?.imagePullPolicy)}

# One replica leads (reconciles runs); every replica signs tokens and serves the OIDC documents.
replicas: ${y(get(deploymentDoc, ["spec", "replicas"]))}

# The controller container's requests and limits.
resources:
${indented(container?.resources)}

# REQUIRED (issuer-url): the public https URL of the OIDC issuer (no port, no query, no trailing
# slash), registered in IAM as an OpenID Connect provider. The controller refuses to start while it
# is empty, and says so in its log and in an Event on its Pod.
issuerUrl: ${y(data["issuer-url"])}

# STS region when a trait names none (aws-region).
awsRegion: ${y(data["aws-region"])}

# Where the token signing keys live (signing-key-store): secret, or kms to keep them in AWS KMS
# (README, "Signing keys in AWS KMS"); with kms, kmsKeyId names the key (kms-key-id, e.g.
# alias/scoped-step-signing) and kmsRegion its region when that is not the key ARN's or awsRegion.
# The controller's AWS identity (serviceAccount.annotations) then needs kms:DescribeKey,
# kms:GetPublicKey and kms:Sign on the key.
signingKeyStore: ${y(data["signing-key-store"])}
kmsKeyId: ${y(data["kms-key-id"])}
kmsRegion: ${y(data["kms-region"])}

# Any other controller setting, by flag name (the README's Configuration table), e.g.
# settings: { log-level: debug, issuer-mode: external, external-issuer: "issuer: https://..." }.
# Those of catalog/release.yaml's ConfigMap keep their value there unless named here. Settings the
# Deployment passes as flags or environment (http-port, the lease timings, namespace, ...) are not
# accepted here: they would be overridden.
settings: {}

# More volumes for the controller Pod, and where its container mounts them: the client secret or
# private key of an external issuer's client, say (a Secret, mounted read-only).
extraVolumes: []
extraVolumeMounts: []

# The namespaces whose runs the controller serves (watch-namespaces), e.g.
# --set 'watchNamespaces={team-a,team-b}'. Empty: every namespace, with the controller's tenant
# access bound cluster-wide. Listed: the namespaced install of catalog/controller/0.1/namespaced,
# with that access bound in these namespaces only and nothing cluster-wide in them.
watchNamespaces: []

serviceAccount:
  # Annotations on the controller's ServiceAccount, e.g. eks.amazonaws.com/role-arn (IRSA): the AWS
  # identity that deny-policy revocation writes IAM with. Minting needs no AWS credentials.
  annotations: {}

monitoring:
  # The ServiceMonitor, PrometheusRule (alerts) and Grafana dashboard ConfigMap of
  # catalog/release-monitoring.yaml. They need the Prometheus Operator's CRDs.
  enabled: false

namespace:
  # Render the release's Namespace, with release.yaml's restricted Pod Security labels: for
  # \`helm template | kubectl apply -f -\`. Leave it off with \`helm install --create-namespace\`,
  # which creates the namespace itself (without those labels: see the README).
  create: false
`;
}

const dnsLabel = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/**
 * The flags `settings` may name: every controller setting but those the Deployment sets (a flag in
 * its args, or its environment variable), those with values of their own, and config-map.
 */
function settingsAllowed(deploymentDoc: Document): string[] {
  const js = deploymentDoc.toJS() as {
    spec: { template: { spec: { containers: { args?: string[]; env?: { name: string }[] }[] } } };
  };
  const containers = js.spec.template.spec.containers;
  const args = new Set(containers.flatMap((c) => (c.args ?? []).map((a) => /^--([a-z-]+)=/.exec(a)?.[1])));
  const env = new Set(containers.flatMap((c) => (c.env ?? []).map((e) => e.name)));
  const own = new Set<string>([...Object.keys(settings), "watch-namespaces", options.configMap.flag]);
  return Object.values(options)
    .filter((o) => !args.has(o.flag) && !env.has(o.env) && !own.has(o.flag))
    .map((o) => o.flag);
}

const volumeList = { type: "array", items: { type: "object", required: ["name"] } };

/** Helm checks values against it before rendering: a typo or a wrong type fails with its path. */
const valuesSchema = (allowedSettings: string[]) => ({
  $schema: "http://json-schema.org/draft-07/schema#",
  type: "object",
  additionalProperties: false,
  properties: {
    global: { type: "object" },
    image: {
      type: "object",
      additionalProperties: false,
      properties: {
        repository: { type: "string", minLength: 1 },
        tag: { type: "string" },
        pullPolicy: { enum: ["Always", "IfNotPresent", "Never"] },
      },
    },
    replicas: { type: "integer", minimum: 0 },
    resources: {
      type: "object",
      additionalProperties: false,
      properties: {
        requests: { type: "object", additionalProperties: { type: ["string", "number"] } },
        limits: { type: "object", additionalProperties: { type: ["string", "number"] } },
        claims: { type: "array" },
      },
    },
    issuerUrl: {
      description: "https, no port, query, fragment, user or trailing slash (empty until set)",
      type: "string",
      pattern: "^(https://[^/:?#@\\s]+(/[^?#\\s]*[^/?#\\s])?)?$",
    },
    awsRegion: { type: "string", pattern: "^[a-z]{2}(-[a-z]+)+-[0-9]+$" },
    signingKeyStore: { enum: ["secret", "kms"] },
    kmsKeyId: { type: "string" },
    kmsRegion: { type: "string", pattern: "^([a-z]{2}(-[a-z]+)+-[0-9]+)?$" },
    settings: {
      type: "object",
      propertyNames: { enum: allowedSettings },
      additionalProperties: { type: ["string", "number", "boolean"] },
    },
    extraVolumes: volumeList,
    extraVolumeMounts: { type: "array", items: { type: "object", required: ["name", "mountPath"] } },
    watchNamespaces: {
      type: "array",
      uniqueItems: true,
      items: { type: "string", maxLength: 63, pattern: dnsLabel },
    },
    serviceAccount: {
      type: "object",
      additionalProperties: false,
      properties: { annotations: { type: "object", additionalProperties: { type: "string" } } },
    },
    monitoring: {
      type: "object",
      additionalProperties: false,
      properties: { enabled: { type: "boolean" } },
    },
    namespace: {
      type: "object",
      additionalProperties: false,
      properties: { create: { type: "boolean" } },
    },
  },
});

const notes = `{{- /* Generated by \`make release\`; do not edit. */ -}}
scoped-step {{ .Chart.AppVersion }} is installed in namespace {{ .Release.Namespace }}.
{{- if not .Values.issuerUrl }}

The controller will not start until issuerUrl is set: the public https URL of its OIDC issuer.
  helm upgrade {{ .Release.Name }} <chart> -n {{ .Release.Namespace }} --reuse-values --set issuerUrl=https://...
  kubectl -n {{ .Release.Namespace }} rollout restart deployment scoped-step-controller
{{- end }}
{{- if .Values.watchNamespaces }}

It serves runs in: {{ join ", " .Values.watchNamespaces }}.
{{- else }}

It serves runs in every namespace.
{{- end }}

Check it with:
  kubectl -n {{ .Release.Namespace }} get deployment scoped-step-controller
  kubectl -n {{ .Release.Namespace }} logs deployment/scoped-step-controller
`;
