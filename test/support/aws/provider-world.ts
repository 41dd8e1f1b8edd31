// The AWS credential provider's world without Kubernetes: the AWS peer, the controller's own issuer
// (keys in memory) serving its documents on a loopback port, and roles in any account that trust
// it. Tests mint and revoke through the real provider, the real SDK and the peer.
import { createServer } from "node:http";
import { createIssuer, memoryKeyStore } from "../../../controller/issuer/index.ts";
import type { Grant, RunFacts, TokenSigner } from "../../../tasks/scoped-step/credentials/types.ts";
import type { TraitProperties } from "../../../tasks/scoped-step/schema.ts";
import { startAwsPeer, type AwsPeer, type AwsPeerOptions } from "../../../simulators/aws/server.ts";
import { registerIssuer, webIdentityTrustPolicy, type TrustedIssuer } from "./trust.ts";

export interface ProviderWorld {
  peer: AwsPeer;
  trusted: TrustedIssuer;
  signer: TokenSigner;
  /** A role trusting the issuer for subjects of namespace team-a, with the IdP registered in its account. */
  trustingRole(arn: string, permissionPolicies?: Record<string, unknown>[]): void;
  /** A grant for the role; the session lasts 900 s unless `aws` says otherwise. */
  grant(
    aws: Partial<NonNullable<TraitProperties["aws"]>> & { roleArn: string },
    revocation?: Grant["revocation"],
  ): Grant;
  facts(customRun: string, attempt?: number): RunFacts;
  stop(): Promise<void>;
}

export async function startProviderWorld(peerOptions: AwsPeerOptions = {}): Promise<ProviderWorld> {
  const peer = await startAwsPeer(peerOptions);
  const trusted = await registerIssuer(peer);
  const issuer = await createIssuer({
    store: memoryKeyStore(),
    issuerUrl: trusted.issuer,
    allowInsecureIssuer: true,
    keyPublishLeadSeconds: 0,
  });
  const server = createServer((req, res) => {
    if (!issuer.handler(req, res)) res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(trusted.port, "127.0.0.1", resolve));
  const registered = new Set([peer.accountId]);
  let uid = 0;

  return {
    peer,
    trusted,
    signer: { issuerUrl: issuer.issuerUrl, issueToken: (request) => issuer.issueToken(request) },
    trustingRole(arn, permissionPolicies = []) {
      const account = arn.split(":")[4] ?? "";
      let provider = trusted.provider;
      if (account !== peer.accountId) {
        provider = provider.replace(`::${peer.accountId}:`, `::${account}:`);
        if (!registered.has(account)) {
          peer.registerOidcProvider({
            url: trusted.issuer,
            audiences: ["sts.amazonaws.com"],
            accountId: account,
          });
          registered.add(account);
        }
      }
      peer.createRole({
        arn,
        trustPolicy: webIdentityTrustPolicy({ ...trusted, provider }, "system:scoped-step:team-a:*"),
        permissionPolicies,
      });
    },
    grant(aws, revocation = "deny-policy") {
      return {
        trait: {
          ref: { namespace: "team-a", application: "payments", component: "api", trait: "scoped-identity" },
          type: "scoped-identity",
          properties: {
            audience: "sts.amazonaws.com",
            tokenExpirationSeconds: 600,
            delivery: "env",
            aws: { region: "eu-west-1", sessionDuration: 900, ...aws },
          },
        },
        policy: "team-a",
        revocation,
      };
    },
    facts(customRun, attempt = 0) {
      uid++;
      return {
        namespace: "team-a",
        customRun,
        uid: `00000000-0000-4000-8000-${String(uid).padStart(12, "0")}`,
        attempt,
        serviceAccount: "default",
        application: "payments",
        component: "api",
      };
    },
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await peer.stop();
    },
  };
}
