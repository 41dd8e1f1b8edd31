// The scoped-identity TraitDefinition as KubeVela sees it: its CUE template compiled and every
// example trait rendered by KubeVela's own rendering code (vela-cue: CUE and KubeVela's workflow
// module at the versions vela-core v1.10.6 pins), on a webservice component rendered from
// KubeVela's own ComponentDefinition. Needs no API server: `node --test` runs it alone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { parseAllDocuments } from "yaml";
import { hackDir, kubevela, moduleDir } from "../../hack/cluster/upstream.ts";
import { resolveTrait, traitBaseName } from "../../tasks/scoped-step/trait.ts";
import type { Application } from "../../tasks/scoped-step/types.ts";
import { demoComponent } from "../support/application.ts";
import { catalogFiles, readDocs, repoRoot, yamlBlocks } from "../support/catalog.ts";
import { renderComponent, velaDefinitions } from "../support/vela.ts";

const traitType = "scoped-identity";
const roleArn = "arn:aws:iam::111122223333:role/payments-deployer";
const definitions = velaDefinitions();

/** `module version` pairs of a go.mod's require lines. */
async function requirements(goMod: string): Promise<Map<string, string>> {
  const text = await readFile(goMod, "utf8");
  return new Map(
    [...text.matchAll(/^\s*(?:require\s+)?([\w./-]+) (v\S+)/gm)].map((m) => [m[1] ?? "", m[2] ?? ""]),
  );
}

test("vela-cue is built from the CUE and workflow modules that KubeVela pins", async () => {
  const vela = await requirements(path.join(await moduleDir(kubevela), "go.mod"));
  const ours = await requirements(path.join(hackDir, "vela-cue", "go.mod"));
  for (const mod of ["cuelang.org/go", "github.com/kubevela/workflow"]) {
    assert.ok(vela.get(mod), `${kubevela.module}@${kubevela.version} requires ${mod}`);
    assert.equal(ours.get(mod), vela.get(mod), mod);
  }
});

function application(name: string, components: unknown[]): Application {
  return {
    apiVersion: "core.oam.dev/v1beta1",
    kind: "Application",
    metadata: { name, namespace: "team-payments" },
    spec: { components },
  } as Application;
}

/** Every Application the repository shows a reader: catalog samples, Markdown examples, the demo's. */
async function exampleApplications(): Promise<{ where: string; app: Application }[]> {
  const found: { where: string; app: Application }[] = [];
  for (const file of (await catalogFiles(".yaml")).filter((f) => f.includes("/samples/"))) {
    for (const doc of await readDocs(file))
      if (doc.kind === "Application") found.push({ where: file, app: doc as unknown as Application });
  }
  const docs = (await readdir(path.join(repoRoot, "docs")))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`);
  for (const file of ["README.md", ...(await catalogFiles(".md")), ...docs]) {
    for (const { heading, text } of await yamlBlocks(file)) {
      for (const doc of parseAllDocuments(text).map((d) => d.toJS() as { kind?: string } | null)) {
        if (doc?.kind === "Application")
          found.push({ where: `${file} (${heading})`, app: doc as Application });
      }
    }
  }
  found.push({ where: "hack/demo.ts", app: application("payments", [demoComponent(roleArn)]) });
  return found;
}

test("every scoped-identity trait of the examples renders: the workload untouched, no objects added, the parameter the controller resolves", async () => {
  const defs = await definitions;
  const seen = new Set<string>();
  for (const { where, app } of await exampleApplications()) {
    for (const component of app.spec.components ?? []) {
      if (!(component.traits ?? []).some((t) => traitBaseName(t.type) === traitType)) continue;
      const at = `${where}: component ${component.name}`;
      const rendered = await renderComponent(app, component.name, defs);
      assert.ok(rendered.ok, `${at}: ${rendered.ok ? "" : rendered.error}`);
      const bare = await renderComponent(
        application(app.metadata.name ?? "", [{ ...component, traits: [] }]),
        component.name,
        defs,
      );
      assert.ok(bare.ok, `${at} without traits: ${bare.ok ? "" : bare.error}`);

      const { output, outputs, traits } = rendered.rendered;
      assert.equal(output.kind, "Deployment", at);
      const image = (component.properties as { image?: string } | undefined)?.image;
      assert.match(
        JSON.stringify(output),
        new RegExp(`"image":"${image ?? "none"}"`),
        `${at}: the webservice's image`,
      );
      // The trait only carries data: it patches nothing and outputs nothing.
      assert.deepEqual(output, bare.rendered.output, at);
      assert.deepEqual(outputs, bare.rendered.outputs, at);

      // What CUE makes of the properties, defaults filled in, is what the controller's JSON Schema makes of them.
      const ref = {
        namespace: app.metadata.namespace ?? "default",
        application: app.metadata.name ?? "",
        component: component.name,
        trait: traitType,
      };
      assert.deepEqual(
        traits.map((t) => t.type),
        (component.traits ?? []).map((t) => t.type),
        at,
      );
      const mine = traits.find((t) => traitBaseName(t.type) === traitType);
      assert.deepEqual(mine?.parameter, resolveTrait(app, ref).properties, at);
      seen.add(where.replace(/ \(.*$/, ""));
    }
  }
  // Each kind of example is there: a change that drops one must drop it here on purpose.
  for (const source of [
    "README.md",
    "hack/demo.ts",
    "catalog/trait/scoped-identity/0.1/README.md",
    "catalog/scopedstep/s3-upload/0.1/samples/application.yaml",
    "catalog/scopedstep/deploy-with-role/0.1/samples/application.yaml",
    "catalog/scopedstep/ecr-push/0.1/samples/application.yaml",
    "catalog/pipeline/publish-static-site/0.1/samples/application.yaml",
  ]) {
    assert.ok(seen.has(source), `an example in ${source}; rendered ${[...seen].join(", ")}`);
  }
});

const refused: [string, Record<string, unknown>, RegExp][] = [
  ["a number for a string", { audience: 5, aws: { roleArn } }, /parameter\.audience: .*conflicting values/s],
  ["an unknown property", { lifetime: 5, aws: { roleArn } }, /parameter\.lifetime: field not allowed/],
  [
    "an unknown AWS property",
    { aws: { roleArn, externalId: "x" } },
    /parameter\.aws\.externalId: field not allowed/,
  ],
  [
    "a delivery mode that does not exist",
    { delivery: "vault", aws: { roleArn } },
    /parameter\.delivery: .*empty disjunction/s,
  ],
  [
    "a session shorter than STS allows",
    { aws: { roleArn, sessionDuration: 60 } },
    /parameter\.aws\.sessionDuration: .*invalid value 60 \(out of bound >=900\)/s,
  ],
  [
    "a token lifetime above the maximum",
    { tokenExpirationSeconds: 7200, aws: { roleArn } },
    /parameter\.tokenExpirationSeconds: invalid value 7200 \(out of bound <=3600\)/,
  ],
  [
    "a role ARN that is not one",
    { aws: { roleArn: "arn:aws:s3:::payments-artifacts/x" } },
    /parameter\.aws\.roleArn: invalid value .* \(out of bound =~/s,
  ],
  [
    "eleven managed policies",
    { aws: { roleArn, policyArns: Array.from({ length: 11 }, (_, i) => `arn:aws:iam::aws:policy/P${i}`) } },
    /parameter\.aws\.policyArns: invalid value .* \(does not satisfy list\.MaxItems\(10\)\)/s,
  ],
  [
    "fifty-one session tags",
    {
      aws: { roleArn, sessionTags: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, "v"])) },
    },
    /parameter\.aws\.sessionTags: invalid value .* \(does not satisfy struct\.MaxFields\(50\)\)/s,
  ],
  [
    "an AWS block without a role",
    { aws: { region: "eu-west-1" } },
    /parameter is incomplete.*parameter\.aws\.roleArn: incomplete value/s,
  ],
];

for (const [what, properties, error] of refused) {
  test(`KubeVela's CUE refuses ${what}, naming the field, as the controller's schema does`, async () => {
    const app = application("payments", [
      {
        name: "api",
        type: "webservice",
        properties: { image: "example/payments-api:1.4.2" },
        traits: [{ type: traitType, properties }],
      },
    ]);
    const rendered = await renderComponent(app, "api", await definitions);
    assert.equal(rendered.ok, false, "rendered");
    assert.match(rendered.ok ? "" : rendered.error, error);
    const ref = { namespace: "team-payments", application: "payments", component: "api", trait: traitType };
    assert.throws(() => resolveTrait(app, ref), { reason: "InvalidTrait" });
  });
}

test("a template that does not compile, or contradicts itself, is refused", async () => {
  const defs = await definitions;
  const app = application("payments", [demoComponent(roleArn)]);
  const trait = defs[traitType] ?? "";
  for (const [broken, error] of [
    [trait.replace("parameter: close({", "parameter: close({{"), /expected/],
    [`${trait}\nparameter: delivery: "env" & "file"\n`, /parameter\.delivery: conflicting values/],
  ] as const) {
    const rendered = await renderComponent(app, "api", { ...defs, [traitType]: broken });
    assert.equal(rendered.ok, false, "rendered");
    assert.match(rendered.ok ? "" : rendered.error, error);
  }
});
