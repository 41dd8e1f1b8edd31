// The controller with --signing-key-store=kms, end to end: local-kms holds the signing key behind
// an alias, the controller process signs each step's token through it, the AWS peer fetches the
// controller's JWKS and verifies the token, and the step uses the session. Also: not ready while
// KMS is unreachable at start, a KMS outage during a run is retried, a disabled key fails the run
// with a named reason, and nothing private is written anywhere.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DisableKeyCommand, EnableKeyCommand } from "@aws-sdk/client-kms";
import { CoreV1Api } from "@kubernetes/client-node";
import {
  everythingWritten,
  sigv4,
  startIdentityWorld,
  stepParams,
  type IdentityWorld,
} from "../support/identity-world.ts";
import { startLocalKms, type LocalKms } from "../support/kms.ts";
import { ledgerEntries } from "../support/ledger.ts";
import { eventually } from "../support/wait.ts";
import { condition, resultsOf } from "../support/world.ts";
import { deployerApp } from "../support/identity-world.ts";

const alias = "alias/scoped-step-signing";
const policy = {
  aws: { allowedRoleArns: ["arn:aws:iam::111122223333:role/payments-*"], maxSessionDuration: 3600 },
  deliveryModes: ["env"],
};
const callerScript = `${sigv4("sts")} -d "Action=GetCallerIdentity&Version=2011-06-15" "$AWS_ENDPOINT_URL" | sed -n 's:.*<Arn>\\(.*\\)</Arn>.*:\\1:p' > $(results.caller.path)`;

interface KmsWorld {
  w: IdentityWorld;
  kms: LocalKms;
  keyArn: string;
}

/** local-kms with a key behind the alias; the controller starts while it is down, then it comes up. */
async function startKmsWorld(): Promise<KmsWorld> {
  const w = await startIdentityWorld(policy, { controller: false });
  await w.createApplication("payments", deployerApp);
  let kms = await startLocalKms({ region: "eu-west-1" });
  const keyArn = await kms.createSigningKey();
  await kms.pointAlias(alias, keyArn);
  await kms.stop({ keepData: true });

  const flags = [
    ...w.controllerFlags,
    "--signing-key-store=kms",
    `--kms-key-id=${alias}`,
    `--kms-endpoint=${kms.endpoint}`,
    "--kms-region=eu-west-1",
  ];
  w.controllerFlags.splice(0, w.controllerFlags.length, ...flags);
  await w.startController(flags, w.controllerEnv);
  const readyz = () =>
    fetch(`${w.issuer}/readyz`).then(async (r) => ({ status: r.status, body: await r.text() }));
  const notReady = await eventually("the controller to answer /readyz", async () => {
    const r = await readyz();
    return /signing key/.test(r.body) ? r : undefined;
  });
  assert.equal(notReady.status, 503);
  assert.match(
    notReady.body,
    /signing key unavailable: .*KMS did not answer DescribeKey on alias\/scoped-step-signing/,
  );
  const discovery = await fetch(`${w.issuer}/.well-known/openid-configuration`);
  assert.equal(discovery.status, 503, "no documents while no key is loaded");

  kms = await startLocalKms({ region: "eu-west-1", port: kms.port, dataPath: kms.dataPath });
  await eventually(
    "the controller to become ready once KMS answers",
    async () => ((await readyz()).status === 200 ? true : undefined),
    { timeoutMs: 90_000 },
  );
  return { w, kms, keyArn };
}

const world = startKmsWorld();

test("KMS unreachable at start: not ready; once it answers, a run's token is signed in KMS and verified by the AWS peer, and the step uses its session", async () => {
  const { w, kms, keyArn } = await world;
  await w.createRun("deploy", { params: stepParams(w, "payments", callerScript, ["caller"]) });
  const run = await w.waitDone("deploy");
  assert.equal(condition(run)?.status, "True", condition(run)?.message);
  const results = resultsOf(run);
  assert.equal(
    results.caller,
    `arn:aws:sts::111122223333:assumed-role/payments-deployer/${results["aws-session-name"] ?? ""}`,
  );
  assert.match(kms.output(), new RegExp(`DIGEST message signed with ECC_NIST_P256, using key ${keyArn}`));
  const jwks = (await (await fetch(`${w.issuer}/openid/v1/jwks`)).json()) as {
    keys: { kid: string; kty: string }[];
  };
  assert.equal(jwks.keys.length, 1);
  const verified = w.peer.calls().filter((c) => c.action === "AssumeRoleWithWebIdentity");
  assert.deepEqual(
    verified.map((c) => c.outcome),
    ["ok"],
    "the peer verified the KMS-signed token",
  );
});

test("KMS gone during a run: the run waits and retries, and completes once KMS is back", async () => {
  const { w, keyArn } = await world;
  let { kms } = await world;
  await kms.stop({ keepData: true });
  await w.createRun("outage", { params: stepParams(w, "payments", callerScript, ["caller"]) });
  await eventually("a signing attempt to fail for KMS being away", () =>
    Promise.resolve(
      w.controller?.logLines().some((l) => l.msg === "KMS could not sign a token" && l.transient === true) ||
        undefined,
    ),
  );
  assert.equal(
    condition(await w.getRun("outage"))?.status ?? "Unknown",
    "Unknown",
    "not failed for a transient error",
  );
  kms = await startLocalKms({ region: "eu-west-1", port: kms.port, dataPath: kms.dataPath });
  const run = await w.waitDone("outage", 120_000);
  assert.equal(condition(run)?.status, "True", condition(run)?.message);
  assert.match(kms.output(), new RegExp(`using key ${keyArn}`));
  (await world).kms = kms;
});

test("a key disabled in KMS fails the run with SigningKeyUnavailable, naming KMS's error, and nothing minted is left unrevoked", async () => {
  const { w, kms, keyArn } = await world;
  await kms.client.send(new DisableKeyCommand({ KeyId: keyArn }));
  try {
    await w.createRun("disabled", { params: stepParams(w, "payments", callerScript, ["caller"]) });
    const run = await w.waitDone("disabled");
    const cond = condition(run);
    assert.equal(cond?.status, "False");
    assert.equal(cond?.reason, "SigningKeyUnavailable");
    assert.match(
      cond?.message ?? "",
      /KMS refused Sign with arn:aws:kms:eu-west-1:111122223333:key\/.*: DisabledException: .*kms-key-id/,
    );
    assert.doesNotMatch(cond?.message ?? "", /\n\s+at /);
    const uid = run.metadata.uid;
    const entries = (await ledgerEntries(w.cluster.kc, w.controllerNs)).filter((e) => e.run.uid === uid);
    assert.ok(entries.length > 0, "the intent was recorded before minting");
    assert.deepEqual(
      entries.map((e) => e.state),
      entries.map(() => "revoked"),
      "nothing minted is left",
    );
    const assumed = w.peer
      .calls()
      .filter((c) => c.action === "AssumeRoleWithWebIdentity" && c.roleSessionName?.includes("disabled"));
    assert.deepEqual(assumed, [], "STS was never asked");
  } finally {
    await kms.client.send(new EnableKeyCommand({ KeyId: keyArn }));
  }
});

test("nothing private is written: no private JWK in the key set ConfigMap, logs, runs or events", async () => {
  const { w } = await world;
  const core = w.cluster.kc.makeApiClient(CoreV1Api);
  const cm = await core.readNamespacedConfigMap({
    namespace: w.controllerNs,
    name: "scoped-step-signing-keys",
  });
  const set = JSON.parse(cm.data?.["keys.json"] ?? "{}") as { keys: Record<string, unknown>[] };
  assert.equal(set.keys.length, 1);
  assert.match(String(set.keys[0]?.kmsKeyArn), /^arn:aws:kms:eu-west-1:111122223333:key\//);
  assert.deepEqual(Object.keys(set.keys[0]?.publicJwk ?? {}).sort(), ["crv", "kty", "x", "y"]);
  const secrets = await core.listNamespacedSecret({ namespace: w.controllerNs });
  assert.deepEqual(
    secrets.items.map((s) => s.metadata?.name).filter((n) => n?.includes("signing")),
    [],
    "no signing-key Secret",
  );
  const written = `${await everythingWritten(w)}\n${JSON.stringify(cm)}`;
  assert.doesNotMatch(written, /"d":"|privateJwk|BEGIN (EC |RSA )?PRIVATE KEY/);
});
