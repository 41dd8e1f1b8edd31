import { test } from "node:test";
import assert from "node:assert/strict";
import { configMapLocation, kmsRegionOf, loadConfig } from "../../controller/config.ts";
import { scopedStepCrdYaml } from "../../tasks/scoped-step/crd.ts";
import { readFile } from "node:fs/promises";

test("configuration comes from flags over environment over defaults", () => {
  const c = loadConfig(["--concurrency=3"], {
    SCOPED_STEP_CONCURRENCY: "5",
    SCOPED_STEP_WATCH_NAMESPACES: "a, b",
    SCOPED_STEP_ISSUER_URL: "https://issuer.example",
  });
  assert.equal(c.concurrency, 3);
  assert.deepEqual(c.watchNamespaces, ["a", "b"]);
  assert.equal(c.defaultTimeoutMs, 3_600_000);
});

test("the ConfigMap is found from flags and environment alone, before what it must provide is checked", () => {
  // As the release runs it: the namespace from the pod, issuer-url only in the ConfigMap.
  const argv = ["--http-port=8080"];
  const env = { SCOPED_STEP_NAMESPACE: "ops" };
  assert.throws(() => loadConfig(argv, env), /--issuer-url .* is required/);
  assert.deepEqual(configMapLocation(argv, env), { namespace: "ops", configMap: "scoped-step-config" });
  assert.deepEqual(configMapLocation(["--config-map=mine"], {}), {
    namespace: "scoped-step",
    configMap: "mine",
  });
  assert.throws(() => configMapLocation(["stray"], {}), /unexpected argument "stray"/);
  const c = loadConfig(argv, env, { "issuer-url": "https://oidc.example.com/scoped-step" });
  assert.equal(c.issuerUrl, "https://oidc.example.com/scoped-step");
});

test("bad configuration is refused with a message naming the setting", () => {
  assert.throws(
    () => loadConfig([], {}),
    /--issuer-url \(SCOPED_STEP_ISSUER_URL\) is required with --credentials=aws/,
  );
  assert.throws(() => loadConfig(["--credentials=gcp"], {}), /must be one of aws, none/);
  assert.throws(
    () => loadConfig(["--concurrency=0", "--credentials=none"], {}),
    /--concurrency \(SCOPED_STEP_CONCURRENCY\) must be an integer/,
  );
  assert.throws(() => loadConfig(["--bogus=1", "--credentials=none"], {}), /unknown flag --bogus/);
  assert.throws(
    () => loadConfig(["--credentials=none", "--step-aws-endpoint=vpce.example.com"], {}),
    /--step-aws-endpoint \(SCOPED_STEP_STEP_AWS_ENDPOINT\) must be an http\(s\) URL/,
  );
  assert.equal(
    loadConfig(["--credentials=none", "--step-aws-endpoint=https://aws-proxy.internal:8443"], {})
      .stepAwsEndpoint,
    "https://aws-proxy.internal:8443",
  );
  assert.throws(
    () => loadConfig(["--credentials=none"], { SCOPED_STEP_DEFAULT_TIMEOUT: "1 day" }),
    /must be a Go duration/,
  );
  assert.throws(
    () => loadConfig(["--renew-deadline-seconds=20", "--credentials=none"], {}),
    /must be shorter than/,
  );
  assert.throws(() => loadConfig(["--log-level=loud", "--credentials=none"], {}), /must be one of/);
});

test("the committed ScopedStep CRD is generated from the current schema", async () => {
  const committed = await readFile(new URL("../../catalog/crds/scopedstep.yaml", import.meta.url), "utf8");
  assert.equal(committed, scopedStepCrdYaml(), "run `make generate`");
});

test("the ConfigMap sits under flags and environment, and refuses unknown keys", () => {
  const base = ["--credentials=none"];
  assert.equal(loadConfig(base, {}, { concurrency: "4" }).concurrency, 4);
  assert.equal(loadConfig(base, { SCOPED_STEP_CONCURRENCY: "6" }, { concurrency: "4" }).concurrency, 6);
  assert.equal(loadConfig([...base, "--concurrency=2"], {}, { concurrency: "4" }).concurrency, 2);
  assert.throws(() => loadConfig(base, {}, { concurency: "4" }), /unknown key "concurency"/);
  assert.throws(() => loadConfig(base, {}, { concurrency: "zero" }), /--concurrency .* must be an integer/);
});

test("revoker roles are role ARNs, one per account, from flags, environment or the ConfigMap", () => {
  const a = "arn:aws:iam::111122223333:role/scoped-step-revoker";
  const b = "arn:aws:iam::444455556666:role/ops/scoped-step-revoker";
  const c = loadConfig(["--credentials=none"], {}, { "aws-revoker-roles": `${a}, ${b}` });
  assert.deepEqual(c.awsRevokerRoles, [a, b]);
  assert.throws(
    () =>
      loadConfig(["--credentials=none", `--aws-revoker-roles=${a},arn:aws:iam::111122223333:role/other`], {}),
    /--aws-revoker-roles \(SCOPED_STEP_AWS_REVOKER_ROLES\): account 111122223333 has two revoker roles/,
  );
  assert.throws(
    () => loadConfig(["--credentials=none"], { SCOPED_STEP_AWS_REVOKER_ROLES: "scoped-step-revoker" }),
    /SCOPED_STEP_AWS_REVOKER_ROLES\): "scoped-step-revoker" is not an IAM role ARN/,
  );
});

test("the KMS key store is chosen in the ConfigMap and its settings are checked, naming the setting", () => {
  const base = { "issuer-url": "https://oidc.example.com/scoped-step" };
  assert.equal(loadConfig([], {}, base).signingKeyStore, "secret");
  const c = loadConfig(
    [],
    {},
    { ...base, "signing-key-store": "kms", "kms-key-id": "alias/scoped-step-signing" },
  );
  assert.equal(c.signingKeyStore, "kms");
  assert.equal(c.kmsKeyId, "alias/scoped-step-signing");
  assert.equal(kmsRegionOf(c), "us-east-1");
  const arn = "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
  assert.equal(
    kmsRegionOf(loadConfig([], {}, { ...base, "signing-key-store": "kms", "kms-key-id": arn })),
    "eu-central-1",
  );
  const kms = (extra: Record<string, string>) => () =>
    loadConfig([], {}, { ...base, "signing-key-store": "kms", ...extra });
  assert.throws(
    () => loadConfig([], {}, { ...base, "signing-key-store": "vault" }),
    /--signing-key-store \(SCOPED_STEP_SIGNING_KEY_STORE\) must be one of secret, kms/,
  );
  assert.throws(kms({}), /--kms-key-id \(SCOPED_STEP_KMS_KEY_ID\) is required with --signing-key-store=kms/);
  assert.throws(
    kms({ "kms-key-id": "scoped-step-signing" }),
    /--kms-key-id .* must be alias\/NAME, a key id, or a key or alias ARN/,
  );
  assert.throws(kms({ "kms-key-id": "alias/aws/ebs" }), /customer managed key/);
  assert.throws(
    kms({ "kms-key-id": "alias/k", "kms-endpoint": "kms.local" }),
    /--kms-endpoint .* must be an http\(s\) URL/,
  );
  assert.throws(
    kms({ "kms-key-id": "alias/k", "kms-region": "Europe" }),
    /--kms-region .* must be an AWS region/,
  );
  assert.throws(
    () => loadConfig([], {}, { ...base, "kms-key-id": "alias/k" }),
    /--kms-key-id .* is set, but --signing-key-store .* is not kms/,
  );
});
