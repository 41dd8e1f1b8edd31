// The catalog's entries run as a user runs them: on the cluster with a real node, with Tekton's own
// controller and admission webhook, the entry applied as shipped, its samples' Application and
// ScopedStepPolicy applied as shipped (the namespace labelled for the policy's selector), and each
// PipelineRun in its tests/ folder run to success; then what it did is checked in the AWS peer.
//
// What differs from a user's cluster, and why (startExamplesWorld): no registry is reachable, so the
// images built here stand in under the references the entries name; and the AWS endpoint is the
// loopback peer, which the controller gives every step as AWS_ENDPOINT_URL (--step-aws-endpoint,
// as an operator with an AWS proxy would). The roles the Applications name are created in the
// peer, trusting the controller's issuer for the namespace's subjects, with broad permissions: the
// traits' session policies are what scope each step, as the samples intend. ECR's registry host
// does not resolve here and the peer's registry speaks plain HTTP, so a run that pushes names the
// peer's address instead, with tls-verify false and the region given (pushTo).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import type { CustomRun } from "../../tasks/scoped-step/types.ts";
import { createTrustingRole } from "../support/aws/trust.ts";
import { account, deployRole } from "../support/identity-world.ts";
import { catalogDocs, readDocs, repoRoot } from "../support/catalog.ts";
import { realCluster } from "../support/cluster.ts";
import { createRaw, deleteRaw, statusMessage, type ApiObject } from "../support/raw-api.ts";
import {
  assertNoSecretWritten,
  pipelineCondition,
  pipelineResults,
  startExamplesWorld,
  type PipelineRun,
  type TektonWorld,
} from "../support/tekton.ts";
import { provisionHostPathClaims } from "../support/volumes.ts";
import { policyInUse } from "../support/policy.ts";
import { condition, resultsOf } from "../support/world.ts";

const c = await realCluster();
const world = startExamplesWorld();

/** What an entry's test made, deleted when it ends: the next entry's samples may reuse the names. */
const made: ApiObject[] = [];

/** Creates the file's objects as they are written, in the world's namespace. */
async function apply(w: TektonWorld, file: string): Promise<ApiObject[]> {
  const docs = await readDocs(file);
  for (const doc of docs) {
    const res = await createRaw(w.cluster.kc, doc, { namespace: w.ns });
    made.push(res.body as ApiObject);
    assert.equal(res.status, 201, `${file}: ${doc.kind} ${doc.metadata.name ?? ""}: ${statusMessage(res)}`);
    assert.deepEqual(res.warnings, [], `${file}: ${doc.kind}: the API server warned`);
  }
  return docs;
}

/** The namespace as the sample policy selects it: `team=<team>`, and nothing else of a team. */
async function labelTeam(w: TektonWorld, team: string): Promise<void> {
  await w.cluster.core.patchNamespace(
    { name: w.ns, body: { metadata: { labels: { team } } } },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
}

const rolesMade = new Set<string>();

function trustRoles(w: TektonWorld, application: ApiObject): void {
  const text = JSON.stringify(application);
  for (const arn of new Set(text.match(/arn:aws:iam::\d{12}:role\/[\w+=,.@-]+/g) ?? [])) {
    // The world made payments-deployer already, trusting the same subjects.
    if (arn === deployRole || rolesMade.has(arn)) continue;
    rolesMade.add(arn);
    createTrustingRole(w.peer, w.trusted, {
      arn,
      subjectLike: `system:scoped-step:${w.ns}:*`,
      maxSessionDuration: 3600,
      permissionPolicies: [
        {
          Version: "2012-10-17",
          Statement: [{ Effect: "Allow", Action: ["s3:*", "cloudfront:*", "ecs:*", "ecr:*"], Resource: "*" }],
        },
      ],
    });
  }
}

interface Ran {
  pipelineRun: PipelineRun;
  customRuns: CustomRun[];
}

interface Entry {
  /** The entry's folder under catalog/. */
  dir: string;
  /** Files applied before the entry's own, relative to catalog/ (entries it uses). */
  uses?: string[];
  /** The `team` label the entry's sample policy selects. */
  team: string;
  prepare?(w: TektonWorld): void | Promise<void>;
  /** The test run as this world can run it, when it cannot run as written. */
  rewrite?(w: TektonWorld, doc: ApiObject): ApiObject;
  check(w: TektonWorld, runs: Map<string, Ran>): void | Promise<void>;
}

const ecrRegistry = "111122223333.dkr.ecr.eu-west-1.amazonaws.com";

/** The run's pushes to ECR go to the peer's registry instead: its address, plain HTTP. */
function pushTo(w: TektonWorld, doc: ApiObject): ApiObject {
  const host = w.peer.endpoint.replace(/^http:\/\//, "");
  const text = JSON.stringify(doc).replaceAll(`"${ecrRegistry}/`, `"${host}/`);
  const run = JSON.parse(text) as {
    spec: { pipelineSpec: { tasks: { taskRef?: { name?: string }; params?: unknown[] }[] } };
  };
  for (const task of run.spec.pipelineSpec.tasks) {
    if (task.taskRef?.name !== "ecr-push") continue;
    // The region is no longer in the repository's host name.
    (task.params ??= []).push({ name: "tls-verify", value: "false" }, { name: "region", value: "eu-west-1" });
  }
  return run as unknown as ApiObject;
}

const objectsUnder = (w: TektonWorld, bucket: string, prefix: string) =>
  w.peer
    .calls()
    .filter((call) => call.action === "PutObject" && call.outcome === "ok")
    .map((call) => call.resource ?? "")
    .filter((arn) => arn.startsWith(`arn:aws:s3:::${bucket}/${prefix}`))
    .map((arn) => arn.slice(`arn:aws:s3:::${bucket}/`.length))
    .sort();

const entries: Entry[] = [
  {
    dir: "scopedstep/s3-upload/0.1",
    team: "storefront",
    prepare(w) {
      w.peer.createBucket("storefront-assets");
    },
    check(w, runs) {
      const { pipelineRun } = runs.get("s3-upload-test") ?? assert.fail("s3-upload-test ran");
      assert.deepEqual(pipelineResults(pipelineRun), {
        folder: "s3://storefront-assets/releases/2.0.0/",
        file: "s3://storefront-assets/releases/2.0.0/group",
      });
      assert.deepEqual(objectsUnder(w, "storefront-assets", "releases/2.0.0/"), [
        "releases/2.0.0/VERSION",
        "releases/2.0.0/css/site.css",
        "releases/2.0.0/group",
      ]);
      assert.equal(
        w.peer.getObject("storefront-assets", "releases/2.0.0/VERSION")?.toString(),
        "assets 2.0.0\n",
      );
      assert.match(
        w.peer.getObject("storefront-assets", "releases/2.0.0/group")?.toString() ?? "",
        /^root:x:0:/,
      );
    },
  },
  {
    dir: "scopedstep/deploy-with-role/0.1",
    team: "payments",
    check(w, runs) {
      const { pipelineRun, customRuns } =
        runs.get("deploy-with-role-test") ?? assert.fail("deploy-with-role-test ran");
      const [customRun] = customRuns;
      assert.ok(customRun);
      const arn = resultsOf(customRun)["aws-assumed-role-arn"];
      assert.match(String(arn), new RegExp(`^arn:aws:sts::${account}:assumed-role/payments-deployer/`));
      // What it printed, the trailing newline dropped as from every result file.
      assert.equal(pipelineResults(pipelineRun).output, arn);
      // The sample policy revokes with a deny on the role, by the session's source identity.
      const denies = Object.values(w.peer.rolePolicies("payments-deployer")).join("\n");
      const source = String(resultsOf(customRun)["aws-source-identity"]);
      assert.ok(source && denies.includes(`"${source}"`), `the session of ${source} is denied on the role`);
    },
  },
  {
    dir: "scopedstep/ecr-push/0.1",
    team: "payments",
    async prepare(w) {
      await w.peer.startRegistry("eu-west-1");
      w.peer.createRepository("payments/api");
    },
    rewrite: pushTo,
    async check(w, runs) {
      const { pipelineRun, customRuns } = runs.get("ecr-push-test") ?? assert.fail("ecr-push-test ran");
      const pushed = await w.peer.registryManifest("payments/api", "1.4.2");
      assert.ok(pushed, "the registry holds payments/api:1.4.2");
      assert.equal(
        pipelineResults(pipelineRun).digest,
        pushed.digest,
        "the digest the step returned is the tag's",
      );
      const manifest = JSON.parse(pushed.body.toString("utf8")) as { layers?: unknown[] };
      assert.equal(manifest.layers?.length, 1, "the one layer the build task wrote");
      const [customRun] = customRuns;
      const roleArn = resultsOf(customRun ?? assert.fail("the push ran"))["aws-assumed-role-arn"];
      const puts = w.peer
        .calls()
        .filter((c) => c.service === "ecr" && c.action === "PutImage")
        .map((c) => [c.outcome, c.principal, c.resource]);
      assert.deepEqual(puts, [["ok", roleArn, "arn:aws:ecr:eu-west-1:111122223333:repository/payments/api"]]);
    },
  },
  {
    dir: "pipeline/publish-static-site/0.1",
    uses: ["scopedstep/s3-upload/0.1/s3-upload.yaml"],
    team: "storefront",
    prepare(w) {
      w.peer.createBucket("storefront-assets");
      w.peer.createDistribution("E2EXAMPLE1234");
    },
    check(w, runs) {
      const invalidations = w.peer.invalidations("E2EXAMPLE1234");
      for (const [name, version] of [
        ["publish-static-site-claim", "1.0.0"],
        ["publish-static-site-template", "2.0.0"],
      ] as const) {
        const { pipelineRun } = runs.get(name) ?? assert.fail(`${name} ran`);
        const results = pipelineResults(pipelineRun);
        assert.match(
          String(results["caller-arn"]),
          new RegExp(`^arn:aws:sts::${account}:assumed-role/storefront-publisher/`),
        );
        assert.equal(results.uri, `s3://storefront-assets/site/${version}/`);
        assert.deepEqual(
          objectsUnder(w, "storefront-assets", `site/${version}/`),
          [`site/${version}/css/site.css`, `site/${version}/index.html`],
          "exactly the files the build wrote into the site folder",
        );
        assert.equal(
          w.peer.getObject("storefront-assets", `site/${version}/index.html`)?.toString(),
          `<h1>storefront ${version}</h1>`,
        );
        const invalidation = invalidations.find((i) => i.id === results["invalidation-id"]);
        assert.ok(invalidation, `${name}: invalidation ${String(results["invalidation-id"])} was made`);
        assert.deepEqual(invalidation.paths, ["/*"]);
        assert.match(invalidation.principal, /:assumed-role\/storefront-publisher\//);
      }
    },
  },
];

for (const entry of entries) {
  test(`catalog ${entry.dir}: its tests run on Tekton with the samples' Application and policy`, async () => {
    const w = await world;
    const dir = path.join("catalog", entry.dir);
    const provisioner = provisionHostPathClaims(c, w.ns);
    try {
      await labelTeam(w, entry.team);
      for (const file of entry.uses ?? []) await apply(w, path.join("catalog", file));
      await apply(w, path.join(dir, `${entry.dir.split("/")[1] ?? ""}.yaml`));
      const [application] = await apply(w, path.join(dir, "samples/application.yaml"));
      assert.ok(application);
      trustRoles(w, application);
      for (const policy of await apply(w, path.join(dir, "samples/scoped-step-policy.yaml")))
        await policyInUse(w.cluster.objects, policy.metadata.name ?? "", () => w.controller?.output() ?? "");
      await entry.prepare?.(w);
      if (existsSync(path.join(repoRoot, dir, "tests/resources.yaml")))
        await apply(w, path.join(dir, "tests/resources.yaml"));

      const runFiles = (await readdir(path.join(repoRoot, dir, "tests")))
        .sort()
        .filter((f) => /^run.*\.yaml$/.test(f));
      assert.ok(runFiles.length > 0, `${dir}/tests has a run`);
      const runs = new Map<string, Ran>();
      for (const file of runFiles) {
        for (const written of await readDocs(path.join(dir, "tests", file))) {
          const doc = entry.rewrite?.(w, written) ?? written;
          const res = await createRaw(w.cluster.kc, doc, { namespace: w.ns });
          assert.equal(res.status, 201, `${file}: ${statusMessage(res)}`);
        }
      }
      for (const file of runFiles) {
        for (const doc of await readDocs(path.join(dir, "tests", file))) {
          const name = doc.metadata.name ?? "";
          const pipelineRun = await w.waitPipelineRunDone(name, 300_000);
          const customRuns = await w.customRuns(name);
          const why = customRuns
            .map((r) => `${r.metadata.name ?? ""}: ${condition(r)?.message ?? ""}`)
            .join("; ");
          assert.equal(
            pipelineCondition(pipelineRun)?.status,
            "True",
            `${name}: ${pipelineCondition(pipelineRun)?.message ?? ""}; ${why}`,
          );
          for (const customRun of customRuns) {
            assert.ok(
              resultsOf(customRun)["revoked-at"],
              `${customRun.metadata.name ?? ""}: credentials revoked`,
            );
          }
          runs.set(name, { pipelineRun, customRuns });
        }
      }
      await entry.check(w, runs);
    } finally {
      provisioner.stop();
      for (const obj of made.splice(0).filter((o) => o.kind)) {
        await deleteRaw(w.cluster.kc, obj, obj.metadata.name ?? "", obj.metadata.namespace);
      }
    }
  });
}

test("every Tekton object in the catalog passes Tekton's admission webhook as written (dry run)", async () => {
  const w = await world;
  let checked = 0;
  for (const { file, doc } of await catalogDocs()) {
    if (!doc.apiVersion.startsWith("tekton.dev/")) continue;
    const res = await createRaw(w.cluster.kc, doc, { dryRun: true, namespace: w.ns });
    assert.ok(
      [201, 409].includes(res.status),
      `${file}: ${doc.kind}: HTTP ${res.status} ${statusMessage(res)}`,
    );
    assert.deepEqual(res.warnings, [], `${file}: ${doc.kind}: warnings`);
    checked++;
  }
  assert.ok(checked >= 10, `${checked} Tekton objects`);
});

test("no credential or token the runs were issued was written to a log, status, event or pod", async () => {
  await assertNoSecretWritten(await world);
});
