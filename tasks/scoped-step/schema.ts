// One JSON Schema per object we own. Each gives the TypeScript type (FromSchema), the runtime
// validator (compiled ahead of time by ajv: validators.generated.ts, hack/validators.ts) and, for
// the ScopedStep CRD, the openAPIV3Schema (see crd.ts).
import type { ErrorObject, ValidateFunction } from "ajv";
import type { FromSchema } from "json-schema-to-ts";
import * as generated from "./validators.generated.ts";

const name = { type: "string", pattern: "^[A-Za-z_][A-Za-z0-9_.-]*$", maxLength: 253 } as const;
const resultName = {
  type: "string",
  pattern: "^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
  maxLength: 63,
} as const;
/** Names of Kubernetes objects (DNS-1123 subdomains), checked after params are substituted. */
export const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const stringMap = { type: "object", additionalProperties: { type: "string" } } as const;
const paramValue = {
  anyOf: [{ type: "string" }, { type: "array", items: { type: "string" } }, stringMap],
} as const;
/** A resource quantity; one holding a $(...) variable is checked again once it is substituted. */
export const quantity = /^[0-9.]+([a-zA-Z]{1,2})?$/;
const quantityMap = {
  type: "object",
  additionalProperties: { type: "string", pattern: "^([0-9.]+([a-zA-Z]{1,2})?|.*\\$\\(.+\\).*)$" },
} as const;

/** A Kubernetes object passed on as written; the API server validates it when the pod is created. */
const kubeObject = { type: "object" } as const;

/** The pod fields a step may set, as a Tekton pod template (host namespaces and privilege never). */
export const podTemplateFields = [
  "nodeSelector",
  "tolerations",
  "affinity",
  "imagePullSecrets",
  "priorityClassName",
  "runtimeClassName",
  "topologySpreadConstraints",
  "schedulerName",
  "securityContext",
] as const;

export const podTemplateSchema = {
  type: "object",
  additionalProperties: false,
  description:
    "Where and how the step pod runs, as in a Tekton pod template: nodeSelector, tolerations, affinity, imagePullSecrets, " +
    "priorityClassName, runtimeClassName, topologySpreadConstraints, schedulerName and a restricted securityContext.",
  properties: {
    nodeSelector: { type: "object", additionalProperties: { type: "string" } },
    tolerations: { type: "array", items: kubeObject },
    affinity: kubeObject,
    imagePullSecrets: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name"],
        properties: { name: { type: "string", minLength: 1 } },
      },
    },
    priorityClassName: { type: "string", minLength: 1 },
    runtimeClassName: { type: "string", minLength: 1 },
    topologySpreadConstraints: { type: "array", items: kubeObject },
    schedulerName: { type: "string", minLength: 1 },
    securityContext: {
      type: "object",
      additionalProperties: false,
      description: "Non-root only: the user and groups the step runs as, and its seccomp profile.",
      properties: {
        runAsUser: { type: "integer", minimum: 1 },
        runAsGroup: { type: "integer", minimum: 0 },
        fsGroup: { type: "integer", minimum: 0 },
        supplementalGroups: { type: "array", items: { type: "integer", minimum: 0 } },
        fsGroupChangePolicy: { type: "string", enum: ["OnRootMismatch", "Always"] },
        seccompProfile: {
          type: "object",
          additionalProperties: false,
          required: ["type"],
          properties: {
            type: { type: "string", enum: ["RuntimeDefault", "Localhost"] },
            localhostProfile: { type: "string" },
          },
        },
      },
    },
  },
} as const;

export const stepSpecSchema = {
  type: "object",
  description: "A reusable step that runs with its own short-lived cloud identity.",
  additionalProperties: false,
  properties: {
    description: { type: "string" },
    params: {
      type: "array",
      description: "Params the step declares; $(params.<name>) in any string field is replaced by the value.",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name"],
        properties: {
          name,
          type: { type: "string", enum: ["string", "array", "object"] },
          description: { type: "string" },
          default: paramValue,
          enum: {
            type: "array",
            items: { type: "string" },
            minItems: 1,
            description: "The values a string param may take.",
          },
          properties: {
            type: "object",
            description: "The keys of an object param, each a string.",
            additionalProperties: {
              type: "object",
              additionalProperties: false,
              properties: { type: { type: "string", enum: ["string"] } },
            },
          },
        },
      },
    },
    results: {
      type: "array",
      description: "Results the step may write to $(results.<name>.path).",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name"],
        properties: {
          name: resultName,
          type: { type: "string", enum: ["string", "array", "object"] },
          description: { type: "string" },
          properties: {
            type: "object",
            description: "The keys of an object result, each a string.",
            additionalProperties: {
              type: "object",
              additionalProperties: false,
              properties: { type: { type: "string", enum: ["string"] } },
            },
          },
        },
      },
    },
    image: {
      type: "string",
      minLength: 1,
      description:
        "Container image of the step: any image runs a command; a script needs its interpreter (/bin/sh unless it starts with #!).",
    },
    script: {
      type: "string",
      minLength: 1,
      description: "Script to run; starts with #! to pick an interpreter.",
    },
    command: { type: "array", items: { type: "string" }, minItems: 1 },
    args: { type: "array", items: { type: "string" } },
    env: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name"],
        properties: {
          name: { type: "string", pattern: "^[-._a-zA-Z][-._a-zA-Z0-9]*$" },
          value: { type: "string" },
        },
      },
    },
    workingDir: { type: "string" },
    workspaces: {
      type: "array",
      description:
        "Workspaces the step declares, as a Tekton Task does; the run's bindings are mounted at /workspace/<name> or mountPath.",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name"],
        properties: {
          name: { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength: 63 },
          description: { type: "string" },
          mountPath: { type: "string", minLength: 1 },
          readOnly: { type: "boolean" },
          optional: { type: "boolean" },
        },
      },
    },
    resources: {
      type: "object",
      additionalProperties: false,
      properties: { requests: quantityMap, limits: quantityMap },
    },
    application: {
      type: "string",
      minLength: 1,
      maxLength: 253,
      description: "KubeVela Application in the run's namespace.",
    },
    component: {
      type: "string",
      minLength: 1,
      maxLength: 253,
      description: "Component of that Application.",
    },
    trait: { type: "string", minLength: 1, description: "Trait type to read; default scoped-identity." },
    automountServiceAccountToken: { type: "boolean" },
    podTemplate: podTemplateSchema,
  },
} as const;

export type StepSpec = FromSchema<typeof stepSpecSchema>;
export type PodTemplate = FromSchema<typeof podTemplateSchema>;

export const traitSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    audience: { type: "string", minLength: 1, maxLength: 255, default: "sts.amazonaws.com" },
    // No default here: the policy's grant picks it (600 s, 300 s for token-only, never above its cap).
    tokenExpirationSeconds: { type: "integer", minimum: 60, maximum: 3600 },
    delivery: { type: "string", enum: ["env", "file", "token-only"], default: "env" },
    aws: {
      type: "object",
      additionalProperties: false,
      required: ["roleArn"],
      properties: {
        roleArn: {
          type: "string",
          minLength: 20,
          maxLength: 2048,
          pattern: "^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\\w+=,.@/-]+$",
        },
        sessionDuration: { type: "integer", minimum: 900, maximum: 43200, default: 900 },
        sessionPolicy: { anyOf: [{ type: "object" }, { type: "string", minLength: 1 }] },
        policyArns: {
          type: "array",
          maxItems: 10,
          items: { type: "string", minLength: 20, maxLength: 2048, pattern: "^arn:aws[a-z-]*:iam::" },
        },
        region: { type: "string", pattern: "^[a-z]{2}(-[a-z]+)+-[0-9]+$" },
        sessionTags: { ...stringMap, maxProperties: 50 },
        transitiveTagKeys: { type: "array", items: { type: "string" } },
      },
    },
  },
} as const;

export type TraitProperties = FromSchema<typeof traitSchema>;

/** A validator of validators.generated.ts, with the type its schema describes. */
export const compiled = <T>(validate: unknown): ValidateFunction<T> => validate as ValidateFunction<T>;

const stepValidator = compiled<StepSpec>(generated.validateStep);
const traitValidator = compiled<TraitProperties>(generated.validateTrait);
const podTemplateValidator = compiled<PodTemplate>(generated.validatePodTemplate);

function check<T>(validate: ValidateFunction<T>, value: unknown, where: string): Validation<T> {
  if (validate(value)) return { ok: true, value };
  return { ok: false, message: describeErrors(where, validate.errors) };
}

/** "at spec.params[0].name: must match pattern ...; ..." — short enough for a condition message. */
export function describeErrors(where: string, errors: ErrorObject[] | null | undefined): string {
  const parts = (errors ?? []).slice(0, 5).map((e) => {
    const at = `${where}${e.instancePath.replaceAll("/", ".")}`;
    if (e.keyword === "additionalProperties") {
      return `${at}: unknown field "${String(e.params.additionalProperty)}"`;
    }
    if (e.keyword === "enum") {
      return `${at}: must be one of ${(e.params.allowedValues as string[]).join(", ")}`;
    }
    return `${at}: ${e.message ?? "is invalid"}`;
  });
  const more = (errors?.length ?? 0) > 5 ? ` (and ${(errors?.length ?? 0) - 5} more)` : "";
  return parts.join("; ") + more;
}

export type Validation<T> = { ok: true; value: T } | { ok: false; message: string };

/** Validates a copy, filling defaults; never mutates the input. */
export function checkStepSpec(input: unknown, where: string): Validation<StepSpec> {
  return check(stepValidator, structuredClone(input), where);
}

export function checkTraitProperties(input: unknown, where: string): Validation<TraitProperties> {
  return check(traitValidator, structuredClone(input ?? {}), where);
}

export function checkPodTemplate(input: unknown, where: string): Validation<PodTemplate> {
  return check(podTemplateValidator, structuredClone(input ?? {}), where);
}
