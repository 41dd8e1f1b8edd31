// make demo: the main job end to end on a local cluster with a real node. Inside namespaces of its
// own (hack/cluster/netns.sh) it starts etcd, the Kubernetes control plane, containerd and a
// kubelet, installs Tekton Pipelines from its own manifests (controller and admission webhook as
// pods), and starts the loopback AWS peer (STS, IAM, S3) and the scoped-step
// controller; applies a policy, an Application with a scoped-identity trait, a ScopedStep, a
// Pipeline and a PipelineRun, as a user would; follows the CustomRun Tekton creates (its step runs
// Debian's aws CLI in a real container) and the TaskRun after it; prints the identity the step had
// and a few metrics; and tears everything down.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { CoreV1Api, CustomObjectsApi, Watch, type V1Pod } from "@kubernetes/client-node";
import { startCluster } from "./cluster/cluster.ts";
import { inOwnNamespaces } from "./cluster/enter.ts";
import { installTekton } from "./cluster/tekton-install.ts";
import { waitFor } from "./cluster/processes.ts";
import { startAwsPeer } from "../simulators/aws/server.ts";
import { createTrustingRole, registerIssuer } from "../test/support/aws/trust.ts";
import type { CustomRun } from "../tasks/scoped-step/types.ts";
import { createApplication, demoComponent } from "../test/support/application.ts";

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
const say = (line: string) => console.log(`[${elapsed()}] ${line}`);
const ownCrds = ["scopedstep.yaml", "scopedsteppolicy.yaml"].map((f) =>
  fileURLToPath(new URL(`../catalog/crds/${f}`, import.meta.url)),
);
const team = "team-payments";
const roleArn = "arn:aws:iam::111122223333:role/payments-deployer";

const images = await inOwnNamespaces({ node: true, log: (l) => say(`[node] ${l}`) });
if (!images) throw new Error("the node's images were not built");
say("starting a cluster with a real node: etcd, the Kubernetes control plane, containerd and a kubelet");
const cp = await startCluster({ extraCrdFiles: ownCrds, images, log: (l) => say(`[cluster] ${l}`) });
say(`node ${cp.node.ip} is Ready`);
const cleanups: (() => Promise<unknown>)[] = [() => cp.stop()];
try {
  const kc = cp.kubeConfig;
  const core = kc.makeApiClient(CoreV1Api);
  const objects = kc.makeApiClient(CustomObjectsApi);
  for (const name of ["scoped-step", team]) await core.createNamespace({ body: { metadata: { name } } });
  // The controller-manager gives each namespace its default ServiceAccount, which pods run as.
  await waitFor(
    `the default ServiceAccount of ${team}`,
    () => core.readNamespacedServiceAccount({ namespace: team, name: "default" }).then(() => true),
    { timeoutMs: 120_000 },
  );

  say("starting the loopback AWS peer (STS, IAM, S3) on the node's address, where pods reach it");
  const peer = await startAwsPeer({ host: cp.node.ip });
  cleanups.unshift(() => peer.stop());
  const trusted = await registerIssuer(peer);
  const { issuer, port } = trusted;
  createTrustingRole(peer, trusted, {
    arn: roleArn,
    subjectLike: `system:scoped-step:${team}:payments:*`,
    permissionPolicies: [
      { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "s3:*", Resource: "arn:aws:s3:::*" }] },
    ],
  });
  peer.putObject("payments-artifacts", "README", "artifacts of the payments team");

  say(`applying a ScopedStepPolicy for ${team}, an Application with a scoped-identity trait, a ScopedStep`);
  await objects.createClusterCustomObject({
    group: "scopedstep.dev",
    version: "v1alpha1",
    plural: "scopedsteppolicies",
    body: {
      apiVersion: "scopedstep.dev/v1alpha1",
      kind: "ScopedStepPolicy",
      metadata: { name: "payments" },
      spec: {
        namespaces: [team],
        aws: {
          allowedRoleArns: ["arn:aws:iam::111122223333:role/payments-*"],
          maxSessionDuration: 3600,
          allowedSessionTags: { team: ["payments"] },
        },
        revocation: "deny-policy",
      },
    },
  });
  await createApplication(objects, team, "payments", [demoComponent(roleArn)]);
  const sigv4 = `curl -s --aws-sigv4 "aws:amz:eu-west-1:SERVICE" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-security-token: $AWS_SESSION_TOKEN"`;
  await objects.createNamespacedCustomObject({
    group: "scopedstep.dev",
    version: "v1alpha1",
    namespace: team,
    plural: "scopedsteps",
    body: {
      apiVersion: "scopedstep.dev/v1alpha1",
      kind: "ScopedStep",
      metadata: { name: "publish-release" },
      spec: {
        params: [{ name: "version" }, { name: "endpoint" }],
        results: [{ name: "uri" }, { name: "caller" }, { name: "outside-scope" }],
        // Debian's aws CLI, in an image built here; curl signs the S3 calls (SigV4) itself.
        image: images.awscli,
        application: "payments",
        component: "api",
        script: [
          "set -e",
          'aws --endpoint-url "$(params.endpoint)" sts get-caller-identity --query Arn --output text > $(results.caller.path)',
          "echo 'payments $(params.version)' > /tmp/notes",
          `${sigv4.replace("SERVICE", "s3")} -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T /tmp/notes "$(params.endpoint)/payments-artifacts/releases/$(params.version)/notes.txt"`,
          "echo s3://payments-artifacts/releases/$(params.version)/notes.txt > $(results.uri.path)",
          `${sigv4.replace("SERVICE", "s3")} -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -o /dev/null -w '%{http_code}' "$(params.endpoint)/payments-artifacts/README" > $(results.outside-scope.path)`,
        ].join("\n"),
      },
    },
  });

  say("starting the scoped-step controller");
  const controller = spawn(
    process.execPath,
    [
      fileURLToPath(new URL("../controller/main.ts", import.meta.url)),
      "--namespace=scoped-step",
      `--watch-namespaces=${team}`,
      `--http-port=${port}`,
      "--http-host=127.0.0.1",
      `--issuer-url=${issuer}`,
      "--allow-insecure-issuer=true",
      `--sts-endpoint=${peer.endpoint}`,
      `--iam-endpoint=${peer.endpoint}`,
      "--log-level=warn",
      // Step pods are prepared from the node's build of Tekton's entrypoint image.
      `--entrypoint-image=${images.tekton.entrypoint}`,
    ],
    {
      env: {
        ...process.env,
        KUBECONFIG: cp.kubeconfigPath,
        AWS_ACCESS_KEY_ID: peer.adminCredentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: peer.adminCredentials.secretAccessKey,
        AWS_EC2_METADATA_DISABLED: "true",
      },
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
  cleanups.unshift(async () => {
    controller.kill("SIGTERM");
    await new Promise((r) => controller.once("exit", r));
  });

  say("installing Tekton Pipelines as its release does: controller and admission webhook as Deployments");
  const tekton = await installTekton(cp, images, { log: (l) => say(`[tekton] ${l}`) });
  say(`Tekton ready in ${(tekton.readyMs / 1000).toFixed(1)} s`);

  say(
    "creating a Pipeline: ScopedStep publish-release, then a Tekton Task that announces it; and a PipelineRun",
  );
  await objects.createNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1",
    namespace: team,
    plural: "pipelines",
    body: {
      apiVersion: "tekton.dev/v1",
      kind: "Pipeline",
      metadata: { name: "release" },
      spec: {
        params: [{ name: "version" }, { name: "endpoint" }],
        tasks: [
          {
            name: "publish",
            taskRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep", name: "publish-release" },
            params: [
              { name: "version", value: "$(params.version)" },
              { name: "endpoint", value: "$(params.endpoint)" },
            ],
            timeout: "5m",
          },
          {
            // A plain Tekton Task: its pod runs Tekton's own entrypoint, with no AWS credentials.
            name: "announce",
            params: [
              { name: "uri", value: "$(tasks.publish.results.uri)" },
              { name: "role", value: "$(tasks.publish.results.aws-assumed-role-arn)" },
            ],
            taskSpec: {
              params: [{ name: "uri" }, { name: "role" }],
              results: [{ name: "announcement" }, { name: "aws-variables" }],
              steps: [
                {
                  name: "announce",
                  image: images.busybox,
                  script: [
                    'printf "%s published by %s" "$(params.uri)" "$(params.role)" > $(results.announcement.path)',
                    "env | grep -c '^AWS_' > $(results.aws-variables.path) || true",
                  ].join("\n"),
                },
              ],
            },
          },
        ],
        results: [
          { name: "assumed-role", value: "$(tasks.publish.results.aws-assumed-role-arn)" },
          { name: "uri", value: "$(tasks.publish.results.uri)" },
          { name: "announcement", value: "$(tasks.announce.results.announcement)" },
          { name: "announce-aws-variables", value: "$(tasks.announce.results.aws-variables)" },
        ],
      },
    },
  });
  await objects.createNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1",
    namespace: team,
    plural: "pipelineruns",
    body: {
      apiVersion: "tekton.dev/v1",
      kind: "PipelineRun",
      metadata: { name: "release-1-4-2" },
      spec: {
        pipelineRef: { name: "release" },
        params: [
          { name: "version", value: "1.4.2" },
          { name: "endpoint", value: peer.endpoint },
        ],
      },
    },
  });

  const run = await new Promise<CustomRun>((resolve, reject) => {
    let last = "";
    const deadline = setTimeout(() => reject(new Error("the run did not finish within 5 minutes")), 300_000);
    void new Watch(kc).watch(
      `/apis/tekton.dev/v1beta1/namespaces/${team}/customruns`,
      {},
      (_type, obj: CustomRun) => {
        const c = obj.status?.conditions?.find((x) => x.type === "Succeeded");
        const line = c ? `${c.status}/${c.reason ?? ""}: ${c.message ?? ""}` : "";
        if (line && line !== last) say(`  run ${obj.metadata.name ?? ""}: ${line}`);
        last = line;
        if (c?.status === "True" || c?.status === "False") {
          clearTimeout(deadline);
          resolve(obj);
        }
      },
      (err: unknown) => {
        if (err) reject(err instanceof Error ? err : new Error("watch failed"));
      },
    );
  });
  const results = Object.fromEntries((run.status?.results ?? []).map((r) => [r.name, r.value]));
  const settled = await (async () => {
    for (let i = 0; i < 50; i++) {
      const again = (await objects.getNamespacedCustomObject({
        group: "tekton.dev",
        version: "v1beta1",
        namespace: team,
        plural: "customruns",
        name: run.metadata.name ?? "",
      })) as CustomRun;
      if (!(again.metadata.finalizers ?? []).length) return again;
      await new Promise((r) => setTimeout(r, 100));
    }
    return run;
  })();
  const secretLeft = await core
    .readNamespacedSecret({ namespace: team, name: `${run.metadata.name ?? ""}-credentials-0` })
    .then(
      () => true,
      () => false,
    );
  type PipelineRun = CustomRun & { status?: { results?: { name: string; value: string }[] } };
  let pipelineRun: PipelineRun | undefined;
  for (let i = 0; i < 1200; i++) {
    pipelineRun = (await objects.getNamespacedCustomObject({
      group: "tekton.dev",
      version: "v1",
      namespace: team,
      plural: "pipelineruns",
      name: "release-1-4-2",
    })) as PipelineRun;
    if (["True", "False"].includes(pipelineRun.status?.conditions?.[0]?.status ?? "")) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const uploaded = peer.getObject("payments-artifacts", "releases/1.4.2/notes.txt")?.toString().trim();

  console.log("\n================ scoped-step demo: what the step was ================");
  const row = (k: string, v: string | undefined) => console.log(`  ${k.padEnd(28)} ${v ?? "-"}`);
  const prCondition = pipelineRun?.status?.conditions?.[0];
  const runCondition = run.status?.conditions?.[0];
  row("PipelineRun", `release-1-4-2: ${prCondition?.status ?? "?"} (${prCondition?.reason ?? ""})`);
  row(
    "CustomRun",
    `${run.metadata.name ?? ""}: ${runCondition?.status ?? ""} (${runCondition?.reason ?? ""})`,
  );
  row("identity subject", results["identity-subject"]);
  row("issuer", results["identity-issuer"]);
  row("token id (jti)", results["token-id"]);
  row("role", results["aws-role-arn"]);
  row("assumed role", results["aws-assumed-role-arn"]);
  row("session name", results["aws-session-name"]);
  row("source identity", results["aws-source-identity"]);
  row("credentials expire", results["credentials-expiration"]);
  row("revoked at", results["revoked-at"]);
  console.log("  -- what the step itself saw and did --");
  row("GetCallerIdentity", results.caller);
  row("uploaded", `${results.uri ?? "-"} (S3 now holds: "${uploaded ?? "nothing"}")`);
  row(
    "read outside policy",
    `HTTP ${results["outside-scope"] ?? "?"} (the session policy allows releases/* only)`,
  );
  row("credential Secret", secretLeft ? "STILL PRESENT" : "deleted");
  row(
    "deny on the role",
    peer.rolePolicies("payments-deployer")["scoped-step-revocations"] ? "in place until expiry" : "none",
  );
  row("finalizer", (settled.metadata.finalizers ?? []).length ? "still there" : "removed");
  for (const r of pipelineRun?.status?.results ?? []) row(`pipeline result ${r.name}`, r.value);
  console.log("  -- the pods, as the kubelet ran them --");
  const pods: V1Pod[] = (await core.listNamespacedPod({ namespace: team })).items;
  for (const pod of pods) {
    console.log(`  ${pod.metadata?.name ?? ""} on ${pod.spec?.nodeName ?? "no node"}`);
    for (const c of [
      ...(pod.status?.initContainerStatuses ?? []),
      ...(pod.status?.containerStatuses ?? []),
    ]) {
      const exit = c.state?.terminated?.exitCode;
      row(`  ${c.name}`, `${c.image} ${c.containerID?.slice(0, 24) ?? "not started"}… exit ${exit ?? "-"}`);
    }
  }

  console.log("\n  -- a few metrics from /metrics --");
  const metrics = await (await fetch(`${issuer}/metrics`)).text();
  for (const name of [
    "scoped_step_runs_finished_total",
    "scoped_step_credential_mints_total",
    "scoped_step_credential_revocations_total",
    "scoped_step_active_credentials",
    "scoped_step_credentials_pending_revocation",
    "scoped_step_sts_request_duration_seconds_count",
    "scoped_step_leader",
  ]) {
    for (const line of metrics.split("\n").filter((l) => l.startsWith(name))) console.log(`  ${line}`);
  }
  console.log("=====================================================================\n");
  if (run.status?.conditions?.[0]?.status !== "True" || prCondition?.status !== "True" || secretLeft) {
    process.exitCode = 1;
  }
} finally {
  say("tearing everything down");
  for (const cleanup of cleanups) await cleanup().catch(() => undefined);
  say(`done in ${elapsed()}`);
}
