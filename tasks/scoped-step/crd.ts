// The ScopedStep CRD, generated from the same JSON Schema the controller validates with.
// `make generate` writes it to catalog/; a test fails when the committed copy is stale.
import { stringify } from "yaml";
import { stepSpecSchema } from "./schema.ts";

type Schema = Record<string, unknown>;

/** Rewrites a JSON Schema into a Kubernetes structural schema. */
export function structural(schema: Schema): Schema {
  const out: Schema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === "additionalProperties" && value === false) continue;
    // Conditional rules across fields have no structural form: ajv checks them, the API server cannot.
    if (key === "if" || key === "then" || key === "else") continue;
    if (key === "anyOf") {
      // Values of several types (param values): the API server keeps them as written.
      out["x-kubernetes-preserve-unknown-fields"] = true;
      continue;
    }
    if (key === "properties" && value && typeof value === "object") {
      out.properties = Object.fromEntries(
        Object.entries(value).map(([k, v]) => [k, structural(v as Schema)]),
      );
    } else if ((key === "items" || key === "additionalProperties") && value && typeof value === "object") {
      out[key] = structural(value as Schema);
    } else {
      out[key] = value;
    }
  }
  // A Kubernetes object passed on as written (affinity, tolerations): kept whole.
  if (out.type === "object" && !out.properties && !out.additionalProperties) {
    out["x-kubernetes-preserve-unknown-fields"] = true;
  }
  return out;
}

export function scopedStepCrd(): Schema {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: "scopedsteps.scopedstep.dev",
      labels: { "app.kubernetes.io/name": "scoped-step", "app.kubernetes.io/part-of": "scoped-step" },
    },
    spec: {
      group: "scopedstep.dev",
      scope: "Namespaced",
      names: {
        kind: "ScopedStep",
        listKind: "ScopedStepList",
        plural: "scopedsteps",
        singular: "scopedstep",
        shortNames: ["sst"],
        categories: ["tekton", "scoped-step"],
      },
      versions: [
        {
          name: "v1alpha1",
          served: true,
          storage: true,
          additionalPrinterColumns: [
            { name: "Application", type: "string", jsonPath: ".spec.application" },
            { name: "Component", type: "string", jsonPath: ".spec.component" },
            { name: "Image", type: "string", jsonPath: ".spec.image", priority: 1 },
            { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
          ],
          schema: {
            openAPIV3Schema: {
              type: "object",
              description:
                "ScopedStep is a reusable Tekton custom task step that runs with its own short-lived cloud identity.",
              required: ["spec"],
              properties: {
                apiVersion: { type: "string" },
                kind: { type: "string" },
                metadata: { type: "object" },
                spec: structural(stepSpecSchema),
              },
            },
          },
        },
      ],
    },
  };
}

export function scopedStepCrdYaml(): string {
  return `# Generated from tasks/scoped-step/schema.ts by \`make generate\`; do not edit.\n${stringify(scopedStepCrd())}`;
}

if (import.meta.main) process.stdout.write(scopedStepCrdYaml());
