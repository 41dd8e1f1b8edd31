// Writes the controller's sources as JavaScript: node:module's stripTypeScriptTypes on every .ts
// file of controller/ and tasks/, with relative imports renamed to .js, beside package.json. Node
// runs the TypeScript sources directly too, but its type stripper is a WebAssembly module that
// stays loaded: about 30 MiB of resident memory the controller image does not need to carry.
//
//   node hack/strip-types.ts OUT_DIR
import { copyFile, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { stripTypeScriptTypes } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const relativeTs = /((?:from|import)\s*\(?\s*"\.{1,2}\/[^"]*?)\.ts"/g;

async function copyTree(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    if (entry.isDirectory()) {
      await copyTree(source, path.join(to, entry.name));
    } else if (entry.name.endsWith(".ts")) {
      const js = stripTypeScriptTypes(await readFile(source, "utf8")).replace(relativeTs, '$1.js"');
      await writeFile(path.join(to, entry.name.replace(/\.ts$/, ".js")), js);
    } else {
      await copyFile(source, path.join(to, entry.name));
    }
  }
}

/** Writes OUT/controller, OUT/tasks and OUT/package.json; returns the path of main.js. */
export async function stripTypes(out: string): Promise<string> {
  for (const dir of ["controller", "tasks"]) await copyTree(path.join(root, dir), path.join(out, dir));
  await copyFile(path.join(root, "package.json"), path.join(out, "package.json"));
  return path.join(out, "controller", "main.js");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const out = process.argv[2];
  if (!out) {
    console.error("usage: node hack/strip-types.ts OUT_DIR");
    process.exit(2);
  }
  console.log(await stripTypes(path.resolve(out)));
}
