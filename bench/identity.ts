// Throughput of the identity code path, without Kubernetes: tokens signed per second by the
// controller's issuer (ES256 and RS256), and credentials minted per second through the AWS
// provider (token + STS AssumeRoleWithWebIdentity against the loopback AWS peer), each at
// concurrency 1 and 16.   node bench/identity.ts [count]   (default 2000)
import http from "node:http";
import { pino } from "pino";
import { createIssuer, memoryKeyStore } from "../controller/issuer/index.ts";
import { awsProvider } from "../tasks/scoped-step/credentials/aws.ts";
import type { Grant, RunFacts } from "../tasks/scoped-step/credentials/types.ts";
import { resolveTrait } from "../tasks/scoped-step/trait.ts";
import { startAwsPeer } from "../simulators/aws/server.ts";
import { ms, percentile, runConcurrently } from "./support.ts";

const count = Number(process.argv[2] ?? 2000);
const log = pino({ level: "silent" });

async function measure(
  label: string,
  n: number,
  concurrency: number,
  work: (i: number) => Promise<unknown>,
): Promise<void> {
  const cpuBefore = process.cpuUsage();
  const { latencies, seconds } = await runConcurrently(n, concurrency, work);
  const cpu = process.cpuUsage(cpuBefore);
  console.log(
    `  ${label.padEnd(34)} concurrency ${String(concurrency).padStart(2)}: ${(n / seconds).toFixed(0).padStart(6)}/s` +
      `  p50 ${ms(percentile(latencies, 50))}  p99 ${ms(percentile(latencies, 99))}` +
      `  CPU ${(((cpu.user + cpu.system) / 1000 / n) * 1000).toFixed(0)} µs each`,
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

console.log(`\nTokens signed (${count} each):`);
for (const algorithm of ["ES256", "RS256"] as const) {
  const issuer = await createIssuer({
    store: memoryKeyStore(),
    issuerUrl: "https://issuer.example",
    algorithm,
    logger: log,
  });
  for (const concurrency of [1, 16]) {
    await measure(`${algorithm} issueToken`, count, concurrency, (i) =>
      issuer.issueToken({
        facts: facts(i),
        audience: "sts.amazonaws.com",
        sourceIdentity: `scoped-step-bench-${i}`,
      }),
    );
  }
}

// The issuer's documents served over HTTP, so the peer verifies tokens as STS would.
const documents: { handler?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean } = {};
const server = http.createServer((req, res) => {
  if (!documents.handler?.(req, res)) res.writeHead(404).end();
});
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const issuerUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
const served = await createIssuer({
  store: memoryKeyStore(),
  issuerUrl,
  allowInsecureIssuer: true,
  logger: log,
});
documents.handler = served.handler;
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
const credentials = awsProvider({
  signer: { issuerUrl, issueToken: (r) => served.issueToken(r) },
  defaultRegion: "eu-west-1",
  stsEndpoint: peer.endpoint,
  log,
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
const stsCount = Math.min(count, 500);
console.log(`\nCredentials minted: token + STS round trip to the loopback peer (${stsCount} each):`);
for (const concurrency of [1, 16]) {
  await measure("awsProvider.mint", stsCount, concurrency, (i) => credentials.mint(facts(i), grant));
}
console.log(
  "  (the peer runs in this process and verifies each token: it fetches the discovery document and JWKS every call)",
);
await peer.stop();
server.close();
