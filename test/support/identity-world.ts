// A world with real credentials: the controller runs its OIDC issuer on a known loopback port,
// the loopback AWS peer trusts that issuer, and a role lets this namespace's steps read one bucket.
import { after } from "node:test";
import { CoreV1Api } from "@kubernetes/client-node";
import { startAwsPeer, type AwsPeer } from "../../simulators/aws/server.ts";
import {
  controllerAwsSettings,
  createTrustingRole,
  registerIssuer,
  registerIssuerUrl,
  unregisteredIssuer,
  type TrustedIssuer,
} from "./aws/trust.ts";
import type { Param } from "../../tasks/scoped-step/types.ts";
import type { NodeTestCluster } from "./cluster.ts";
import { startWorld, type World, type WorldOptions } from "./world.ts";

export const account = "111122223333";
export const deployRole = `arn:aws:iam::${account}:role/payments-deployer`;

/** An Application whose component api assumes the deployer role, with nothing else in its trait. */
export const deployerApp = [
  {
    name: "api",
    type: "webservice",
    traits: [
      {
        type: "scoped-identity",
        properties: { audience: "sts.amazonaws.com", aws: { roleArn: deployRole, region: "eu-west-1" } },
      },
    ],
  },
];

export interface IdentityWorld extends World {
  peer: AwsPeer;
  /** The issuer the AWS peer trusts (the controller's unless `awsTrusts`), for more roles that trust it. */
  trusted: TrustedIssuer;
  /** The controller's own issuer. */
  issuer: string;
  providerHost: string;
  controllerFlags: string[];
  controllerEnv: Record<string, string>;
  restartController(extraEnv?: Record<string, string>): Promise<void>;
  secretData(name: string): Promise<Record<string, string> | undefined>;
}

/** curl signing with the step's session credentials (SigV4), as any code in a step could. */
export const sigv4 = (service: string) =>
  `curl -s -m 10 --aws-sigv4 "aws:amz:eu-west-1:${service}" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-security-token: $AWS_SESSION_TOKEN"`;

/** Params of a run whose step runs `script` with the identity of `application`'s component api. */
export const stepParams = (
  w: IdentityWorld,
  application: string,
  script: string,
  results: string[] = [],
): Param[] => [
  { name: "image", value: "amazon/aws-cli" },
  { name: "script", value: script },
  { name: "results", value: results },
  { name: "env", value: { AWS_ENDPOINT_URL: w.peer.endpoint } },
  { name: "application", value: application },
  { name: "component", value: "api" },
];

/** Controller logs, Events, and every CustomRun's status and results, as one text. */
export async function published(w: IdentityWorld): Promise<string> {
  const core = w.cluster.kc.makeApiClient(CoreV1Api);
  const runs: unknown = await w.cluster.objects.listNamespacedCustomObject({
    group: "tekton.dev",
    version: "v1beta1",
    namespace: w.ns,
    plural: "customruns",
  });
  const events = await core.listNamespacedEvent({ namespace: w.ns });
  return [w.controller?.output() ?? "", JSON.stringify(runs), JSON.stringify(events)].join("\n");
}

/** Every place a secret could leak to, as one text: what is published, pods and step output. */
export async function everythingWritten(w: IdentityWorld): Promise<string> {
  const core = w.cluster.kc.makeApiClient(CoreV1Api);
  const pods = await core.listNamespacedPod({ namespace: w.ns });
  const stepOutput = pods.items.map((p) => w.kubelet?.output(w.ns, p.metadata?.name ?? "") ?? "").join("\n");
  return [await published(w), JSON.stringify(pods), stepOutput].join("\n");
}

// Peers stop when the test file ends. node:test's after() called inside a test would run when that
// test ends, stopping the peer under a world that outlives it.
const peers = new Set<AwsPeer>();
after(async () => {
  for (const peer of peers) await peer.stop();
});

export async function startIdentityWorld(
  policy: Record<string, unknown>,
  opts: {
    roleTrustSub?: string;
    flags?: string[];
    /** Steps get the peer as AWS_ENDPOINT_URL (--step-aws-endpoint), so any AWS client in them reaches it. */
    stepAwsEndpoint?: boolean;
    cluster?: WorldOptions["cluster"];
    peerHost?: string;
    /** The issuer URL the peer trusts; default a loopback port this world's controller serves. */
    issuer?: string;
    /** false: no controller process; one runs elsewhere with `controllerFlags` as its settings. */
    controller?: boolean;
    /**
     * The issuer AWS trusts instead of the controller's, e.g. the organisation's IdP in external
     * issuer mode. The controller still serves its own issuer on a loopback port, which AWS ignores.
     */
    awsTrusts?: string;
  } = {},
): Promise<IdentityWorld> {
  const base = await startWorld({
    controller: false,
    policy: false,
    ...(opts.cluster ? { cluster: opts.cluster, kubelet: false } : {}),
  });
  const peer = await startAwsPeer({ accountId: account, host: opts.peerHost });
  peers.add(peer);
  const trusted = opts.awsTrusts
    ? registerIssuerUrl(peer, opts.awsTrusts)
    : opts.issuer
      ? registerIssuerUrl(peer, opts.issuer)
      : await registerIssuer(peer);
  const own = opts.awsTrusts ? await unregisteredIssuer() : trusted;
  const { host: providerHost } = trusted;
  const { issuer } = own;
  createTrustingRole(peer, trusted, {
    arn: deployRole,
    maxSessionDuration: 3600,
    subjectLike: opts.roleTrustSub ?? `system:scoped-step:${base.ns}:*`,
    permissionPolicies: [
      {
        Version: "2012-10-17",
        Statement: [
          {
            Effect: "Allow",
            Action: ["s3:GetObject", "s3:PutObject"],
            Resource: ["arn:aws:s3:::artifacts/*", "arn:aws:s3:::private/*"],
          },
        ],
      },
    ],
  });
  peer.putObject("artifacts", "hello.txt", "hello from s3");
  peer.putObject("private", "keys.txt", "not for this step");
  await base.createPolicy("identity", policy);

  const settings = controllerAwsSettings(peer, own);
  // On a real node, step pods are prepared from the node's build of Tekton's entrypoint image.
  const node: Partial<NodeTestCluster> = base.cluster;
  const controllerFlags = [
    ...settings.flags,
    "--aws-region=eu-west-1",
    ...(node.images ? [`--entrypoint-image=${node.images.tekton.entrypoint}`] : []),
    ...(opts.stepAwsEndpoint ? [`--step-aws-endpoint=${peer.endpoint}`] : []),
    ...(opts.flags ?? []),
  ];
  const controllerEnv = settings.env;
  const core = base.cluster.kc.makeApiClient(CoreV1Api);
  const w: IdentityWorld = Object.assign(base, {
    peer,
    trusted,
    issuer,
    providerHost,
    controllerFlags,
    controllerEnv,
    async restartController(extraEnv: Record<string, string> = {}) {
      await w.controller?.kill("SIGTERM");
      await w.startController(controllerFlags, { ...controllerEnv, ...extraEnv });
    },
    async secretData(name: string) {
      try {
        const s = await core.readNamespacedSecret({ namespace: base.ns, name });
        return Object.fromEntries(
          Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]),
        );
      } catch {
        return undefined;
      }
    },
  });
  if (opts.controller !== false) await w.startController(controllerFlags, controllerEnv);
  return w;
}
