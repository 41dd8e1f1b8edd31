// The ScopedStepPolicy object: the operator's rules for which identities steps in a namespace may
// get. One JSON Schema gives the TypeScript type, the runtime validator (ajv's, compiled ahead of
// time into validators.generated.ts, defaults filled) and, through policy-crd.ts, the CRD's
// openAPIV3Schema. A few rules the API server cannot check (if/then across fields) are left to
// ajv: such an object is stored but ignored, so it can only deny.
import type { FromSchema } from "json-schema-to-ts";
import type { V1ObjectMeta } from "@kubernetes/client-node";
import { compiled, describeErrors, podTemplateFields, type Validation } from "./schema.ts";
import { validatePolicySpec } from "./validators.generated.ts";

export const policyApi = {
  group: "scopedstep.dev",
  version: "v1alpha1",
  plural: "scopedsteppolicies",
} as const;

export const defaultSubjectTemplate = "system:scoped-step:{namespace}:{application}:{component}";

// The run facts a subject may use; the issuer's checkSubjectTemplate (controller/issuer/claims.ts)
// knows the same lists, and a unit test keeps them in step.
//
// Asserted: set by Kubernetes (namespace, the UIDs) or resolved by the controller in the run's own
// namespace (the Application and component whose trait the policy allowed).
export const assertedSubjectFacts = [
  "namespace",
  "namespaceUid",
  "customRunUid",
  "application",
  "component",
] as const;
// Tenant-supplied: copied from what the run's creator wrote. A CustomRun created directly (not by a
// PipelineRun) carries whatever name, tekton.dev labels and serviceAccountName its author chose.
export const tenantSuppliedSubjectFacts = [
  "customRun",
  "pipelineRun",
  "pipelineTask",
  "serviceAccount",
] as const;
export const subjectPlaceholders = [...assertedSubjectFacts, ...tenantSuppliedSubjectFacts] as const;

/**
 * Session tag keys the controller sets itself (namespace, its UID, application, component, run UID);
 * a trait cannot set them and a policy cannot allow them. AWS compares tag keys case-insensitively.
 */
export const reservedTagPrefix = "scoped-step:";
export const isReservedTagKey = (key: string): boolean => key.toLowerCase().startsWith(reservedTagPrefix);

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
      description:
        "Longest OIDC token lifetime (the trait's tokenExpirationSeconds) allowed for env and file delivery.",
      minimum: 60,
      maximum: 3600,
      default: 600,
    },
    deliveryModes: {
      type: "array",
      description:
        "Delivery modes a trait may ask for; token-only hands the raw OIDC token to the step and also needs the tokenOnly block.",
      minItems: 1,
      items: { type: "string", enum: ["env", "file", "token-only"] },
      default: ["env", "file"],
    },
    tokenOnly: {
      type: "object",
      description:
        "Where token-only delivery is allowed: the step holds the signed token itself, and the controller cannot " +
        "scope or revoke what the step does with it. Without this block token-only is allowed for no audience.",
      additionalProperties: false,
      required: ["audiences"],
      properties: {
        audiences: {
          type: "array",
          description:
            "Audiences a step may get a raw token for (instead of the audiences list, which is for env and file).",
          minItems: 1,
          items: { type: "string", minLength: 1, maxLength: 255 },
        },
        maxTokenLifetimeSeconds: {
          type: "integer",
          description:
            "Longest lifetime of a raw token in the step; also its lifetime when the trait names none.",
          minimum: 60,
          maximum: 3600,
          default: 300,
        },
        stsAudiences: {
          type: "array",
          description:
            "Audiences AWS STS accepts from this issuer (the client IDs of its IAM OIDC provider). A step holding a " +
            "token for one of them can call AssumeRoleWithWebIdentity itself.",
          items: { type: "string", minLength: 1, maxLength: 255 },
          default: ["sts.amazonaws.com"],
        },
        allowUnscopedUnrevocableStsSessions: {
          type: "boolean",
          description:
            "Allows token-only with an STS audience. The step can then assume, by itself, any role whose trust policy " +
            "matches its subject: with no session policy, any duration up to the role's maximum, and no revocation " +
            "the controller can perform (deleting the Secret does not end a session the step minted).",
          default: false,
        },
      },
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
        allowedSessionTags: {
          type: "object",
          description:
            "Session tags a trait may set (aws.sessionTags): tag key -> patterns for its value (* is any run of " +
            "characters, ? one character). Keys match case-insensitively, as AWS compares them. None by default; " +
            "keys under scoped-step: are the controller's own and cannot be listed.",
          maxProperties: 50,
          additionalProperties: {
            type: "array",
            minItems: 1,
            items: { type: "string", maxLength: 256 },
          },
          default: {},
        },
        allowedTransitiveTagKeys: {
          type: "array",
          description:
            "Session tag keys a trait may mark transitive (aws.transitiveTagKeys), so they pass on through role chaining. None by default.",
          items: { type: "string", minLength: 1, maxLength: 128 },
          default: [],
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
    issuer: {
      type: "string",
      description:
        "Which issuer the selected namespaces' tokens must come from. external: the organisation's OpenID provider " +
        "(the controller's issuer-mode external); self: the controller's own issuer. Unset: whichever the controller uses. " +
        "A run on a controller in the other mode fails with reason IssuerModeNotAllowed.",
      enum: ["self", "external"],
    },
    subjectTemplate: {
      type: "string",
      description:
        `Token subject; placeholders: ${assertedSubjectFacts.map((p) => `{${p}}`).join(", ")}, and with ` +
        `allowTenantSuppliedSubjectFacts also ${tenantSuppliedSubjectFacts.map((p) => `{${p}}`).join(", ")}.`,
      pattern: `^([^{}]|\\{(${subjectPlaceholders.join("|")})\\})+$`,
      maxLength: 255,
      default: defaultSubjectTemplate,
    },
    allowTenantSuppliedSubjectFacts: {
      type: "boolean",
      description:
        "Lets subjectTemplate use the run's name, its tekton.dev/pipelineRun and pipelineTask labels and its " +
        "serviceAccountName. Whoever creates a CustomRun in the namespace writes those freely, so a trust policy " +
        "matching them trusts that person's choice, not the platform.",
      default: false,
    },
    forbiddenPodTemplateFields: {
      type: "array",
      description:
        "podTemplate fields a ScopedStep may not set in the selected namespaces (e.g. nodeSelector, tolerations to keep " +
        "steps off special nodes). Host namespaces and privileged mode are never settable.",
      items: { type: "string", enum: podTemplateFields },
      default: [],
    },
    maxRetries: {
      type: "integer",
      description:
        "Most retries a run may ask for (spec.retries); each attempt mints a credential of its own. A run asking for more fails.",
      minimum: 0,
      maximum: 100,
      default: 3,
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

/** Rules across fields, which the CRD schema cannot express. */
function crossFieldProblem(spec: PolicySpec): string | undefined {
  if (!spec.namespaceSelector && !spec.namespaces) {
    return "spec selects no namespace: set namespaceSelector ({} for every namespace) or namespaces";
  }
  const tenantSupplied = tenantSuppliedPlaceholders(spec.subjectTemplate);
  if (tenantSupplied.length > 0 && !spec.allowTenantSuppliedSubjectFacts) {
    return (
      `spec.subjectTemplate uses ${tenantSupplied.map((p) => `{${p}}`).join(", ")}, which the run's author chooses ` +
      `freely: use only ${assertedSubjectFacts.map((p) => `{${p}}`).join(", ")}, or set allowTenantSuppliedSubjectFacts: true`
    );
  }
  const reserved = Object.keys(spec.aws?.allowedSessionTags ?? {}).filter(isReservedTagKey);
  if (reserved.length > 0) {
    return `spec.aws.allowedSessionTags lists ${reserved.join(", ")}: keys under ${reservedTagPrefix} are set by the controller only`;
  }
  return undefined;
}

/** The tenant-supplied facts a subject template uses. */
export function tenantSuppliedPlaceholders(template: string): string[] {
  return [...template.matchAll(/\{([^{}]*)\}/g)]
    .map((m) => m[1] ?? "")
    .filter((name) => (tenantSuppliedSubjectFacts as readonly string[]).includes(name));
}

const validateSpec = compiled<PolicySpec>(validatePolicySpec);

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
  const problem = crossFieldProblem(spec);
  if (problem) return { ok: false, message: problem };
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
