// Finding the one scoped-identity trait a step refers to, in an Application of the run's own
// namespace, and checking its properties. Pure: the caller fetches the Application.
import { RunFailure } from "./failure.ts";
import { isReservedTagKey, reservedTagPrefix } from "./policy-schema.ts";
import { checkTraitProperties, type TraitProperties } from "./schema.ts";
import type { Application } from "./types.ts";

export interface TraitRef {
  namespace: string;
  application: string;
  component: string;
  trait: string;
}

export interface ResolvedTrait {
  ref: TraitRef;
  /** The trait type as written on the component, version suffix included. */
  type: string;
  properties: TraitProperties;
}

/** KubeVela allows a version suffix on a definition name: scoped-identity@v2 is scoped-identity. */
export const traitBaseName = (type: string): string => type.replace(/@v[0-9][0-9.]*$/, "");

export function describeRef(ref: TraitRef): string {
  return `component ${ref.component} of Application ${ref.application} in namespace ${ref.namespace}`;
}

export function applicationNotFound(ref: TraitRef): RunFailure {
  return new RunFailure(
    "ApplicationNotFound",
    `Application ${ref.application} not found in namespace ${ref.namespace}; the step's identity comes from a ` +
      `${ref.trait} trait on one of its components, and the Application must be in the run's own namespace`,
  );
}

export function resolveTrait(app: Application, ref: TraitRef): ResolvedTrait {
  if (app.metadata.namespace !== undefined && app.metadata.namespace !== ref.namespace) {
    throw new RunFailure(
      "CrossNamespaceReference",
      `Application ${ref.application} is not in namespace ${ref.namespace}`,
    );
  }
  const components = app.spec.components ?? [];
  const component = components.find((c) => c.name === ref.component);
  if (!component) {
    const names = components.map((c) => c.name);
    throw new RunFailure(
      "ComponentNotFound",
      `component ${ref.component} not found in Application ${ref.application} in namespace ${ref.namespace}; ` +
        `it has ${names.length ? `components ${names.join(", ")}` : "no components"}`,
    );
  }
  const wanted = traitBaseName(ref.trait);
  const matches = (component.traits ?? []).filter((t) => traitBaseName(t.type) === wanted);
  if (matches.length === 0) {
    throw new RunFailure(
      "TraitNotFound",
      `trait ${wanted} not found on ${describeRef(ref)}; add a ${wanted} trait to that component`,
    );
  }
  if (matches.length > 1) {
    throw new RunFailure(
      "AmbiguousTrait",
      `${describeRef(ref)} has ${matches.length} ${wanted} traits; keep exactly one so the step's identity is unambiguous`,
    );
  }
  const trait = matches[0];
  if (!trait) throw new RunFailure("TraitNotFound", `trait ${wanted} not found on ${describeRef(ref)}`);
  const checked = checkTraitProperties(trait.properties, `trait ${wanted} properties`);
  if (!checked.ok) {
    throw new RunFailure("InvalidTrait", `${describeRef(ref)}: ${checked.message}`);
  }
  const reserved = Object.keys(checked.value.aws?.sessionTags ?? {}).filter(isReservedTagKey);
  if (reserved.length > 0) {
    throw new RunFailure(
      "ReservedSessionTag",
      `${describeRef(ref)}: aws.sessionTags sets ${reserved.join(", ")}; tags under ${reservedTagPrefix} are set by ` +
        `the controller from facts it vouches for (namespace, application, component, run UID): remove them`,
    );
  }
  if (checked.value.delivery !== "token-only" && !checked.value.aws) {
    throw new RunFailure(
      "InvalidTrait",
      `${describeRef(ref)}: trait ${wanted} needs aws.roleArn unless delivery is token-only`,
    );
  }
  return { ref, type: trait.type, properties: checked.value };
}
