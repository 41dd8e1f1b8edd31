// The Helm chart (catalog/helm/scoped-step), rendered and linted by helm itself, built from its Go
// module. With default values it renders the objects of catalog/release.yaml, as the cluster
// receives them; each value changes only what it names. The chart's files being current is
// catalog.test.ts's check, with the other files `make release` writes. What it renders with every
// value set goes to the API server as a server-side dry run; a real `helm install` is not tried on the
// shared control plane, where other tests make the release's cluster-wide roles.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parseAllDocuments, stringify } from "yaml";
import { loadConfig } from "../../controller/config.ts";
import { checkIssuerUrl } from "../../controller/issuer/documents.ts";
import { buildTool } from "../../hack/cluster/upstream.ts";
import { chartDir } from "../../hack/helm-chart.ts";
import { packageVersion, releaseFiles } from "../../hack/release.ts";
import { installMonitoringCrds, readDocs, repoRoot } from "../support/catalog.ts";
import { testCluster, testNamespace } from "../support/cluster.ts";
import { createRaw, statusMessage, type ApiObject } from "../support/raw-api.ts";
import { namespacedInstall } from "../support/rbac-world.ts";

const run = promisify(execFile);
const chart = path.join(repoRoot, chartDir);
const helmHome = mkdtemp(path.join(os.tmpdir(), "helm-"));
const helmBinary = buildTool("helm");

async function helm(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  const home = await helmHome;
  // Helm's own folders in a scratch directory: nothing read from or written to the user's.
  const env = { PATH: process.env.PATH, HELM_CACHE_HOME: home, HELM_CONFIG_HOME: home, HELM_DATA_HOME: home };
  return run(await helmBinary, args, { env, maxBuffer: 64 << 20 });
}

/** `helm template` with its CRDs, as `helm install` sends the objects, in release `scoped-step`. */
async function render(args: string[] = [], namespace = "scoped-step"): Promise<ApiObject[]> {
  const { stdout } = await helm(
    "template",
    "scoped-step",
    chart,
    "--namespace",
    namespace,
    "--include-crds",
    ...args,
  );
  const docs = parseAllDocuments(stdout);
  for (const d of docs)
    if (d.errors.length > 0) throw new Error(`helm template: ${d.errors[0]?.message ?? ""}`);
  return docs.map((d) => d.toJS() as ApiObject | null).filter((d): d is ApiObject => d !== null);
}

const key = (o: ApiObject) => `${o.kind} ${o.metadata.namespace ?? "-"}/${o.metadata.name ?? ""}`;

/** The same objects, whatever their order: compared one by one, by kind, namespace and name. */
function assertSameObjects(got: ApiObject[], want: ApiObject[], what: string): void {
  const byKey = (objects: ApiObject[]) => {
    const map = new Map(objects.map((o) => [key(o), o]));
    assert.equal(map.size, objects.length, `${what}: two objects with one name`);
    return map;
  };
  const [g, w] = [byKey(got), byKey(want)];
  assert.deepEqual([...g.keys()].sort(), [...w.keys()].sort(), `${what}: which objects`);
  for (const [k, o] of w) assert.deepEqual(g.get(k), o, `${what}: ${k}`);
}

const release = readDocs("catalog/release.yaml");
const notNamespace = (o: ApiObject) => o.kind !== "Namespace";

/** The default render with `edit` applied: what a value should change, and nothing else. */
async function expected(edit: (objects: ApiObject[]) => void): Promise<ApiObject[]> {
  const objects = structuredClone((await release).filter(notNamespace));
  edit(objects);
  return objects;
}

const find = (objects: ApiObject[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name}`);
  return o as ApiObject & Record<string, unknown>;
};
type Container = { image: string; imagePullPolicy: string; resources: unknown };
const controller = (objects: ApiObject[]) =>
  (
    find(objects, "Deployment", "scoped-step-controller") as unknown as {
      spec: { replicas: number; template: { spec: { containers: Container[] } } };
    }
  ).spec;
const settings = (objects: ApiObject[]) =>
  (find(objects, "ConfigMap", "scoped-step-config") as unknown as { data: Record<string, string> }).data;

test("with default values the chart renders release.yaml's objects, but the Namespace, which `helm install --create-namespace` makes", async () => {
  assertSameObjects(await render(), (await release).filter(notNamespace), "default values");
  assertSameObjects(await render(["--set", "namespace.create=true"]), await release, "namespace.create");
});

test("the chart holds exactly the files `make release` writes for it, at package.json's version", async () => {
  const generated = (await releaseFiles()).map((f) => f.path).filter((p) => p.startsWith(`${chartDir}/`));
  const present = (await readdir(chart, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.relative(repoRoot, path.join(e.parentPath, e.name)));
  assert.deepEqual(present.sort(), generated.sort());
  const { stdout } = await helm("show", "chart", chart);
  const version = await packageVersion();
  assert.match(stdout, new RegExp(`^version: ${version.replaceAll(".", "\\.")}$`, "m"));
  assert.match(stdout, new RegExp(`^appVersion: ${version.replaceAll(".", "\\.")}$`, "m"));
});

test("image, replicas and resources change the controller Deployment only", async () => {
  const image = [
    "--set",
    "image.repository=registry.example/scoped-step,image.tag=1.2.3,image.pullPolicy=Always",
  ];
  assertSameObjects(
    await render(image),
    await expected((objects) => {
      const [c] = controller(objects).template.spec.containers;
      Object.assign(c ?? {}, { image: "registry.example/scoped-step:1.2.3", imagePullPolicy: "Always" });
    }),
    "image",
  );
  assertSameObjects(
    await render(["--set", "replicas=3"]),
    await expected((objects) => (controller(objects).replicas = 3)),
    "replicas",
  );
  // Helm merges the operator's values into the defaults; null removes a default (the CPU limit here).
  const resources = [
    "--set",
    "resources.requests.cpu=250m,resources.requests.memory=256Mi,resources.limits.cpu=null",
  ];
  assertSameObjects(
    await render(resources),
    await expected((objects) => {
      const [c] = controller(objects).template.spec.containers;
      if (c) c.resources = { requests: { cpu: "250m", memory: "256Mi" }, limits: { memory: "512Mi" } };
    }),
    "resources",
  );
});

test("issuerUrl and awsRegion change the controller's settings ConfigMap only", async () => {
  assertSameObjects(
    await render(["--set", "issuerUrl=https://oidc.example.com/scoped-step,awsRegion=eu-west-1"]),
    await expected((objects) => {
      Object.assign(settings(objects), {
        "issuer-url": "https://oidc.example.com/scoped-step",
        "aws-region": "eu-west-1",
      });
    }),
    "issuerUrl, awsRegion",
  );
});

test("signingKeyStore, kmsKeyId and kmsRegion change the controller's settings ConfigMap only", async () => {
  assertSameObjects(
    await render(["--set", "signingKeyStore=kms,kmsKeyId=alias/scoped-step-signing,kmsRegion=eu-west-1"]),
    await expected((objects) => {
      Object.assign(settings(objects), {
        "signing-key-store": "kms",
        "kms-key-id": "alias/scoped-step-signing",
        "kms-region": "eu-west-1",
      });
    }),
    "signingKeyStore, kmsKeyId, kmsRegion",
  );
  await assert.rejects(render(["--set", "signingKeyStore=vault"]), /signingKeyStore/);
});

const revokerRole = "arn:aws:iam::111122223333:role/scoped-step-revoker";

/** The secret file an external issuer's client reads, where extraVolumes mounts it. */
const idpSecretDir = "/var/run/secrets/scoped-step-idp";
const externalIssuer = [
  "issuer: https://idp.example.com/oauth2/platform",
  "clientId: scoped-step-controller",
  `clientSecretFile: ${idpSecretDir}/client-secret`,
  "",
].join("\n");
const idpVolume = { name: "idp", secret: { secretName: "scoped-step-idp", defaultMode: 256 } };
const idpMount = { name: "idp", mountPath: idpSecretDir, readOnly: true };

/** Values for external issuer mode: other settings, and the client secret's volume. */
async function externalIssuerValues(): Promise<string> {
  const file = path.join(await helmHome, "external-issuer.yaml");
  const values = {
    settings: {
      "log-level": "debug",
      "issuer-mode": "external",
      "external-issuer": externalIssuer,
      concurrency: 4,
    },
    extraVolumes: [idpVolume],
    extraVolumeMounts: [idpMount],
  };
  await writeFile(file, stringify(values));
  return file;
}

test("settings set any other controller setting in the ConfigMap, and extraVolumes and extraVolumeMounts add to the controller Pod only", async () => {
  const rendered = await render([
    "--set",
    "issuerUrl=https://oidc.example.com/scoped-step",
    "-f",
    await externalIssuerValues(),
  ]);
  assertSameObjects(
    rendered,
    await expected((objects) => {
      Object.assign(settings(objects), {
        "issuer-url": "https://oidc.example.com/scoped-step",
        "log-level": "debug",
        "issuer-mode": "external",
        "external-issuer": externalIssuer,
        concurrency: "4",
      });
      const pod = controller(objects).template.spec as unknown as {
        volumes: unknown[];
        containers: { volumeMounts: unknown[] }[];
      };
      pod.volumes.push(idpVolume);
      pod.containers[0]?.volumeMounts.push(idpMount);
    }),
    "settings, extraVolumes, extraVolumeMounts",
  );
  // The controller takes the rendered settings: here the secret file is one of the test's.
  const dir = await mkdtemp(path.join(os.tmpdir(), "helm-idp-"));
  await writeFile(path.join(dir, "client-secret"), "not-a-real-secret");
  const data = { ...settings(rendered) };
  data["external-issuer"] = (data["external-issuer"] ?? "").replace(idpSecretDir, dir);
  const config = loadConfig([], {}, data);
  assert.deepEqual([config.issuerMode, config.logLevel, config.concurrency], ["external", "debug", 4]);
  assert.equal(config.externalIssuer?.clientSecretFile, path.join(dir, "client-secret"));

  // A setting the Deployment passes as a flag, or one with a value of its own, is refused by name.
  for (const flag of ["http-port", "issuer-url", "log_level"]) {
    await assert.rejects(
      render(["--set-string", `settings.${flag}=x`]),
      (err: Error & { stderr?: string }) => {
        assert.match(err.stderr ?? "", new RegExp(`invalid propertyName '${flag}'`), flag);
        return true;
      },
    );
  }
});

test("serviceAccount.annotations (IRSA's role ARN) annotate the controller's ServiceAccount only", async () => {
  const role = revokerRole;
  assertSameObjects(
    await render(["--set-string", `serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=${role}`]),
    await expected((objects) => {
      find(objects, "ServiceAccount", "scoped-step-controller").metadata.annotations = {
        "eks.amazonaws.com/role-arn": role,
      };
    }),
    "serviceAccount.annotations",
  );
});

test("watchNamespaces renders the namespaced install of catalog/controller/0.1/namespaced, for the namespaces listed", async () => {
  // The overlay's example lists team-a and team-b, in its RoleBindings and in its ConfigMap patch.
  // The chart labels every object with its version, as release.yaml does; the overlay's own
  // objects, which kustomize applies as written, carry no version label.
  const { docs, watched } = await namespacedInstall();
  assert.deepEqual(watched, ["team-a", "team-b"]);
  const namespaced = (docs as unknown as ApiObject[]).filter(notNamespace);
  settings(namespaced)["watch-namespaces"] = watched.join(",");
  const version = await packageVersion();
  for (const o of namespaced) {
    o.metadata.labels = { ...(o.metadata.labels as object), "app.kubernetes.io/version": version };
  }
  assertSameObjects(
    await render(["--set", "watchNamespaces={team-a,team-b}"]),
    namespaced,
    "watchNamespaces",
  );

  const one = await render(["--set", "watchNamespaces={payments}"]);
  assert.equal(settings(one)["watch-namespaces"], "payments");
  assert.deepEqual(
    one
      .filter((o) => o.kind === "RoleBinding" && o.metadata.name === "scoped-step-controller-tenant-access")
      .map(key),
    ["RoleBinding payments/scoped-step-controller-tenant-access"],
  );
});

test("monitoring.enabled adds the objects of release-monitoring.yaml, as they are there", async () => {
  assertSameObjects(
    await render(["--set", "monitoring.enabled=true"]),
    [...(await expected(() => undefined)), ...(await readDocs("catalog/release-monitoring.yaml"))],
    "monitoring",
  );
});

test("everything namespaced goes to the release's namespace, and the controller's bindings name it", async () => {
  const rename = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rename);
    if (value === null || typeof value !== "object") return value;
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => {
        if (k === "namespace" && v === "scoped-step") return [k, "platform"];
        if (k === "matchNames")
          return [k, (v as string[]).map((n) => (n === "scoped-step" ? "platform" : n))];
        return [k, rename(v)];
      }),
    );
  };
  const all = ["--set", "monitoring.enabled=true,namespace.create=true"];
  const want = [...(await release), ...(await readDocs("catalog/release-monitoring.yaml"))].map(
    (o) => rename(o) as ApiObject,
  );
  const namespace = want.find((o) => o.kind === "Namespace");
  if (namespace) namespace.metadata.name = "platform";
  assertSameObjects(await render(all, "platform"), want, "--namespace platform");
});

test("values.schema.json turns away a mistyped value before anything renders, and takes the issuer URLs the controller takes", async () => {
  const refused = async (set: string, says: RegExp) => {
    await assert.rejects(render(["--set", set]), (err: Error & { stderr?: string }) => {
      assert.match(err.stderr ?? "", says, set);
      return true;
    });
  };
  await refused("issuerURL=https://oidc.example.com", /issuerURL/);
  await refused("watchNamespaces=team-a", /watchNamespaces/);
  await refused("watchNamespaces={Team_A}", /watchNamespaces/);
  await refused("replicas=two", /replicas/);
  await refused("image.pullPolicy=Sometimes", /pullPolicy/);
  await refused("monitoring.enabled=yes", /monitoring/);

  const urls = [
    "https://oidc.example.com",
    "https://example.com/oidc/prod",
    "http://oidc.example.com",
    "https://oidc.example.com:8443",
    "https://oidc.example.com/",
    "https://oidc.example.com/oidc?x=1",
    "https://oidc.example.com#top",
    "https://user@oidc.example.com",
  ];
  for (const url of urls) {
    let controllerTakes = true;
    try {
      checkIssuerUrl(url, false);
    } catch {
      controllerTakes = false;
    }
    const rendered = await render(["--set-string", `issuerUrl=${url}`]).then(
      (objects) => settings(objects)["issuer-url"],
      () => undefined,
    );
    assert.equal(rendered, controllerTakes ? url : undefined, `${url}: the chart and the controller agree`);
  }
});

test("helm lint --strict passes, with default values and with every value set", async () => {
  for (const args of [
    [],
    [
      "--set",
      "issuerUrl=https://oidc.example.com,watchNamespaces={team-a,team-b},monitoring.enabled=true,namespace.create=true,replicas=3",
      "--set-string",
      `serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=${revokerRole}`,
      "-f",
      await externalIssuerValues(),
    ],
  ]) {
    for (const strict of [[], ["--strict"]]) {
      const { stdout } = await helm("lint", chart, "--namespace", "scoped-step", ...strict, ...args);
      assert.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/, stdout);
      assert.doesNotMatch(stdout, /\[(WARNING|ERROR)\]/, stdout);
    }
  }
});

test("with every value set, the API server accepts what the chart renders: server-side dry run, strict fields, no warnings", async () => {
  const cluster = await testCluster();
  await installMonitoringCrds(cluster.kc);
  const ns = await testNamespace(cluster, "helm");
  const objects = await render(
    [
      "--set",
      `issuerUrl=https://oidc.example.com,awsRegion=eu-west-1,watchNamespaces={${ns}},monitoring.enabled=true,replicas=3`,
      "--set",
      "image.repository=registry.example/scoped-step,image.tag=1.2.3,resources.limits.cpu=null",
      "--set-string",
      `serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=${revokerRole}`,
      "-f",
      await externalIssuerValues(),
    ],
    ns,
  );
  for (const original of objects) {
    const doc = structuredClone(original);
    // Tekton's namespace need not exist here; the Role in it is checked in this test's namespace.
    if (doc.metadata.namespace) doc.metadata.namespace = ns;
    const res = await createRaw(cluster.kc, doc, { dryRun: true, namespace: doc.metadata.namespace });
    // 409: a cluster-scoped object (CRD, ClusterRole) another test made already, validated before that.
    const accepted = res.status === 201 || (res.status === 409 && !doc.metadata.namespace);
    assert.ok(accepted, `${key(original)}: HTTP ${res.status} ${statusMessage(res)}`);
    assert.deepEqual(res.warnings, [], `${key(original)}: the API server warned`);
  }
});
