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

export async function createApplication(
  objects: CustomObjectsApi,
  namespace: string,
  name: string,
  components: unknown[],
): Promise<void> {
  await objects.createNamespacedCustomObject({
    group: "core.oam.dev",
    version: "v1beta1",
    namespace,
    plural: "applications",
    body: {
      apiVersion: "core.oam.dev/v1beta1",
      kind: "Application",
      metadata: { name },
      spec: { components },
    },
  });
}
