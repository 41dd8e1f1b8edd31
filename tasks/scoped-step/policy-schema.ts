// The ScopedStepPolicy object: the operator's rules for which identities steps in a namespace may
// get. One JSON Schema gives the TypeScript type, the runtime validator (ajv, defaults filled) and,
// through policy-crd.ts, the CRD's openAPIV3Schema. A few rules the API server cannot check
// (if/then across fields) are left to ajv: such an object is stored but ignored, so it can only deny.
import { Ajv } from "ajv";
import type { FromSchema } from "json-schema-to-ts";
import type { V1ObjectMeta } from "@kubernetes/client-node";
import { describeErrors, type Validation } from "./schema.ts";

export const policyApi = {
  group: "scopedstep.dev",
  version: "v1alpha1",
  plural: "scopedsteppolicies",
} as const;

export const defaultSubjectTemplate = "system:scoped-step:{namespace}:{application}:{component}";

// The run facts a subject may use; the issuer's checkSubjectTemplate (controller/issuer/claims.ts)
// knows the same list, and a unit test keeps the two in step.
export const subjectPlaceholders = [
  "namespace",
  "application",
  "component",
  "customRun",
  "pipelineRun",
  "pipelineTask",
  "serviceAccount",
] as const;

// Role and policy ARNs: `*` and `?` are the only wildcards (see globMatch in policy.ts).
const arnPattern = { type: "string", minLength: 5, maxLength: 2048, pattern: "^arn:[!-~]+$" } as const;

const labelSelectorSchema = {
  type: "object",
  description:
    "A Kubernetes label selector over the namespace's labels. {} selects every namespace; " +
    "matchLabels and matchExpressions must all match.",
  additionalProperties: false,
  properties: {
    matchLabels: { type: "object", additionalProperties: { type: "string", maxLength: 63 } },
    matchExpressions: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["key", "operator"],
        properties: {
          key: { type: "string", minLength: 1, maxLength: 317 },
          operator: { type: "string", enum: ["In", "NotIn", "Exists", "DoesNotExist"] },
          values: { type: "array", items: { type: "string", maxLength: 63 } },
        },
        // As for Kubernetes' own selectors: In and NotIn need values, Exists and DoesNotExist take none.
        if: { properties: { operator: { enum: ["In", "NotIn"] } } },
        then: { required: ["values"], properties: { values: { minItems: 1 } } },
        else: { properties: { values: { maxItems: 0 } } },
      },
    },
  },
} as const;

export const policySpecSchema = {
  type: "object",
  description:
    "Which identities scoped steps in the selected namespaces may get. A namespace no policy selects gets none.",
  additionalProperties: false,
  properties: {
    namespaceSelector: labelSelectorSchema,
    namespaces: {
      type: "array",
      description: "Namespace names. With namespaceSelector, a namespace must be listed here and match it.",
      minItems: 1,
      items: { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength: 63 },
    },
    audiences: {
      type: "array",
      description: "Token audiences (aud) a trait may ask for, exactly as written.",
      minItems: 1,
      items: { type: "string", minLength: 1, maxLength: 255 },
      default: ["sts.amazonaws.com"],
    },
    maxTokenLifetimeSeconds: {
      type: "integer",
      description: "Longest OIDC token lifetime (the trait's tokenExpirationSeconds) allowed.",
      minimum: 60,
      maximum: 3600,
      default: 600,
    },
    deliveryModes: {
      type: "array",
      description: "Delivery modes a trait may ask for; token-only hands the raw OIDC token to the step.",
      minItems: 1,
      items: { type: "string", enum: ["env", "file", "token-only"] },
      default: ["env", "file"],
    },
    aws: {
      type: "object",
      description: "AWS rules. Without this block no AWS role is allowed (token-only delivery still may be).",
      additionalProperties: false,
      properties: {
        allowedRoleArns: {
          type: "array",
          description:
            "Patterns for the role ARN, matched against the whole ARN: * is any run of characters " +
            "(including / and :), ? is one character, everything else is literal.",
          items: arnPattern,
          default: [],
        },
        allowedPolicyArns: {
          type: "array",
          description:
            "Patterns for managed session policy ARNs (the trait's aws.policyArns); none by default.",
          items: arnPattern,
          default: [],
        },
        maxSessionDuration: {
          type: "integer",
          description: "Longest STS session (the trait's aws.sessionDuration), in seconds.",
          minimum: 900,
          maximum: 43200,
          default: 900,
        },
        requireSessionPolicy: {
          type: "boolean",
          description: "When true, the trait must carry an inline aws.sessionPolicy.",
          default: false,
        },
      },
    },
    revocation: {
      type: "string",
      description:
        "secret: delete the credential Secret when the step ends; deny-policy: also deny the session on the role.",
      enum: ["secret", "deny-policy"],
      default: "secret",
    },
    subjectTemplate: {
      type: "string",
      description: `Token subject; placeholders: ${subjectPlaceholders.map((p) => `{${p}}`).join(", ")}.`,
      pattern: `^([^{}]|\\{(${subjectPlaceholders.join("|")})\\})+$`,
      maxLength: 255,
      default: defaultSubjectTemplate,
    },
  },
} as const;

export const policyStatusSchema = {
  type: "object",
  properties: {
    observedGeneration: { type: "integer", format: "int64" },
    conditions: {
      type: "array",
      items: {
        type: "object",
        required: ["type", "status"],
        properties: {
          type: { type: "string" },
          status: { type: "string", enum: ["True", "False", "Unknown"] },
          reason: { type: "string" },
          message: { type: "string" },
          observedGeneration: { type: "integer", format: "int64" },
          lastTransitionTime: { type: "string", format: "date-time" },
        },
      },
    },
  },
} as const;

export type PolicySpec = FromSchema<typeof policySpecSchema>;
export type PolicyStatus = FromSchema<typeof policyStatusSchema>;
export type LabelSelector = NonNullable<PolicySpec["namespaceSelector"]>;
export type Revocation = PolicySpec["revocation"];
export type DeliveryMode = PolicySpec["deliveryModes"][number];

export interface ScopedStepPolicy {
  apiVersion?: string;
  kind?: string;
  metadata: V1ObjectMeta & { name: string };
  spec: PolicySpec;
  status?: PolicyStatus;
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, strictTypes: false });
const validateSpec = ajv.compile<PolicySpec>(policySpecSchema);

/**
 * Validates a copy of a ScopedStepPolicy object as read from the API server, filling defaults.
 * Never mutates the input.
 */
export function checkPolicy(input: unknown): Validation<ScopedStepPolicy> {
  const obj = (input ?? {}) as { metadata?: V1ObjectMeta; spec?: unknown; status?: PolicyStatus };
  const name = obj.metadata?.name;
  if (!name) return { ok: false, message: "metadata.name is missing" };
  const spec = structuredClone(obj.spec ?? {});
  if (!validateSpec(spec)) {
    // "must match then schema" only repeats the error the then-branch already explains.
    return {
      ok: false,
      message: describeErrors(
        "spec",
        validateSpec.errors?.filter((e) => e.keyword !== "if"),
      ),
    };
  }
  if (!spec.namespaceSelector && !spec.namespaces) {
    return {
      ok: false,
      message: "spec selects no namespace: set namespaceSelector ({} for every namespace) or namespaces",
    };
  }
  return {
    ok: true,
    value: {
      apiVersion: `${policyApi.group}/${policyApi.version}`,
      kind: "ScopedStepPolicy",
      metadata: Object.assign(structuredClone(obj.metadata ?? {}), { name }),
      spec,
      ...(obj.status ? { status: structuredClone(obj.status) } : {}),
    },
  };
}
