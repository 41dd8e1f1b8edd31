// Working out what the step is, from any of the three ways a CustomRun can say it: params on the
// run itself, an inline customSpec.spec, or customRef.name naming a ScopedStep. Pure functions.
import { RunFailure } from "./failure.ts";
import { checkStepSpec, dnsSubdomain, quantity, type StepSpec } from "./schema.ts";
import type { CustomRun, Param, ParamValue } from "./types.ts";
import { runWorkspaces, type RunWorkspaces, type WorkspaceBinding } from "./workspaces.ts";

export const resultsDir = "/tekton/results";

/**
 * Result names the controller writes about the step's identity (identity-subject, aws-role-arn,
 * credentials-expiration, revoked-at, ...), and room for more providers. A step declaring one
 * could put a forged value beside the real one.
 */
const reservedResultPrefixes = [
  "identity-",
  "token-",
  "credentials-",
  "revoked-",
  "revocation",
  "aws-",
  "scoped-step-",
];
export const isReservedResultName = (name: string): boolean =>
  reservedResultPrefixes.some((p) => name.toLowerCase().startsWith(p));
export const defaultTrait = "scoped-identity";

/** A step ready to run: every variable substituted, identity reference present. */
export interface ResolvedStep {
  spec: StepSpec & { image: string; application: string; component: string; trait: string };
  /** Where it came from, for messages: "params", "customSpec" or "ScopedStep <name>". */
  source: string;
  /** The run's workspaces: volumes and where the step sees them. */
  workspaces: Pick<RunWorkspaces, "volumes" | "mounts">;
}

/** What a step may refer to besides its params and results: Tekton's context and workspaces. */
export interface RunContext {
  /** The CustomRun's spec.workspaces. */
  workspaces: WorkspaceBinding[];
  run: { name: string; namespace: string; uid: string };
  /** $(context.task.retry-count): the attempt, 0 for the first. */
  retryCount: number;
}

/** A run with nothing bound and no name, for tests of pure logic. */
export const emptyContext: RunContext = {
  workspaces: [],
  run: { name: "", namespace: "", uid: "" },
  retryCount: 0,
};

/** The values of $(context.*), as Tekton gives a TaskRun's steps. */
function contextVariables(ctx: RunContext, taskName: string): Map<string, string> {
  return new Map([
    ["context.taskRun.name", ctx.run.name],
    ["context.taskRun.namespace", ctx.run.namespace],
    ["context.taskRun.uid", ctx.run.uid],
    ["context.task.name", taskName],
    ["context.task.retry-count", String(ctx.retryCount)],
  ]);
}

type ParamKind = "string" | "array" | "object";
const kindOf = (v: ParamValue): ParamKind =>
  typeof v === "string" ? "string" : Array.isArray(v) ? "array" : "object";

// Params accepted when the run carries the step itself (customRef without a name).
const directParams: Record<string, ParamKind> = {
  image: "string",
  script: "string",
  command: "array",
  args: "array",
  env: "object",
  workingDir: "string",
  requests: "object",
  limits: "object",
  results: "array",
  application: "string",
  component: "string",
  trait: "string",
};

function crossNamespaceCheck(params: Param[]): void {
  for (const p of params) {
    if (["namespace", "applicationNamespace"].includes(p.name)) {
      throw new RunFailure(
        "CrossNamespaceReference",
        `param ${p.name} is not allowed: the Application is always read from the run's own namespace`,
      );
    }
    if (p.name === "application" && typeof p.value === "string" && p.value.includes("/")) {
      throw new RunFailure(
        "CrossNamespaceReference",
        `application "${p.value}" names another namespace: the Application must be in the run's own namespace; use just its name`,
      );
    }
  }
}

function duplicateCheck(params: Param[]): void {
  const seen = new Set<string>();
  for (const p of params) {
    if (seen.has(p.name)) throw new RunFailure("DuplicateParam", `param ${p.name} is given more than once`);
    seen.add(p.name);
  }
}

export function stepFromParams(params: Param[], ctx: RunContext = emptyContext): ResolvedStep {
  duplicateCheck(params);
  crossNamespaceCheck(params);
  const raw: Record<string, unknown> = {};
  for (const p of params) {
    const want = directParams[p.name];
    if (!want) {
      throw new RunFailure(
        "UnknownParam",
        `param ${p.name} is not known; a ScopedStep run takes ${Object.keys(directParams).join(", ")} ` +
          `(or name a ScopedStep in customRef.name to declare your own params)`,
      );
    }
    if (kindOf(p.value) !== want) {
      throw new RunFailure(
        "WrongParamType",
        `param ${p.name} must be of type ${want}, got ${kindOf(p.value)}`,
      );
    }
    switch (p.name) {
      case "env":
        raw.env = Object.entries(p.value as Record<string, string>).map(([name, value]) => ({ name, value }));
        break;
      case "requests":
      case "limits":
        raw.resources = { ...(raw.resources as object | undefined), [p.name]: p.value };
        break;
      case "results":
        raw.results = (p.value as string[]).map((name) => ({ name }));
        break;
      default:
        raw[p.name] = p.value;
    }
  }
  const checked = checkStepSpec(raw, "params");
  if (!checked.ok) throw new RunFailure("InvalidParams", checked.message);
  // Nowhere to declare workspaces: what the run binds is mounted, as Tekton propagates a
  // pipeline's workspaces into an embedded task. An embedded task is named after its run.
  const ws = runWorkspaces(ctx.workspaces, undefined, "the run");
  const variables = new Map([...contextVariables(ctx, ctx.run.name), ...ws.variables]);
  return runnable(substitute(checked.value, new Map(), variables), "params", ws);
}

/**
 * `taskName`: $(context.task.name), the ScopedStep's name, or for a step given inline, the run's
 * name (as Tekton names an embedded task after its TaskRun).
 */
export function stepFromDefinition(
  definition: unknown,
  params: Param[],
  source: string,
  ctx: RunContext = emptyContext,
  taskName = ctx.run.name,
): ResolvedStep {
  if (
    definition === undefined ||
    definition === null ||
    (typeof definition === "object" && Object.keys(definition).length === 0)
  ) {
    throw new RunFailure(
      "InvalidStepSpec",
      `${source} has an empty spec: set at least image, script and the identity`,
    );
  }
  const checked = checkStepSpec(definition, source === "customSpec" ? "customSpec.spec" : `${source} spec`);
  if (!checked.ok) throw new RunFailure("InvalidStepSpec", checked.message);
  const spec = checked.value;
  duplicateCheck(params);
  crossNamespaceCheck(params);
  const declared = new Map((spec.params ?? []).map((p) => [p.name, p]));
  const values = new Map<string, ParamValue>();
  for (const p of params) {
    const decl = declared.get(p.name);
    if (!decl) {
      const names = [...declared.keys()];
      throw new RunFailure(
        "UnknownParam",
        `param ${p.name} is not declared by ${source}; it declares ${names.length ? names.join(", ") : "no params"}`,
      );
    }
    const want = decl.type ?? "string";
    if (kindOf(p.value) !== want) {
      throw new RunFailure(
        "WrongParamType",
        `param ${p.name} of ${source} must be of type ${want}, got ${kindOf(p.value)}`,
      );
    }
    values.set(p.name, p.value);
  }
  for (const decl of declared.values()) {
    if (!values.has(decl.name)) {
      if (decl.default === undefined) {
        throw new RunFailure(
          "MissingParam",
          `param ${decl.name} is required by ${source} and has no default`,
        );
      }
      values.set(decl.name, decl.default);
    }
    values.set(decl.name, checkDeclared(decl, values.get(decl.name) as ParamValue, source));
  }
  const ws = runWorkspaces(ctx.workspaces, spec.workspaces ?? [], source);
  const variables = new Map([...contextVariables(ctx, taskName), ...ws.variables]);
  return runnable(substitute(spec, values, variables), source, ws);
}

type ParamDeclaration = NonNullable<StepSpec["params"]>[number];

/** A value against its declaration's enum (strings) or properties (objects, defaults filling gaps). */
function checkDeclared(decl: ParamDeclaration, value: ParamValue, source: string): ParamValue {
  if (decl.enum && typeof value === "string" && !decl.enum.includes(value)) {
    throw new RunFailure(
      "InvalidParamValue",
      `param ${decl.name} of ${source} is "${value}", which is not one of ${decl.enum.join(", ")}`,
    );
  }
  if (decl.properties && typeof value === "object" && !Array.isArray(value)) {
    const defaults =
      decl.default && typeof decl.default === "object" && !Array.isArray(decl.default) ? decl.default : {};
    const merged = { ...defaults, ...value };
    const missing = Object.keys(decl.properties).filter((k) => merged[k] === undefined);
    if (missing.length) {
      throw new RunFailure(
        "InvalidParamValue",
        `object param ${decl.name} of ${source} lacks key${missing.length > 1 ? "s" : ""} ${missing.join(", ")}`,
      );
    }
    return merged;
  }
  return value;
}

const variable =
  /\$\(\s*(params|results)(?:\.([A-Za-z0-9_.-]+?)|\[["']([^"']+)["']\])((?:\.[A-Za-z0-9_-]+)|\[\*\]|\[\d+\])?\s*\)/g;
/** Tekton's other namespaces: $(workspaces.<name>.<what>) and $(context.<...>). */
const tektonVariable = /\$\(\s*(workspaces|context)\.([A-Za-z0-9_.-]+)\s*\)/g;

/** Params and results first, then workspaces and context (which a param's value may hold), as Tekton does. */
function substituteString(
  text: string,
  values: Map<string, ParamValue>,
  spec: StepSpec,
  variables: Map<string, string>,
): string {
  return substituteParams(text, values, spec).replace(tektonVariable, (whole, kind: string, rest: string) => {
    const value = variables.get(`${kind}.${rest}`);
    if (value !== undefined) return value;
    const known = [...variables.keys()].filter((k) => k.startsWith(`${kind}.`));
    throw new RunFailure(
      kind === "workspaces" ? "UnknownWorkspaceReference" : "UnknownContextReference",
      `${whole} names nothing: ${known.length ? `known here are ${known.map((k) => `$(${k})`).join(", ")}` : `the step has no ${kind}`}`,
    );
  });
}

function substituteParams(text: string, values: Map<string, ParamValue>, spec: StepSpec): string {
  return text.replace(variable, (whole, kind: string, dotted?: string, quoted?: string, tail?: string) => {
    const ref = dotted ?? quoted ?? "";
    if (kind === "results") {
      const [resultName, what] = tail ? [ref, tail.slice(1)] : splitLast(ref);
      if (what !== "path") return whole;
      if (!(spec.results ?? []).some((r) => r.name === resultName)) {
        throw new RunFailure(
          "UndeclaredResult",
          `${whole} refers to result ${resultName}, which the step does not declare`,
        );
      }
      return `${resultsDir}/${resultName}`;
    }
    let paramName = ref;
    let key = tail?.startsWith(".") ? tail.slice(1) : undefined;
    if (!values.has(paramName) && !quoted && ref.includes(".")) [paramName, key] = splitLast(ref);
    const value = values.get(paramName);
    if (value === undefined) {
      throw new RunFailure(
        "UnknownParamReference",
        `${whole} refers to param ${paramName}, which is not declared`,
      );
    }
    const index = /^\[(\d+)\]$/.exec(tail ?? "")?.[1];
    if (index !== undefined) {
      if (!Array.isArray(value)) {
        throw new RunFailure("WrongParamType", `${whole}: param ${paramName} is not an array`);
      }
      const item = value[Number(index)];
      if (item === undefined) {
        throw new RunFailure(
          "ParamIndexOutOfRange",
          `${whole}: array param ${paramName} has ${value.length} item${value.length === 1 ? "" : "s"}`,
        );
      }
      return item;
    }
    if (typeof value === "string" && key === undefined && tail !== "[*]") return value;
    if (typeof value === "object" && !Array.isArray(value) && key !== undefined) {
      const v = value[key];
      if (v === undefined)
        throw new RunFailure(
          "UnknownParamReference",
          `${whole}: object param ${paramName} has no key ${key}`,
        );
      return v;
    }
    throw new RunFailure(
      "WrongParamType",
      `${whole} cannot be used inside a string: array params expand only as a whole element of command or args`,
    );
  });
}

function splitLast(ref: string): [string, string] {
  const i = ref.lastIndexOf(".");
  return i < 0 ? [ref, ""] : [ref.slice(0, i), ref.slice(i + 1)];
}

function substituteList(
  items: string[],
  values: Map<string, ParamValue>,
  spec: StepSpec,
  variables: Map<string, string>,
): string[] {
  return items.flatMap((item) => {
    const whole = /^\$\(\s*params(?:\.([A-Za-z0-9_-]+)|\[["']([^"']+)["']\])\[\*\]\s*\)$/.exec(item);
    const value = whole ? values.get(whole[1] ?? whole[2] ?? "") : undefined;
    if (Array.isArray(value)) return value;
    return [substituteString(item, values, spec, variables)];
  });
}

function substitute(
  spec: StepSpec,
  values: Map<string, ParamValue>,
  variables: Map<string, string>,
): StepSpec {
  const s = (t: string | undefined) =>
    t === undefined ? undefined : substituteString(t, values, spec, variables);
  const out: StepSpec = { ...spec };
  for (const field of ["image", "script", "workingDir", "application", "component", "trait"] as const) {
    const v = s(spec[field]);
    if (v !== undefined) out[field] = v;
  }
  if (spec.command) out.command = substituteList(spec.command, values, spec, variables);
  if (spec.args) out.args = substituteList(spec.args, values, spec, variables);
  if (spec.env)
    out.env = spec.env.map((e) => (e.value === undefined ? e : { ...e, value: s(e.value) ?? "" }));
  if (spec.resources) {
    const quantities = (m: Record<string, string> | undefined) =>
      m && Object.fromEntries(Object.entries(m).map(([k, v]) => [k, s(v) ?? ""]));
    out.resources = {
      ...(spec.resources.requests ? { requests: quantities(spec.resources.requests) } : {}),
      ...(spec.resources.limits ? { limits: quantities(spec.resources.limits) } : {}),
    };
  }
  return out;
}

function runnable(spec: StepSpec, source: string, workspaces: RunWorkspaces): ResolvedStep {
  const missing = (field: string) =>
    new RunFailure(
      "MissingParam",
      source === "params"
        ? `param ${field} is required`
        : `${source} does not set ${field} (nor a param for it)`,
    );
  if (!spec.image) throw missing("image");
  if (spec.script && spec.command) {
    throw new RunFailure("InvalidStepSpec", `${source} sets both script and command: set one of them`);
  }
  if (!spec.script && !spec.command) throw missing("script or command");
  if (!spec.application) throw missing("application");
  if (!spec.component) throw missing("component");
  if (spec.application.includes("/")) {
    throw new RunFailure(
      "CrossNamespaceReference",
      `application "${spec.application}" names another namespace`,
    );
  }
  if (!dnsSubdomain.test(spec.application) || spec.application.length > 253) {
    throw new RunFailure(
      "InvalidParams",
      `application "${spec.application}" is not a valid Application name`,
    );
  }
  const names = new Set<string>();
  for (const r of spec.results ?? []) {
    if (names.has(r.name))
      throw new RunFailure("InvalidStepSpec", `${source} declares result ${r.name} twice`);
    if (isReservedResultName(r.name)) {
      throw new RunFailure(
        "ReservedResultName",
        `${source} declares result ${r.name}, but results named ${reservedResultPrefixes.map((p) => `${p}*`).join(", ")} ` +
          `are the controller's record of the step's identity: rename it`,
      );
    }
    names.add(r.name);
  }
  // Checked again now that params are substituted: $(params.cpu) may stand for a quantity.
  for (const [kind, m] of Object.entries(spec.resources ?? {})) {
    for (const [k, v] of Object.entries(m ?? {})) {
      if (!quantity.test(v)) {
        throw new RunFailure(
          "InvalidStepSpec",
          `${source}: resources.${kind}.${k} is "${v}", which is not a quantity (e.g. 500m, 256Mi)`,
        );
      }
    }
  }
  return {
    spec: {
      ...spec,
      image: spec.image,
      application: spec.application,
      component: spec.component,
      trait: spec.trait ?? defaultTrait,
    },
    source,
    workspaces: { volumes: workspaces.volumes, mounts: workspaces.mounts },
  };
}

/** Which of the three ways the run uses, and the ScopedStep name when it names one. */
export function stepSource(
  run: CustomRun,
): { kind: "params" } | { kind: "customSpec"; spec: unknown } | { kind: "ref"; name: string } {
  if (run.spec.customSpec) return { kind: "customSpec", spec: run.spec.customSpec.spec };
  const name = run.spec.customRef?.name;
  return name ? { kind: "ref", name } : { kind: "params" };
}
