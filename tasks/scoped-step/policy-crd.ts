// The ScopedStepPolicy CRD (cluster-scoped), generated from the schema in policy-schema.ts like the
// ScopedStep CRD is from schema.ts. `make generate` writes it to catalog/; a unit test fails when the
// committed copy is stale.
import { stringify } from "yaml";
import { structural } from "./crd.ts";
import { policyApi, policySpecSchema, policyStatusSchema } from "./policy-schema.ts";

type Schema = Record<string, unknown>;

export function scopedStepPolicyCrd(): Schema {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: `${policyApi.plural}.${policyApi.group}`,
      labels: { "app.kubernetes.io/name": "scoped-step", "app.kubernetes.io/part-of": "scoped-step" },
    },
    spec: {
      group: policyApi.group,
      scope: "Cluster",
      names: {
        kind: "ScopedStepPolicy",
        listKind: "ScopedStepPolicyList",
        plural: policyApi.plural,
        singular: "scopedsteppolicy",
        shortNames: ["ssp"],
        categories: ["scoped-step"],
      },
      versions: [
        {
          name: policyApi.version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
            { name: "Revocation", type: "string", jsonPath: ".spec.revocation" },
            { name: "Max-Session", type: "integer", jsonPath: ".spec.aws.maxSessionDuration", priority: 1 },
            { name: "Roles", type: "string", jsonPath: ".spec.aws.allowedRoleArns", priority: 1 },
            { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
          ],
          schema: {
            openAPIV3Schema: {
              type: "object",
              description:
                "ScopedStepPolicy says which cloud identities scoped steps in the selected namespaces may get.",
              required: ["spec"],
              properties: {
                apiVersion: { type: "string" },
                kind: { type: "string" },
                metadata: { type: "object" },
                spec: structural(policySpecSchema),
                status: structural(policyStatusSchema),
              },
            },
          },
        },
      ],
    },
  };
}

export function scopedStepPolicyCrdYaml(): string {
  return `# Generated from tasks/scoped-step/policy-schema.ts by \`make generate\`; do not edit.\n${stringify(scopedStepPolicyCrd())}`;
}

if (import.meta.main) process.stdout.write(scopedStepPolicyCrdYaml());
