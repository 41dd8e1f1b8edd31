// Mint latency in external issuer mode against self mode, without Kubernetes: the controller's
// issuer (keys in memory), oidc-provider as the organisation's IdP and the AWS peer, all on
// loopback in this one process (so the IdP's CPU counts too). Token only, then token + STS.
//   node bench/external-issuer.ts [count]   (default 200)
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { externalSigner } from "../controller/idp/external.ts";
import { parseExternalIssuer } from "../controller/idp/settings.ts";
import { awsProvider } from "../tasks/scoped-step/credentials/aws.ts";
import { startProviderWorld } from "../test/support/aws/provider-world.ts";
import { registerIssuerUrl, webIdentityTrustPolicy } from "../test/support/aws/trust.ts";
import { startTestIdp } from "../test/support/idp.ts";
import { ms, percentile, runConcurrently } from "./support.ts";

const count = Number(process.argv[2] ?? 200);
const log = pino({ level: "silent" });

const w = await startProviderWorld({ accountId: "111122223333" });
const idp = await startTestIdp();
idp.trust(w.trusted.issuer);
const selfRole = "arn:aws:iam::111122223333:role/self";
const idpRole = "arn:aws:iam::111122223333:role/idp";
w.trustingRole(selfRole);
w.peer.createRole({
  arn: idpRole,
  trustPolicy: webIdentityTrustPolicy(registerIssuerUrl(w.peer, idp.issuer), "system:scoped-step:team-a:*"),
});
const secretFile = path.join(mkdtempSync(path.join(tmpdir(), "bench-idp-")), "client-secret");
writeFileSync(secretFile, idp.clientSecret);
const external = externalSigner({
  settings: parseExternalIssuer(
    JSON.stringify({ issuer: idp.issuer, clientId: idp.clientId, clientSecretFile: secretFile }),
    true,
  ),
  own: w.signer,
  allowInsecure: true,
  log,
});
const provider = (signer: typeof external) =>
  awsProvider({ signer, defaultRegion: "eu-west-1", stsEndpoint: w.peer.endpoint, log });

async function measure(label: string, concurrency: number, work: () => Promise<unknown>) {
  await work(); // discovery and key fetches happen once; leave them out
  const cpu = process.cpuUsage();
  const { latencies, seconds } = await runConcurrently(count, concurrency, () => work());
  const used = process.cpuUsage(cpu);
  console.log(
    `  ${label.padEnd(30)} concurrency ${String(concurrency).padStart(2)}: ${(count / seconds).toFixed(0).padStart(5)}/s` +
      `  p50 ${ms(percentile(latencies, 50))}  p99 ${ms(percentile(latencies, 99))}` +
      `  CPU ${((used.user + used.system) / count).toFixed(0)} µs each`,
  );
}

const request = {
  facts: {
    namespace: "team-a",
    uid: "u",
    customRun: "r",
    application: "payments",
    component: "api",
    serviceAccount: "default",
  },
  audience: "sts.amazonaws.com",
  sourceIdentity: "scoped-step-bench-0",
};
console.log(`\nStep token (${count} each):`);
for (const c of [1, 8]) {
  await measure("self: signed by the controller", c, () => w.signer.issueToken(request));
  await measure("external: token exchange", c, () => external.issueToken(request));
}
console.log(`\nToken + STS AssumeRoleWithWebIdentity (${count} each):`);
for (const c of [1, 8]) {
  await measure("self", c, () =>
    provider(w.signer).mint(w.facts("b"), w.grant({ roleArn: selfRole }, "secret")),
  );
  await measure("external", c, () =>
    provider(external).mint(w.facts("b"), w.grant({ roleArn: idpRole }, "secret")),
  );
}
await idp.stop();
await w.stop();
