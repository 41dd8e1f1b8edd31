// KubeVela Applications for tests, the demo and the benchmarks: the component a step's identity
// comes from, with its scoped-identity trait.
import type { CustomObjectsApi } from "@kubernetes/client-node";

/** Component `api` carrying one scoped-identity trait with these properties. */
export function identityComponent(
  traitProperties: Record<string, unknown>,
  properties?: Record<string, unknown>,
) {
  return {
    name: "api",
    type: "webservice",
    ...(properties ? { properties } : {}),
    traits: [{ type: "scoped-identity", properties: traitProperties }],
  };
}

/**
 * The demo's component (`make demo`, Application payments): the payments API, whose trait gives its
 * steps the deployer role, scoped down by an inline session policy to the team's release artifacts.
 */
export function demoComponent(roleArn: string) {
  return identityComponent(
    {
      audience: "sts.amazonaws.com",
      aws: {
        roleArn,
        region: "eu-west-1",
        sessionDuration: 900,
        sessionTags: { team: "payments" },
        sessionPolicy: {
          Version: "2012-10-17",
          Statement: [
            {
              Effect: "Allow",
              Action: ["s3:PutObject", "s3:GetObject"],
              Resource: "arn:aws:s3:::payments-artifacts/releases/*",
            },
          ],
        },
      },
    },
    { image: "example/payments-api:1.4.2" },
  );
}

export async function createApplication(
  objects: CustomObjectsApi,
  namespace: string,
  name: string,
  components: unknown[],
  annotations?: Record<string, string>,
): Promise<void> {
  await objects.createNamespacedCustomObject({
    group: "core.oam.dev",
    version: "v1beta1",
    namespace,
    plural: "applications",
    body: {
      apiVersion: "core.oam.dev/v1beta1",
      kind: "Application",
      metadata: { name, ...(annotations ? { annotations } : {}) },
      spec: { components },
    },
  });
}
