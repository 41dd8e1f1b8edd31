// Chaos: N CustomRuns with real AWS credentials and deny-policy revocation while the controller is
// SIGKILLed again and again, at random moments after it takes the lease and, on some restarts, at
// a random named failpoint. Some steps fail (some with a retry), some runs are cancelled at a
// random moment, some are deleted mid-step with their finalizer stripped first, as a tenant can.
// Once every run has ended and a last controller has settled, it counts what the AWS peer issued
// against what was revoked: an orphan is a session neither denied on its role nor tracked in the
// ledger until its expiry. Prints figures; not a test.
//   node bench/chaos.ts [N]        default N = 500
import { once } from "node:events";
import type { ChildProcess } from "node:child_process";
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from "@kubernetes/client-node";
import { kubeFromKubeConfig } from "../controller/kube-client.ts";
import { kubeLedger } from "../controller/ledger.ts";
import { failpoints } from "../tasks/scoped-step/ports.ts";
import type { CustomRun } from "../tasks/scoped-step/types.ts";
import { createScopedStepPolicy } from "../test/support/policy.ts";
import { createApplication, identityComponent } from "../test/support/application.ts";
import { startAwsPeer } from "../simulators/aws/server.ts";
import { controllerAwsSettings, createTrustingRole, registerIssuer } from "../test/support/aws/trust.ts";
import { startTestKubelet } from "../simulators/kubelet/index.ts";
import { pino } from "pino";
import { benchControlPlane, follow, namespaces, startControllerProcess, type Seen } from "./support.ts";

const n = Number(process.argv[2] ?? 500);
/** A controller that leads is killed at a uniformly random moment within this time. */
const killWithinMs = 8000;
const roles = 8; // deny lists spread over roles, each far from IAM's inline policy limit
const ns = "chaos";
const ctl = "chaos-ctl";
const runs = { group: "tekton.dev", version: "v1beta1", plural: "customruns" } as const;
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;

type Kind = "succeed" | "fail" | "fail-retry" | "cancel" | "delete";
const kindOf = (i: number): Kind => {
  const r = (i * 7919) % 100; // fixed mix, spread over the run order
  return r < 60 ? "succeed" : r < 70 ? "fail" : r < 80 ? "fail-retry" : r < 93 ? "cancel" : "delete";
};

const cp = await benchControlPlane();
try {
  await chaos();
} finally {
  await cp.stop();
}

async function chaos(): Promise<void> {
  const kc = cp.kubeConfig;
  await namespaces(kc, ns, ctl);
  const core = kc.makeApiClient(CoreV1Api);
  const objects = kc.makeApiClient(CustomObjectsApi);
  const leases = kc.makeApiClient(CoordinationV1Api);
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: "default" } } });

  const peer = await startAwsPeer();
  const trusted = await registerIssuer(peer);
  for (let k = 0; k < roles; k++) {
    const arn = `arn:aws:iam::111122223333:role/chaos-${k}`;
    createTrustingRole(peer, trusted, { arn, subjectLike: `system:scoped-step:${ns}:*` });
    await createApplication(objects, ns, `app-${k}`, [identityComponent({ aws: { roleArn: arn } })]);
  }
  await createScopedStepPolicy(objects, ns, {
    namespaces: [ns],
    aws: { allowedRoleArns: ["arn:aws:iam::111122223333:role/chaos-*"] },
    revocation: "deny-policy",
  });
  const kubelet = await startTestKubelet(kc, { namespace: ns });

  // Every pod the step pods' names ever had: a name seen with two UIDs is a duplicate pod.
  const podUids = new Map<string, Set<string>>();
  const podWatch = follow(new Watch(kc), `/api/v1/namespaces/${ns}/pods`, (type, pod: Seen) => {
    if (type !== "ADDED" || !pod.metadata.uid) return;
    const seen = podUids.get(pod.metadata.name) ?? new Set<string>();
    seen.add(pod.metadata.uid);
    podUids.set(pod.metadata.name, seen);
  });

  // Every deny and every expiry-tracked ledger entry, polled for the whole run: both are pruned once
  // their session expires, so what is left at the end is not the whole story.
  const revocationsSeen = watchRevocations(
    () => Array.from({ length: roles }, (_, k) => peer.rolePolicies(`chaos-${k}`)["scoped-step-revocations"]),
    kubeLedger(await kubeFromKubeConfig(kc), ctl, pino({ level: "silent" })),
    () => peer.now().getTime(),
  );

  // The controller, killed and restarted until every run has ended.
  const aws = controllerAwsSettings(peer, trusted);
  const args = [
    `--namespace=${ctl}`,
    `--watch-namespaces=${ns}`,
    "--concurrency=16",
    "--log-level=fatal",
    "--lease-duration-seconds=4",
    "--renew-deadline-seconds=3",
    "--retry-period-seconds=1",
    ...aws.flags,
  ];
  const env = aws.env;
  let generation = 0;
  const start = (extraEnv: Record<string, string> = {}) => {
    const identity = `chaos-${generation++}`;
    const child = startControllerProcess(cp.kubeconfigPath, [...args, `--identity=${identity}`], {
      ...env,
      ...extraEnv,
    });
    return { child, identity, exited: once(child, "exit") };
  };
  const leads = async (identity: string, child: ChildProcess) => {
    while (child.exitCode === null && child.signalCode === null) {
      const lease = await leases
        .readNamespacedLease({ namespace: ctl, name: "scoped-step-controller" })
        .catch(() => undefined);
      if (lease?.spec?.holderIdentity === identity) return true;
      await sleep(100);
    }
    return false;
  };
  const trials = { timer: 0, failpoint: 0, other: 0 };
  let chaosOn = true;
  const chaosLoop = (async () => {
    while (chaosOn) {
      const failpoint = Math.random() < 0.3 ? pick(failpoints) : undefined;
      const c = start(failpoint ? { SCOPED_STEP_FAILPOINT: failpoint } : {});
      if (await leads(c.identity, c.child)) {
        await Promise.race([sleep(Math.random() * killWithinMs), c.exited]);
      }
      if (c.child.exitCode === null && c.child.signalCode === null) {
        c.child.kill("SIGKILL");
        await c.exited;
        trials.timer++;
      } else if (c.child.signalCode === "SIGKILL") {
        trials.failpoint++;
      } else {
        trials.other++;
      }
    }
  })();

  // The runs, created by 16 writers; cancellations and tenant deletions at random moments.
  const started = performance.now();
  const body = (i: number) => {
    const kind = kindOf(i);
    const script =
      kind === "succeed"
        ? "echo ok > $(results.out.path)"
        : kind === "fail" || kind === "fail-retry"
          ? "echo failing on purpose; exit 3"
          : "sleep 20";
    return {
      apiVersion: "tekton.dev/v1beta1",
      kind: "CustomRun",
      metadata: { name: `run-${i}` },
      spec: {
        customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" },
        ...(kind === "fail-retry" ? { retries: 1 } : {}),
        params: [
          { name: "image", value: "alpine" },
          { name: "script", value: script },
          { name: "results", value: ["out"] },
          { name: "application", value: `app-${i % roles}` },
          { name: "component", value: "api" },
        ],
      },
    };
  };
  const interventions: Promise<void>[] = [];
  const intervene = async (i: number) => {
    await sleep(2000 + Math.random() * 15_000);
    const name = `run-${i}`;
    if (kindOf(i) === "cancel") {
      await objects.patchNamespacedCustomObject(
        { ...runs, namespace: ns, name, body: { spec: { status: "RunCancelled", statusMessage: "chaos" } } },
        mergePatch,
      );
    } else {
      await objects.patchNamespacedCustomObject(
        { ...runs, namespace: ns, name, body: { metadata: { finalizers: null } } },
        mergePatch,
      );
      await objects.deleteNamespacedCustomObject({ ...runs, namespace: ns, name });
    }
  };
  await Promise.all(
    Array.from({ length: 16 }, async (_, w) => {
      for (let i = w; i < n; i += 16) {
        await objects.createNamespacedCustomObject({ ...runs, namespace: ns, body: body(i) });
        if (kindOf(i) === "cancel" || kindOf(i) === "delete") interventions.push(intervene(i));
      }
    }),
  );
  await Promise.all(interventions);

  const list = async () =>
    ((await objects.listNamespacedCustomObject({ ...runs, namespace: ns })) as { items: CustomRun[] }).items;
  const terminal = (r: CustomRun) =>
    ["True", "False"].includes(r.status?.conditions?.find((c) => c.type === "Succeeded")?.status ?? "");
  const giveUpAt = Date.now() + 30 * 60_000;
  while (!(await list()).every(terminal) && Date.now() < giveUpAt) await sleep(2000);
  const allEnded = (performance.now() - started) / 1000;
  chaosOn = false;
  await chaosLoop;

  // A last controller, left alone, settles what the last kill interrupted.
  const ledger = kubeLedger(await kubeFromKubeConfig(kc), ctl, pino({ level: "silent" }));
  const last = start();
  await leads(last.identity, last.child);
  const settleBy = Date.now() + 120_000;
  for (;;) {
    const items = await list();
    const entries = await ledger.list();
    const settled =
      items.every((r) => terminal(r) && (r.metadata.finalizers ?? []).length === 0) &&
      entries.every((e) => e.state === "revoked");
    if (settled || Date.now() > settleBy) break;
    await sleep(1000);
  }
  last.child.kill("SIGTERM");
  await last.exited;
  podWatch.stop();

  await revocationsSeen.stop();
  const items = await list();
  const entries = await ledger.list();
  const sessions = peer.sessions();
  const sourceOf = (s: (typeof sessions)[number]) => s.sourceIdentity ?? "";
  // Revoked: denied on its role while it was still valid. A deny (and an expiry-tracked ledger
  // entry) is pruned once its session has expired, so the poll below saw each while it existed.
  const revoked = sessions.filter((s) => {
    const at = revocationsSeen.deniedAt.get(sourceOf(s));
    return at !== undefined && at <= s.expiration.getTime();
  });
  const deniedLate = sessions.filter((s) => {
    const at = revocationsSeen.deniedAt.get(sourceOf(s));
    return at !== undefined && at > s.expiration.getTime();
  });
  const tracked = sessions.filter(
    (s) => !revocationsSeen.deniedAt.has(sourceOf(s)) && revocationsSeen.expiryTracked.has(sourceOf(s)),
  );
  const orphans = sessions.length - revoked.length - deniedLate.length - tracked.length;
  const secretsLeft = (await core.listNamespacedSecret({ namespace: ns })).items.filter((s) =>
    s.metadata?.name?.includes("-credentials-"),
  ).length;
  const duplicates = [...podUids.values()].filter((uids) => uids.size > 1).length;
  const byReason = new Map<string, number>();
  for (const r of items) {
    const reason = r.status?.conditions?.find((c) => c.type === "Succeeded")?.reason ?? "none";
    byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
  }

  console.log(`\nchaos: N = ${n} CustomRuns, AWS provider with deny-policy revocation over ${roles} roles`);
  console.log(
    `  trials (controller SIGKILLs)     : ${trials.timer + trials.failpoint} (${trials.timer} at random moments, ${trials.failpoint} at random failpoints; ${trials.other} other exits)`,
  );
  console.log(
    `  runs terminal                    : ${items.filter(terminal).length} of ${items.length} left (${n - items.length} deleted mid-step by the tenant)`,
  );
  console.log(
    `  by reason                        : ${[...byReason].map(([k, v]) => `${k} ${v}`).join(", ")}`,
  );
  console.log(`  credentials minted (STS sessions): ${sessions.length}`);
  console.log(`  revoked (denied on the role)     : ${revoked.length}`);
  console.log(`  expiry-tracked in the ledger     : ${tracked.length}`);
  console.log(`  denied only after it expired     : ${deniedLate.length}`);
  console.log(`  orphans                          : ${orphans}`);
  console.log(`  duplicate pods                   : ${duplicates} (pod names seen: ${podUids.size})`);
  console.log(`  credential Secrets left          : ${secretsLeft}`);
  console.log(
    `  ledger entries not revoked       : ${entries.filter((e) => e.state !== "revoked").length} of ${entries.length}`,
  );
  console.log(`  time until every run had ended   : ${allEnded.toFixed(0)} s`);

  await kubelet.stop();
  await peer.stop();
}

/** Polls the role's deny documents and the ledger each second: when each source identity was first denied, and which were tracked until expiry. */
function watchRevocations(
  denyDocuments: () => (string | undefined)[],
  ledger: ReturnType<typeof kubeLedger>,
  now: () => number,
) {
  const deniedAt = new Map<string, number>();
  const expiryTracked = new Set<string>();
  const look = async () => {
    const at = now();
    for (const doc of denyDocuments()) {
      if (!doc) continue;
      const parsed = JSON.parse(doc) as {
        Statement: { Condition: { StringEquals: { "aws:SourceIdentity": string[] } } }[];
      };
      for (const st of parsed.Statement)
        for (const id of st.Condition.StringEquals["aws:SourceIdentity"])
          if (!deniedAt.has(id)) deniedAt.set(id, at);
    }
    for (const e of await ledger.list())
      if (e.revocation?.startsWith("expiry") && e.intent.sourceIdentity)
        expiryTracked.add(e.intent.sourceIdentity);
  };
  let on = true;
  const loop = (async () => {
    while (on) {
      await look().catch(() => undefined);
      await sleep(1000);
    }
  })();
  return {
    deniedAt,
    expiryTracked,
    async stop() {
      on = false;
      await loop;
      await look();
    },
  };
}
