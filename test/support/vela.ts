// KubeVela's view of an Application: vela-cue (hack/vela-cue) renders a component with its traits
// as vela-core does, from the definitions KubeVela ships (its webservice ComponentDefinition, read
// from its module) and the scoped-identity TraitDefinition of the catalog.
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse } from "yaml";
import { buildTool, kubevela, moduleDir } from "../../hack/cluster/upstream.ts";
import { traitDir } from "../../hack/release.ts";
import { repoRoot } from "./catalog.ts";

interface Definition {
  kind: string;
  metadata: { name: string };
  spec: { schematic: { cue: { template: string } } };
}

/** The CUE template of a definition as written in a YAML file, Helm's namespace filled in. */
async function cueTemplate(file: string): Promise<{ name: string; template: string }> {
  const text = (await readFile(file, "utf8")).replace(
    /\{\{ include "systemDefinitionNamespace" \. \}\}/g,
    "vela-system",
  );
  const def = parse(text) as Definition;
  return { name: def.metadata.name, template: def.spec.schematic.cue.template };
}

/** Component and trait types to CUE templates: KubeVela's webservice and our scoped-identity. */
export async function velaDefinitions(): Promise<Record<string, string>> {
  const webservice = await cueTemplate(
    path.join(await moduleDir(kubevela), "charts/vela-core/templates/defwithtemplate/webservice.yaml"),
  );
  const trait = await cueTemplate(path.join(repoRoot, traitDir, "scoped-identity.yaml"));
  return { [webservice.name]: webservice.template, [trait.name]: trait.template };
}

export interface Rendered {
  /** The component's workload after its traits' patches. */
  output: Record<string, unknown>;
  /** Objects the component and its traits add, by name. */
  outputs: Record<string, Record<string, unknown>>;
  /** Each trait's parameter, defaults filled in. */
  traits: { type: string; parameter: Record<string, unknown> }[];
}

export type RenderResult = { ok: true; rendered: Rendered } | { ok: false; error: string };

let binary: Promise<string> | undefined;

/** Renders one component of an Application as vela-core would; CUE's error when it refuses. */
export async function renderComponent(
  application: unknown,
  component: string,
  definitions: Record<string, string>,
): Promise<RenderResult> {
  binary ??= buildTool("vela-cue");
  const child = spawn(await binary, [], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code ?? 1));
  });
  child.stdin.end(JSON.stringify({ application, component, definitions }));
  const code = await exited;
  if (code === 0) return { ok: true, rendered: JSON.parse(stdout) as Rendered };
  return { ok: false, error: stderr.trim() };
}
