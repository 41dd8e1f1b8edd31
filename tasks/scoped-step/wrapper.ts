// Constants shared by the step wrapper (wrapper.sh) and the code that reads what it writes.
import { readFileSync } from "node:fs";

/** Key written instead of the results when they do not fit in a termination message. */
export const tooLargeKey = "scopedstep.dev/results-too-large";
/** The kubelet keeps at most this many bytes of a container's termination message. */
export const terminationMessageLimit = 4096;
export const terminationMessagePath = "/tekton/termination";
export const scriptsDir = "/tekton/scripts";

export const wrapperScript = readFileSync(new URL("./wrapper.sh", import.meta.url), "utf8");
