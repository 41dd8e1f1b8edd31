// How the step container runs, the way Tekton runs a TaskRun's steps: the init container `prepare`
// copies Tekton's entrypoint (github.com/tektoncd/pipeline/cmd/entrypoint, a static program, from
// the image Tekton's installation uses) into the pod's /tekton/bin, and the step container runs
// that copy, which runs the step's command, passes signals on to it, and writes the declared
// results from /tekton/results into the termination message. The step image needs nothing of
// its own: no shell, no awk. A script is placed in /tekton/scripts by the pod's downward API
// (no shell image either) and, as in Tekton, needs the interpreter its first line names.
import type { V1Container } from "@kubernetes/client-node";

/**
 * The entrypoint image of Tekton Pipelines v1.15.1's release (ko names it after the import path's
 * MD5). Tekton's release.yaml pins the digest as well; an operator pins it here the same way.
 */
export const defaultEntrypointImage =
  "ghcr.io/tektoncd/pipeline/entrypoint-bff0a22da108bc2f16c818c97641a296:v1.15.1";
/** Where the program is in that image (ko's layout). */
export const imageEntrypoint = "/ko-app/entrypoint";

export const binDir = "/tekton/bin";
export const entrypointBinary = `${binDir}/entrypoint`;
export const runDir = "/tekton/run";
export const stepsDir = "/tekton/steps";
export const scriptsDir = "/tekton/scripts";
export const scriptFile = `${scriptsDir}/step`;
export const terminationMessagePath = "/tekton/termination";
/** The kubelet keeps at most this many bytes of a container's termination message. */
export const terminationMessageLimit = 4096;
/** What Tekton's entrypoint logs, and exits 1 after, when the results do not fit in the message. */
export const tooLargeLog = "Termination message is above max allowed size 4096, caused by large task result.";
/** The step's name under /tekton/steps, as Tekton names a TaskRun's first step. */
export const stepName = "step-step";

/** A script without `#!` runs under /bin/sh and stops at the first failing command, as in Tekton. */
const scriptPreamble = "#!/bin/sh\nset -e\n";

/** The script as the step's file holds it. */
export function scriptFileContent(script: string): string {
  return script.startsWith("#!") ? script : `${scriptPreamble}${script}`;
}

/** The init container that puts the entrypoint into the shared volume. */
export function prepareContainer(
  image: string,
  securityContext: V1Container["securityContext"],
): V1Container {
  return {
    name: "prepare",
    image,
    workingDir: "/",
    command: [imageEntrypoint, "init", imageEntrypoint, entrypointBinary, stepName],
    volumeMounts: [
      { name: "tekton-internal-bin", mountPath: binDir },
      { name: "tekton-internal-steps", mountPath: stepsDir },
    ],
    securityContext,
  };
}

/**
 * The step container's command and args: the entrypoint's flags as Tekton's pod builder writes
 * them for a TaskRun's only step, then the step's own command after `--`.
 */
export function entrypointCommand(
  step: { script?: string; command?: string[]; args?: string[] },
  results: string[],
): Pick<V1Container, "command" | "args"> {
  const [program, ...rest] = step.script ? [scriptFile] : (step.command ?? []);
  return {
    command: [entrypointBinary],
    args: [
      "-post_file",
      `${runDir}/0/out`,
      "-termination_path",
      terminationMessagePath,
      "-step_metadata_dir",
      `${runDir}/0/status`,
      ...(results.length ? ["-results", results.join(",")] : []),
      "-entrypoint",
      program ?? "",
      "--",
      ...rest,
      ...(step.args ?? []),
    ],
  };
}
