// Writes the discovery document and the JWKS as static files, for operators who host them in a
// bucket or behind a CDN instead of exposing the controller. Run it after every rotation (a
// CronJob more often than keyPublishLeadSeconds keeps new keys published before they sign):
//
//   node controller/issuer/publish.ts --namespace scoped-step --issuer https://oidc.example.com --out ./site
//
// Creates the key Secret if the controller has not yet, exactly as the controller would.
import { parseArgs } from "node:util";
import { pino } from "pino";
import { loadKube } from "../kube-client.ts";
import { defaultSecretName } from "./key-store.ts";
import { writeDocuments } from "./documents.ts";
import { createIssuer } from "./issuer.ts";

const usage =
  "usage: node controller/issuer/publish.ts --namespace N --issuer URL --out DIR " +
  "[--kubeconfig FILE] [--secret-name NAME] [--allow-insecure-issuer]";

const { values } = parseArgs({
  options: {
    kubeconfig: { type: "string" },
    namespace: { type: "string" },
    issuer: { type: "string" },
    out: { type: "string" },
    "secret-name": { type: "string", default: defaultSecretName },
    "allow-insecure-issuer": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});

if (values.help || !values.namespace || !values.issuer || !values.out) {
  console.error(usage);
  process.exit(values.help ? 0 : 2);
}

try {
  const issuer = await createIssuer({
    kube: await loadKube(values.kubeconfig),
    namespace: values.namespace,
    secretName: values["secret-name"],
    issuerUrl: values.issuer,
    allowInsecureIssuer: values["allow-insecure-issuer"],
    logger: pino({ level: "warn" }, pino.destination(2)),
  });
  for (const file of await writeDocuments(values.out, issuer.issuerUrl, issuer.jwks())) console.log(file);
} catch (err) {
  console.error(`publish failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
