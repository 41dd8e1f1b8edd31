// The trust set-up every credentialed scenario needs: a loopback issuer URL on a free port,
// registered with the AWS peer as an IAM OIDC provider, and roles that trust it the way the
// README tells operators to write trust policies.
import { freePorts } from "../../../hack/cluster/processes.ts";
import type { AwsPeer } from "../../../simulators/aws/server.ts";

export interface TrustedIssuer {
  port: number;
  /** http://127.0.0.1:<port>: the controller's --issuer-url and --http-port. */
  issuer: string;
  /** The issuer without scheme: the prefix of the trust policy's condition keys. */
  host: string;
  /** The IAM OIDC provider ARN: the trust policy's federated principal. */
  provider: string;
}

export async function registerIssuer(peer: AwsPeer, audience = "sts.amazonaws.com"): Promise<TrustedIssuer> {
  const [port] = (await freePorts(1)) as [number];
  return registerIssuerUrl(peer, `http://127.0.0.1:${port}`, audience);
}

/** A loopback issuer URL on a free port that AWS does not trust: no provider is registered for it. */
export async function unregisteredIssuer(): Promise<TrustedIssuer> {
  const [port] = (await freePorts(1)) as [number];
  const issuer = `http://127.0.0.1:${port}`;
  return { port, issuer, host: new URL(issuer).host, provider: "" };
}

/** An issuer served elsewhere, e.g. by the controller's Service: `http://<host>:<port>`. */
export function registerIssuerUrl(
  peer: AwsPeer,
  issuer: string,
  audience = "sts.amazonaws.com",
): TrustedIssuer {
  const url = new URL(issuer);
  const { arn: provider } = peer.registerOidcProvider({ url: issuer, audiences: [audience] });
  return { port: Number(url.port), issuer, host: url.host, provider };
}

/** The recommended trust policy: the federated principal, the three actions, aud and sub conditions. */
export function webIdentityTrustPolicy(
  trusted: TrustedIssuer,
  subjectLike: string,
  audience = "sts.amazonaws.com",
) {
  return {
    Version: "2012-10-17",
    Statement: [
      {
        Effect: "Allow",
        Principal: { Federated: trusted.provider },
        Action: ["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"],
        Condition: {
          StringEquals: { [`${trusted.host}:aud`]: audience },
          StringLike: { [`${trusted.host}:sub`]: subjectLike },
        },
      },
    ],
  };
}

export function createTrustingRole(
  peer: AwsPeer,
  trusted: TrustedIssuer,
  role: {
    arn: string;
    subjectLike: string;
    permissionPolicies?: Record<string, unknown>[];
    maxSessionDuration?: number;
  },
): void {
  peer.createRole({
    arn: role.arn,
    trustPolicy: webIdentityTrustPolicy(trusted, role.subjectLike),
    ...(role.permissionPolicies ? { permissionPolicies: role.permissionPolicies } : {}),
    ...(role.maxSessionDuration ? { maxSessionDuration: role.maxSessionDuration } : {}),
  });
}

/**
 * What points a controller at the peer: its issuer served on the trusted port, STS and IAM at the
 * peer, and the admin credentials it uses only for IAM (deny-policy revocation).
 */
export function controllerAwsSettings(peer: AwsPeer, trusted: TrustedIssuer) {
  return {
    flags: [
      "--credentials=aws",
      `--issuer-url=${trusted.issuer}`,
      "--allow-insecure-issuer=true",
      `--http-port=${trusted.port}`,
      `--sts-endpoint=${peer.endpoint}`,
      `--iam-endpoint=${peer.endpoint}`,
    ],
    env: {
      AWS_ACCESS_KEY_ID: peer.adminCredentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: peer.adminCredentials.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: "true",
    },
  };
}
