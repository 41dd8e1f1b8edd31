// Signing through AWS KMS (local-kms on loopback) against signing in process: tokens per second
// and the latency of issueToken (p50, p95) at concurrency 1 and 16, then the latency of a whole
// mint (token + STS AssumeRoleWithWebIdentity at the loopback peer) with each. Also the CPU that
// local-kms spends per token. Run on demand, not by make test:
//   node bench/kms.ts [count]   (default 1000)
import http from "node:http";
import type { KeySpec } from "@aws-sdk/client-kms";
import { pino } from "pino";
import { inOwnNamespaces } from "../hack/cluster/enter.ts";
import { buildTool } from "../hack/cluster/upstream.ts";
import { createIssuer, memoryKeyStore, type Issuer } from "../controller/issuer/index.ts";
import { awsProvider } from "../tasks/scoped-step/credentials/aws.ts";
import type { Grant, RunFacts } from "../tasks/scoped-step/credentials/types.ts";
import { resolveTrait } from "../tasks/scoped-step/trait.ts";
import { startAwsPeer } from "../simulators/aws/server.ts";
import { kmsCredentials, startLocalKms } from "../test/support/kms.ts";
import { percentile, processUsage, runConcurrently } from "./support.ts";

// local-kms listens on every interface: build it (outside, where the module proxy is), then run
// everything inside network namespaces of its own, where only loopback exists.
await buildTool("local-kms");
await inOwnNamespaces({ node: false });

const count = Number(process.argv[2] ?? 1000);
const log = pino({ level: "silent" });
process.env.AWS_ACCESS_KEY_ID = kmsCredentials.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = kmsCredentials.secretAccessKey;

async function measure(label: string, n: number, concurrency: number, work: (i: number) => Promise<unknown>) {
  const { latencies, seconds } = await runConcurrently(n, concurrency, work);
  const p = (q: number) => `${percentile(latencies, q).toFixed(2)} ms`.padStart(9);
  console.log(
    `  ${label.padEnd(30)} concurrency ${String(concurrency).padStart(2)}: ${(n / seconds).toFixed(0).padStart(6)}/s  p50 ${p(50)}  p95 ${p(95)}`,
  );
}

const facts = (i: number): RunFacts => ({
  namespace: "bench",
  customRun: `run-${i}`,
  uid: `00000000-0000-0000-0000-${String(i).padStart(12, "0")}`,
  attempt: 0,
  serviceAccount: "default",
  application: "payments",
  component: "api",
});

// The issuer's documents over HTTP, so the peer verifies each token as STS would.
const served: { issuer?: Issuer } = {};
const server = http.createServer((req, res) => {
  if (!served.issuer?.handler(req, res)) res.writeHead(404).end();
});
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const issuerUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
const peer = await startAwsPeer();
const { arn: provider } = peer.registerOidcProvider({ url: issuerUrl, audiences: ["sts.amazonaws.com"] });
const roleArn = "arn:aws:iam::111122223333:role/bench";
peer.createRole({
  arn: roleArn,
  trustPolicy: {
    Version: "2012-10-17",
    Statement: [
      {
        Effect: "Allow",
        Principal: { Federated: provider },
        Action: ["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"],
      },
    ],
  },
});
const trait = resolveTrait(
  {
    apiVersion: "core.oam.dev/v1beta1",
    kind: "Application",
    metadata: { name: "payments", namespace: "bench" },
    spec: {
      components: [{ name: "api", traits: [{ type: "scoped-identity", properties: { aws: { roleArn } } }] }],
    },
  },
  { namespace: "bench", application: "payments", component: "api", trait: "scoped-identity" },
);
const grant: Grant = { trait, policy: "bench", revocation: "secret" };

const kms = await startLocalKms();
const cases: { label: string; spec?: KeySpec; algorithm: "ES256" | "RS256" }[] = [
  { label: "in process ES256", algorithm: "ES256" },
  { label: "KMS ECC_NIST_P256 (ES256)", spec: "ECC_NIST_P256", algorithm: "ES256" },
  { label: "in process RS256", algorithm: "RS256" },
  { label: "KMS RSA_2048 (RS256)", spec: "RSA_2048", algorithm: "RS256" },
];
console.log(`\nissueToken (${count} each):`);
const mintCount = Math.min(count, 300);
const mints: (() => Promise<void>)[] = [];
for (const c of cases) {
  const issuer = await createIssuer({
    store: memoryKeyStore(),
    issuerUrl,
    allowInsecureIssuer: true,
    algorithm: c.algorithm,
    logger: log,
    ...(c.spec
      ? { kms: { keyId: await kms.createSigningKey(c.spec), region: kms.region, endpoint: kms.endpoint } }
      : {}),
  });
  const kmsCpu = kms.pid ? (await processUsage(kms.pid)).cpuSeconds : 0;
  for (const concurrency of [1, 16]) {
    await measure(c.label, count, concurrency, (i) =>
      issuer.issueToken({
        facts: facts(i),
        audience: "sts.amazonaws.com",
        sourceIdentity: `scoped-step-bench-${i}`,
      }),
    );
  }
  if (c.spec && kms.pid) {
    const spent = (await processUsage(kms.pid)).cpuSeconds - kmsCpu;
    console.log(`  (local-kms CPU: ${((spent / (2 * count)) * 1e6).toFixed(0)} µs per token)`);
  }
  mints.push(async () => {
    served.issuer = issuer;
    const credentials = awsProvider({
      signer: { issuerUrl, issueToken: (r) => issuer.issueToken(r) },
      defaultRegion: "eu-west-1",
      stsEndpoint: peer.endpoint,
      log,
    });
    await measure(`mint, ${c.label}`, mintCount, 1, (i) => credentials.mint(facts(i), grant));
  });
}
console.log(`\nWhole mint: token + STS round trip to the loopback peer (${mintCount} each):`);
for (const mint of mints) await mint();
await kms.stop();
await peer.stop();
server.close();
