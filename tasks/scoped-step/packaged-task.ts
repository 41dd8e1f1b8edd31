// A ScopedStep packaged as a Tekton Task, so that every resolver serves it: Tekton's cluster
// resolver reads only Tasks, Pipelines and StepActions from the API server, and the hub and
// Tekton's tooling read Tasks. The packaging is a tekton.dev/v1 Task with exactly one step; what a
// Task has no field for (whose identity the step takes) goes in scopedstep.dev/ annotations. Both
// directions are here: `stepFromTask` reads a resolved Task, `taskFromStep` writes the catalog's.
// What a Task can say that a ScopedStep cannot do (sidecars, volumes, a step template, a second
// step, onError, ...) is refused by name rather than dropped, so nothing a pipeline author wrote is
// silently ignored.

/** The annotations that make a Task a packaged ScopedStep: application and component are required. */
export const packagedStepAnnotations = {
  application: "scopedstep.dev/application",
  component: "scopedstep.dev/component",
  trait: "scopedstep.dev/trait",
} as const;

export const taskType = { apiVersion: "tekton.dev/v1", kind: "Task" } as const;

type Json = Record<string, unknown>;

/** The Task's fields that map onto a ScopedStep's; the step's own fields are mapped below. */
const taskFields = ["description", "params", "results", "workspaces"] as const;
/** A Task's step field → the ScopedStep field. `name` and `displayName` only label the step. */
const stepFields = {
  image: "image",
  script: "script",
  command: "command",
  args: "args",
  env: "env",
  workingDir: "workingDir",
  computeResources: "resources",
} as const;
const labelsOnly = new Set(["name", "displayName"]);

/** Go's encoder writes empty structs and some empty lists: those say nothing. */
function present(v: unknown): boolean {
  if (v === undefined || v === null || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === "object") return Object.values(v).some(present);
  return true;
}

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The ScopedStep spec a packaged Task carries, or why the Task is not one (`refuse` gets the
 * reason, phrased to follow "returned "). What the spec holds is then validated like any
 * ScopedStep's; only the packaging is checked here.
 */
export function stepFromTask(task: Json, refuse: (why: string) => Error): Json {
  if (task.apiVersion !== taskType.apiVersion) {
    throw refuse(
      `a Task of ${String(task.apiVersion)}; package the step as a ${taskType.apiVersion} Task (Tekton converts older ones)`,
    );
  }
  const metadata = isObject(task.metadata) ? task.metadata : {};
  const annotations = isObject(metadata.annotations) ? metadata.annotations : {};
  const application = annotations[packagedStepAnnotations.application];
  const component = annotations[packagedStepAnnotations.component];
  if (typeof application !== "string" || typeof component !== "string") {
    throw refuse(
      `a Task that is not a packaged ScopedStep: it lacks the ${packagedStepAnnotations.application} and ` +
        `${packagedStepAnnotations.component} annotations that say whose identity it runs with`,
    );
  }
  const spec = isObject(task.spec) ? task.spec : {};
  const extra = Object.keys(spec).filter(
    (k) =>
      k !== "steps" &&
      k !== "displayName" &&
      !(taskFields as readonly string[]).includes(k) &&
      present(spec[k]),
  );
  if (extra.length) throw refuse(`a Task with ${extra.join(", ")}, which a ScopedStep does not run`);
  const steps: unknown[] = Array.isArray(spec.steps) ? spec.steps : [];
  const [step] = steps;
  if (steps.length !== 1 || !isObject(step)) {
    throw refuse(`a Task with ${steps.length} steps: a packaged ScopedStep has exactly one`);
  }
  const stepExtra = Object.keys(step).filter(
    (k) => !Object.hasOwn(stepFields, k) && !labelsOnly.has(k) && present(step[k]),
  );
  if (stepExtra.length) {
    throw refuse(`a Task whose step sets ${stepExtra.join(", ")}, which a ScopedStep does not run`);
  }
  const out: Json = {};
  for (const k of taskFields) if (present(spec[k])) out[k] = spec[k];
  for (const [from, to] of Object.entries(stepFields)) if (present(step[from])) out[to] = step[from];
  const trait = annotations[packagedStepAnnotations.trait];
  return { ...out, application, component, ...(typeof trait === "string" ? { trait } : {}) };
}

/**
 * The Task packaging of a ScopedStep: the inverse of `stepFromTask` for every spec it accepts.
 * A spec with a pod template or automountServiceAccountToken has no packaging (a Task cannot say
 * either), nor one that names no application and component; those get none.
 */
export function taskFromStep(step: { metadata: Json; spec: Json }): Json | undefined {
  const { application, component, trait, podTemplate, automountServiceAccountToken, ...rest } = step.spec;
  if (podTemplate !== undefined || automountServiceAccountToken !== undefined) return undefined;
  if (typeof application !== "string" || typeof component !== "string") return undefined;
  const spec: Json = {};
  for (const k of taskFields) if (rest[k] !== undefined) spec[k] = rest[k];
  const only: Json = { name: "step" };
  for (const [to, from] of Object.entries(stepFields)) if (rest[from] !== undefined) only[to] = rest[from];
  spec.steps = [only];
  const annotations = isObject(step.metadata.annotations) ? step.metadata.annotations : {};
  return {
    ...taskType,
    metadata: {
      ...step.metadata,
      annotations: {
        ...annotations,
        [packagedStepAnnotations.application]: application,
        [packagedStepAnnotations.component]: component,
        ...(trait === undefined ? {} : { [packagedStepAnnotations.trait]: trait }),
      },
    },
    spec,
  };
}
