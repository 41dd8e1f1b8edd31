// The catalog is what users install, so every document in it must be accepted by a real API
// server exactly as written (strict field validation, no warnings), the generated files must be
// current, and the pieces must fit together: the Deployment's settings load, the RBAC names the
// objects the controller uses, the pipelines' steps resolve as the controller resolves them, the
// sample policy grants the sample trait, and the alerts and dashboard use metrics the controller
// exports. ServiceMonitor and PrometheusRule are checked against stand-in CRDs (see
// test/support/catalog.ts): their shape, not every field the Prometheus Operator defines.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { loadConfig } from "../../controller/config.ts";
import { Metrics } from "../../controller/metrics.ts";
import { releaseFiles, traitDefinition } from "../../hack/release.ts";
import { checkPolicy } from "../../tasks/scoped-step/policy-schema.ts";
import { evaluatePolicy } from "../../tasks/scoped-step/policy.ts";
import { traitSchema } from "../../tasks/scoped-step/schema.ts";
import { stepFromDefinition, stepFromParams, type ResolvedStep } from "../../tasks/scoped-step/step.ts";
import { resolveTrait } from "../../tasks/scoped-step/trait.ts";
import type { Application, Param, ParamValue } from "../../tasks/scoped-step/types.ts";
import {
  catalogDocs,
  catalogFiles,
  installMonitoringCrds,
  readDocs,
  repoRoot,
  yamlBlocks,
} from "../support/catalog.ts";
import { parseAllDocuments, parseDocument } from "yaml";
import { testCluster, testNamespace } from "../support/cluster.ts";
import { createRaw, readRaw, statusMessage, type ApiObject } from "../support/raw-api.ts";

const read = (file: string) => readFile(path.join(repoRoot, file), "utf8");
type Obj = Record<string, unknown>;

test("the release files, the Helm chart and the scoped-identity trait are generated from the current sources (`make release`)", async () => {
  for (const file of await releaseFiles()) {
    assert.equal(await read(file.path), file.content, `${file.path} is stale: run \`make release\``);
  }
});

test("the trait's KubeVela schema is traitSchema itself, and the TraitDefinition only carries data", async () => {
  const [cm] = await readDocs("catalog/trait/scoped-identity/0.1/trait-schema-scoped-identity.yaml");
  const data = (cm as unknown as { data: Record<string, string> }).data;
  assert.deepEqual(JSON.parse(data["openapi-v3-json-schema"] ?? ""), traitSchema);
  assert.equal(cm?.metadata.name, "trait-schema-scoped-identity");
  assert.equal(cm?.metadata.namespace, "vela-system");

  const [def] = await readDocs("catalog/trait/scoped-identity/0.1/scoped-identity.yaml");
  assert.deepEqual(def, JSON.parse(JSON.stringify(traitDefinition())));
  const spec = def?.spec as {
    podDisruptive: boolean;
    appliesToWorkloads: string[];
    schematic: { cue: { template: string } };
  };
  assert.equal(spec.podDisruptive, false);
  assert.deepEqual(spec.appliesToWorkloads, ["*"]);
  const template = spec.schematic.cue.template;
  assert.doesNotMatch(
    template,
    /^(outputs|output|patch)\s*:/m,
    "no outputs, no patch: the trait only carries data",
  );
  // Each property of the schema is a field of the CUE parameter block, at its depth.
  const fields = (depth: number) =>
    [...template.matchAll(new RegExp(`^\\t{${depth}}([A-Za-z_]\\w*)\\??:`, "gm"))].map((m) => m[1]);
  assert.deepEqual(fields(1), Object.keys(traitSchema.properties));
  assert.deepEqual(fields(2), Object.keys(traitSchema.properties.aws.properties));
});

test("catalog entries carry Tekton catalog annotations, a version label matching their folder, and a README", async () => {
  const annotations = [
    "tekton.dev/pipelines.minVersion",
    "tekton.dev/categories",
    "tekton.dev/tags",
    "tekton.dev/displayName",
    "tekton.dev/platforms",
  ];
  const entries = (await catalogFiles(".yaml")).filter((f) =>
    /^catalog\/(scopedstep|pipeline)\/[^/]+\/[^/]+\/[^/]+\.yaml$/.test(f),
  );
  assert.ok(entries.length >= 4, entries.join(", "));
  for (const file of entries) {
    const [, , name = "", version = "", base = ""] = file.split("/");
    if (base !== `${name}.yaml`) continue;
    const [doc] = await readDocs(file);
    const meta = doc?.metadata as { name: string; labels?: Obj; annotations?: Obj };
    assert.equal(meta.name, name, file);
    assert.equal(meta.labels?.["app.kubernetes.io/version"], version, file);
    for (const a of annotations) assert.ok(meta.annotations?.[a], `${file}: annotation ${a}`);
    assert.match(String(meta.annotations?.["tekton.dev/pipelines.minVersion"]), /^\d+\.\d+\.\d+$/);
    assert.match(
      await read(path.join(path.dirname(file), "README.md")),
      new RegExp(name),
      `${file}: README.md`,
    );
  }
  for (const dir of ["catalog/controller/0.1", "catalog/trait/scoped-identity/0.1"]) {
    assert.ok((await stat(path.join(repoRoot, dir, "README.md"))).isFile(), `${dir}/README.md`);
  }
});

const cluster = testCluster();
let scratch = "";
before(async () => {
  const c = await cluster;
  await installMonitoringCrds(c.kc);
  scratch = await testNamespace(c, "catalog");
});

/** Objects the local control plane has already: the CRDs it was started with, namespaces made above. */
const preexisting = (doc: ApiObject) => doc.kind === "CustomResourceDefinition";

test("every catalog document is accepted by the API server: server-side dry run, strict fields, no warnings", async (t) => {
  const { kc } = await cluster;
  const docs = await catalogDocs();
  // Namespaces first, as a user applies them: dry run, then for real, so namespaced objects can be tried.
  const namespaces = docs.filter(({ doc }) => doc.kind === "Namespace").map(({ doc }) => doc);
  for (const ns of namespaces) {
    const dry = await createRaw(kc, ns, { dryRun: true });
    assert.ok([201, 409].includes(dry.status), statusMessage(dry));
    await createRaw(kc, ns);
  }
  await createRaw(kc, { apiVersion: "v1", kind: "Namespace", metadata: { name: "vela-system" } });

  // The namespaces of the operator's tenants a file names (team-a, ...) are stood in for by scratch.
  const real = new Set(["vela-system", ...namespaces.map((ns) => ns.metadata.name ?? "")]);
  for (const file of [...new Set(docs.map((d) => d.file))]) {
    await t.test(file, async () => {
      for (const { doc: original } of docs.filter((d) => d.file === file && d.doc.kind !== "Namespace")) {
        const doc = structuredClone(original);
        if (doc.metadata.namespace && !real.has(doc.metadata.namespace)) doc.metadata.namespace = scratch;
        const what = `${doc.kind} ${doc.metadata.name ?? doc.metadata.generateName ?? ""}`;
        const res = await createRaw(kc, doc, { dryRun: true, namespace: doc.metadata.namespace ?? scratch });
        const accepted = res.status === 201 || (res.status === 409 && preexisting(doc));
        assert.ok(accepted, `${what}: HTTP ${res.status} ${statusMessage(res)}`);
        assert.deepEqual(res.warnings, [], `${what}: the API server warned`);
      }
    });
  }
});

/** Everything `sent` says is in `got` (the server may add defaults, never drop or change a field). */
function assertContains(got: unknown, sent: unknown, where: string): void {
  if (sent !== null && typeof sent === "object" && !Array.isArray(sent)) {
    assert.ok(got !== null && typeof got === "object", `${where}: missing`);
    for (const [k, v] of Object.entries(sent)) assertContains((got as Obj)[k], v, `${where}.${k}`);
  } else if (Array.isArray(sent)) {
    assert.ok(Array.isArray(got) && got.length === sent.length, `${where}: not the array sent`);
    sent.forEach((v, i) => assertContains((got as unknown[])[i], v, `${where}[${i}]`));
  } else {
    assert.deepEqual(got, sent, where);
  }
}

test("the entries, their samples and tests apply for real, each entry in a fresh namespace, and read back as written", async (t) => {
  const { kc, objects } = await cluster;
  // One namespace per entry (catalog/<kind>/<name>/<version>): two entries' samples may well both
  // hold the team's Application.
  const namespaces = new Map<string, string>();
  const namespaceOf = async (file: string) => {
    const entry = file
      .split("/")
      .slice(0, file.startsWith("catalog/controller/") ? 3 : 4)
      .join("/");
    namespaces.set(entry, namespaces.get(entry) ?? (await testNamespace(await cluster, "samples")));
    return namespaces.get(entry) ?? "";
  };
  const suffix = randomBytes(3).toString("hex");
  const sampleFiles = (await catalogFiles(".yaml")).filter((f) =>
    /^catalog\/(scopedstep|pipeline|trait)\/|^catalog\/controller\/0\.1\/samples\//.test(f),
  );
  const policies: string[] = [];
  // Cluster-scoped: removed again, though they select only namespaces labelled for their team.
  t.after(async () => {
    for (const name of policies) {
      await objects.deleteClusterCustomObject({
        group: "scopedstep.dev",
        version: "v1alpha1",
        plural: "scopedsteppolicies",
        name,
      });
    }
  });
  for (const file of sampleFiles) {
    const ns = await namespaceOf(file);
    for (const original of await readDocs(file)) {
      const doc = structuredClone(original);
      // Namespaced objects go to the fresh namespace; cluster-scoped ones get a name of their own.
      if (doc.kind === "ScopedStepPolicy") {
        doc.metadata.name = `${doc.metadata.name ?? ""}-${suffix}`;
        policies.push(doc.metadata.name);
      } else {
        doc.metadata.namespace = ns;
      }
      const created = await createRaw(kc, doc, { namespace: ns });
      assert.equal(created.status, 201, `${file}: ${doc.kind}: ${statusMessage(created)}`);
      assert.deepEqual(created.warnings, [], `${file}: ${doc.kind}: warnings`);
      const name = (created.body as ApiObject).metadata.name ?? "";
      const back = await readRaw(kc, doc, name, ns);
      assert.equal(back.status, 200, `${file}: ${doc.kind} ${name}: ${statusMessage(back)}`);
      const { metadata, ...content } = doc;
      assertContains(back.body, content, `${file}: ${doc.kind} ${name}`);
      assertContains(
        (back.body as ApiObject).metadata,
        { labels: metadata.labels, annotations: metadata.annotations },
        `${file}: metadata`,
      );
    }
  }
});

// --- the pieces fit together ----------------------------------------------------------------------

async function scopedSteps(): Promise<Map<string, { spec: unknown }>> {
  const out = new Map<string, { spec: unknown }>();
  for (const file of (await catalogFiles(".yaml")).filter((f) => f.startsWith("catalog/scopedstep/"))) {
    for (const doc of await readDocs(file)) {
      if (doc.kind === "ScopedStep") out.set(doc.metadata.name ?? "", doc as unknown as { spec: unknown });
    }
  }
  return out;
}

test("every catalog ScopedStep resolves with its required params", async () => {
  for (const [name, step] of await scopedSteps()) {
    const declared =
      (step.spec as { params?: { name: string; type?: string; default?: unknown }[] }).params ?? [];
    const params: Param[] = declared
      .filter((p) => p.default === undefined)
      .map((p) => ({
        name: p.name,
        value: p.type === "array" ? ["x"] : p.name === "application" ? "storefront" : "x",
      }));
    const resolved = stepFromDefinition(step.spec, params, `ScopedStep ${name}`);
    assert.equal(resolved.spec.application, "storefront", name);
    assert.ok(resolved.spec.results?.length, `${name} declares results`);
  }
});

test("the pipelines' ScopedStep tasks resolve as the controller resolves them, and the sample policy grants the sample trait", async () => {
  const steps = await scopedSteps();
  const pipelineFiles = (await catalogFiles(".yaml")).filter((f) => f.startsWith("catalog/pipeline/"));
  const docs = (await Promise.all(pipelineFiles.map((f) => readDocs(f)))).flat();
  const pipelines = docs.filter((d) => d.kind === "Pipeline");
  assert.ok(pipelines.length > 0);
  const ways = new Set<string>();
  for (const pipeline of pipelines) {
    const spec = pipeline.spec as {
      params?: { name: string; default?: ParamValue }[];
      results?: { value: string }[];
      tasks: {
        name: string;
        taskRef?: { apiVersion?: string; kind?: string; name?: string };
        taskSpec?: { apiVersion?: string; kind?: string; spec?: unknown };
        params?: Param[];
      }[];
    };
    const run = docs.find(
      (d) =>
        d.kind === "PipelineRun" &&
        (d.spec as { pipelineRef?: { name?: string } }).pipelineRef?.name === pipeline.metadata.name,
    );
    assert.ok(run, `a sample PipelineRun for ${pipeline.metadata.name ?? ""}`);
    const values = new Map<string, ParamValue>();
    for (const p of spec.params ?? []) if (p.default !== undefined) values.set(p.name, p.default);
    for (const p of (run.spec as { params?: Param[] }).params ?? []) values.set(p.name, p.value);
    for (const p of spec.params ?? []) assert.ok(values.has(p.name), `param ${p.name} has a value`);

    // What Tekton hands the CustomRun: pipeline params substituted, earlier results as placeholders.
    const substitute = (v: ParamValue): ParamValue => {
      const one = (s: string) =>
        s
          .replace(/\$\(params\.([\w-]+)\)/g, (_, n: string) => {
            const value = values.get(n);
            return typeof value === "string" ? value : JSON.stringify(value);
          })
          .replace(/\$\(tasks\.[\w-]+\.results\.[\w-]+\)/g, "result");
      if (typeof v === "string") return one(v);
      if (Array.isArray(v)) return v.map(one);
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, one(x)]));
    };
    const resolved = new Map<string, ResolvedStep>();
    for (const task of spec.tasks) {
      const params = (task.params ?? []).map((p) => ({ name: p.name, value: substitute(p.value) }));
      let step: ResolvedStep;
      // A plain Tekton task (the build): Tekton's own, not resolved here.
      if (task.taskSpec && task.taskSpec.kind === undefined) continue;
      if (task.taskSpec) {
        assert.equal(task.taskSpec.apiVersion, "scopedstep.dev/v1alpha1");
        assert.equal(task.taskSpec.kind, "ScopedStep");
        step = stepFromDefinition(task.taskSpec.spec, params, "customSpec");
        ways.add("taskSpec");
      } else if (task.taskRef?.name) {
        const definition = steps.get(task.taskRef.name);
        assert.ok(definition, `task ${task.name}: ScopedStep ${task.taskRef.name} is in the catalog`);
        step = stepFromDefinition(definition.spec, params, `ScopedStep ${task.taskRef.name}`);
        ways.add("taskRef with name");
      } else {
        assert.equal(task.taskRef?.apiVersion, "scopedstep.dev/v1alpha1");
        assert.equal(task.taskRef.kind, "ScopedStep");
        step = stepFromParams(params);
        ways.add("taskRef without name");
      }
      resolved.set(task.name, step);
    }
    // Pipeline results name results the steps declare.
    for (const r of spec.results ?? []) {
      const m = /^\$\(tasks\.([\w-]+)\.results\.([\w-]+)\)$/.exec(r.value);
      assert.ok(m, r.value);
      const declared = resolved.get(m[1] ?? "")?.spec.results?.map((x) => x.name) ?? [];
      assert.ok(declared.includes(m[2] ?? ""), `${r.value}: declared by the task`);
    }

    // The sample Application has the trait every step names, and the sample policy grants it.
    const app = docs.find((d) => d.kind === "Application") as unknown as Application;
    const policy = checkPolicy(docs.find((d) => d.kind === "ScopedStepPolicy"));
    assert.ok(policy.ok, policy.ok ? "" : policy.message);
    const selector = policy.value.spec.namespaceSelector?.matchLabels ?? {};
    for (const [task, step] of resolved) {
      const ref = {
        namespace: "team",
        application: step.spec.application,
        component: step.spec.component,
        trait: step.spec.trait,
      };
      const trait = resolveTrait({ ...app, metadata: { name: app.metadata.name, namespace: "team" } }, ref);
      const decision = evaluatePolicy([policy.value], {
        namespace: "team",
        namespaceLabels: { ...selector, "kubernetes.io/metadata.name": "team" },
        trait: trait.properties,
        traitRef: task,
      });
      assert.ok(decision.allowed, decision.allowed ? "" : `${task}: ${decision.message}`);
    }
  }
  assert.deepEqual([...ways].sort(), ["taskRef with name", "taskRef without name", "taskSpec"]);
});

async function release(): Promise<ApiObject[]> {
  return readDocs("catalog/release.yaml");
}

const find = (docs: ApiObject[], kind: string, name?: string) => {
  const doc = docs.find((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  assert.ok(doc, `${kind} ${name ?? ""} in the release`);
  return doc;
};

test("the Deployment's flags, Pod environment and the release's ConfigMap are valid controller settings, and the RBAC names what they name", async () => {
  const docs = await release();
  const deployment = find(docs, "Deployment") as unknown as {
    metadata: { namespace: string };
    spec: {
      replicas: number;
      template: {
        metadata: { name?: string };
        spec: {
          serviceAccountName: string;
          automountServiceAccountToken: boolean;
          containers: {
            args: string[];
            env: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
            ports: { name: string; containerPort: number }[];
            livenessProbe: { httpGet: { path: string; port: string } };
            readinessProbe: { httpGet: { path: string; port: string } };
          }[];
        };
      };
    };
  };
  const pod = deployment.spec.template.spec;
  const [container] = pod.containers;
  assert.ok(container);
  assert.equal(deployment.spec.replicas, 2);
  assert.equal(pod.automountServiceAccountToken, true);
  assert.ok(find(docs, "ServiceAccount", pod.serviceAccountName));
  // As the kubelet would: field references resolved, $(VAR) expanded.
  const fields: Record<string, string> = {
    "metadata.name": "scoped-step-controller-7d9c-x2kq",
    "metadata.namespace": deployment.metadata.namespace,
  };
  const env: Record<string, string> = {};
  for (const e of container.env)
    env[e.name] = e.value ?? fields[e.valueFrom?.fieldRef?.fieldPath ?? ""] ?? "";
  const args = container.args.map((a) => a.replace(/\$\((\w+)\)/g, (_, n: string) => env[n] ?? ""));
  const configMap = find(docs, "ConfigMap", "scoped-step-config") as unknown as {
    metadata: { namespace: string };
    data: Record<string, string>;
  };

  // Shipped as is, the controller refuses to start until the issuer URL is set.
  assert.throws(() => loadConfig(args, env, configMap.data), /--issuer-url .* is required/);
  const config = loadConfig(args, env, {
    ...configMap.data,
    "issuer-url": "https://oidc.example.com/scoped-step",
  });
  assert.equal(config.namespace, deployment.metadata.namespace);
  assert.equal(config.namespace, configMap.metadata.namespace);
  assert.equal(config.configMap, "scoped-step-config");
  assert.equal(config.identity, fields["metadata.name"]);
  assert.equal(config.credentials, "aws");
  const http = container.ports.find((p) => p.name === "http");
  assert.equal(config.httpPort, http?.containerPort);
  assert.equal(container.livenessProbe.httpGet.path, "/healthz");
  assert.equal(container.readinessProbe.httpGet.path, "/readyz");
  assert.equal(container.livenessProbe.httpGet.port, "http");
  assert.ok(config.renewDeadlineSeconds < config.leaseDurationSeconds);

  // The Role's names are the ones the controller uses.
  const role = find(docs, "Role") as unknown as {
    rules: { resources: string[]; resourceNames?: string[] }[];
  };
  const names = (resource: string) =>
    role.rules.filter((r) => r.resources.includes(resource)).flatMap((r) => r.resourceNames ?? []);
  assert.ok(names("leases").includes(config.leaseName));
  assert.ok(names("configmaps").includes(config.configMap));
  assert.ok(names("secrets").includes(config.signingKeySecret));
  const service = find(docs, "Service") as unknown as {
    spec: { ports: { port: number; targetPort: string }[] };
  };
  assert.deepEqual(
    service.spec.ports.map((p) => [p.port, p.targetPort]),
    [[8080, "http"]],
  );
});

test("alerts and the dashboard use metrics the controller exports, and every alert has a runbook section", async () => {
  const metrics = new Metrics({
    credentials: () => ({ active: 0, pendingRevocation: 0, oldestUnrevokedSince: 0 }),
    isLeader: () => false,
  });
  const exported = new Map<string, string[]>();
  for (const m of metrics.registry.getMetricsAsArray()) {
    const labels = (m as unknown as { labelNames?: string[] }).labelNames ?? [];
    const histogram = String(m.type) === "histogram";
    const series = histogram ? ["_bucket", "_sum", "_count"].map((s) => m.name + s) : [m.name];
    for (const s of series) exported.set(s, histogram ? [...labels, "le"] : labels);
  }
  // Labels Prometheus adds when it scrapes through the ServiceMonitor.
  const targetLabels = ["namespace", "pod", "job", "instance", "service", "container", "endpoint"];
  const checkExpr = (expr: string, where: string) => {
    const used = [...expr.matchAll(/\b((?:scoped_step|process|nodejs)_[a-z0-9_]+)\b/g)].map(
      (m) => m[1] ?? "",
    );
    assert.ok(used.length > 0, `${where}: uses no metric`);
    for (const name of used)
      assert.ok(exported.has(name), `${where}: ${name} is not exported by controller/metrics.ts`);
    const known = new Set([...targetLabels, ...used.flatMap((n) => exported.get(n) ?? [])]);
    for (const m of expr.matchAll(/\bby \(([^)]*)\)|\{([^}]*)\}/g)) {
      const labels =
        m[1] !== undefined ? m[1].split(",") : (m[2] ?? "").split(",").map((s) => s.split(/[=!~]/)[0] ?? "");
      for (const l of labels.map((s) => s.trim()).filter(Boolean))
        assert.ok(known.has(l), `${where}: label ${l}`);
    }
    return used;
  };

  const monitoring = await readDocs("catalog/release-monitoring.yaml");
  const rule = find(monitoring, "PrometheusRule") as unknown as {
    spec: {
      groups: {
        rules: {
          alert: string;
          expr: string;
          for?: string;
          labels: Obj;
          annotations: Record<string, string>;
        }[];
      }[];
    };
  };
  const alerts = rule.spec.groups.flatMap((g) => g.rules);
  const expected: Record<string, { for: string; metrics: string[] }> = {
    ScopedStepCredentialsNotRevoked: { for: "5m", metrics: ["scoped_step_credentials_pending_revocation"] },
    ScopedStepRevocationFellBackToExpiry: { for: "0m", metrics: ["scoped_step_revocation_fallbacks_total"] },
    ScopedStepCredentialHeldTooLong: {
      for: "5m",
      metrics: ["scoped_step_oldest_unrevoked_credential_timestamp_seconds"],
    },
    ScopedStepMintErrorRate: {
      for: "10m",
      metrics: ["scoped_step_credential_mint_failures_total", "scoped_step_credential_mints_total"],
    },
    ScopedStepNoLeader: { for: "5m", metrics: ["scoped_step_leader"] },
    ScopedStepReconcileErrors: { for: "15m", metrics: ["scoped_step_reconcile_errors_total"] },
  };
  assert.deepEqual(alerts.map((a) => a.alert).sort(), Object.keys(expected).sort());
  const runbook = await read("docs/troubleshooting.md");
  const anchors = new Set(
    [...runbook.matchAll(/^#+ (.+)$/gm)].map((m) =>
      (m[1] ?? "")
        .trim()
        .toLowerCase()
        .replace(/[^\w\- ]/g, "")
        .replace(/ /g, "-"),
    ),
  );
  for (const a of alerts) {
    const want = expected[a.alert];
    assert.ok(want);
    assert.deepEqual(
      [...new Set(checkExpr(a.expr, a.alert))].sort(),
      want.metrics.sort(),
      `${a.alert}: metrics`,
    );
    assert.equal(a.for, want.for, `${a.alert}: for`);
    assert.ok(a.labels.severity, `${a.alert}: severity`);
    assert.ok(a.annotations.summary && a.annotations.description, `${a.alert}: summary and description`);
    const url = a.annotations.runbook_url ?? "";
    assert.ok(
      url.startsWith("https://github.com/scoped-step/scoped-step/blob/main/docs/troubleshooting.md#"),
      url,
    );
    assert.ok(
      anchors.has(url.split("#")[1] ?? ""),
      `${a.alert}: docs/troubleshooting.md has #${url.split("#")[1] ?? ""}`,
    );
  }

  const dashboardMap = find(monitoring, "ConfigMap", "scoped-step-dashboard") as unknown as {
    metadata: { labels: Obj };
    data: Record<string, string>;
  };
  assert.equal(dashboardMap.metadata.labels.grafana_dashboard, "1");
  const dashboard = JSON.parse(dashboardMap.data["scoped-step.json"] ?? "") as {
    panels: { title: string; type: string; targets?: { expr: string }[] }[];
  };
  const onDashboard = new Set<string>();
  for (const panel of dashboard.panels.filter((p) => p.type !== "row")) {
    assert.ok(panel.targets?.length, `panel ${panel.title} has queries`);
    for (const t of panel.targets ?? [])
      for (const n of checkExpr(t.expr, `panel ${panel.title}`)) onDashboard.add(n);
  }
  // Every scoped_step metric the controller exports has a place on the dashboard.
  const bases = [...exported.keys()]
    .filter((n) => n.startsWith("scoped_step_"))
    .map((n) => n.replace(/_(bucket|sum|count)$/, ""));
  const shown = [...onDashboard].map((n) => n.replace(/_(bucket|sum|count)$/, ""));
  for (const base of new Set(bases)) assert.ok(shown.includes(base), `the dashboard shows ${base}`);
});

test("the samples the READMEs point at exist", async () => {
  const readmes = (await catalogFiles(".md")).concat("docs/troubleshooting.md");
  for (const file of readmes) {
    const text = await read(file);
    for (const m of text.matchAll(/\]\(((?:\.\.?\/)?[\w./-]+\.(?:ya?ml|md|json|ts))(#[\w-]+)?\)/g)) {
      const target = path.join(path.dirname(file), m[1] ?? "");
      assert.ok((await stat(path.join(repoRoot, target))).isFile(), `${file} links ${m[1] ?? ""}`);
    }
  }
});

test("the yaml examples in docs/ and the catalog's READMEs are accepted as written: objects by the API server, settings by the controller", async () => {
  const { kc } = await cluster;
  const files = [
    ...(await catalogFiles(".md")),
    "docs/policy.md",
    "docs/scaling.md",
    "docs/troubleshooting.md",
  ];
  let objects = 0;
  for (const file of files) {
    for (const { heading, text } of await yamlBlocks(file)) {
      const where = `${file} (${heading})`;
      for (const doc of parseAllDocuments(text).map((d) => d.toJS() as unknown)) {
        if (Array.isArray(doc)) continue; // a list of pipeline tasks, checked as part of its pipeline
        const obj = doc as ApiObject & { patches?: { patch: string }[] };
        if (obj.patches) {
          // A kustomize overlay: each patched ConfigMap holds settings the controller loads.
          for (const p of obj.patches) {
            const patch = parseDocument(p.patch).toJS() as { data?: Record<string, string> };
            assert.doesNotThrow(() => loadConfig([], {}, patch.data), where);
          }
          continue;
        }
        assert.ok(obj.apiVersion && obj.kind, `${where}: an object or an overlay`);
        const copy = structuredClone(obj);
        if (copy.metadata.namespace) copy.metadata.namespace = scratch;
        const res = await createRaw(kc, copy, { dryRun: true, namespace: scratch });
        assert.ok(
          [201, 409].includes(res.status),
          `${where}: ${obj.kind}: HTTP ${res.status} ${statusMessage(res)}`,
        );
        assert.deepEqual(res.warnings, [], `${where}: the API server warned`);
        if (obj.kind === "ScopedStepPolicy") {
          const checked = checkPolicy(obj);
          assert.ok(checked.ok, `${where}: ${checked.ok ? "" : checked.message}`);
        }
        objects++;
      }
    }
  }
  assert.ok(objects >= 5, `found ${objects} objects`);
});
