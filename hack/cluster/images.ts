// The images the local node runs. No registry is reachable, so each is assembled here from a root
// filesystem (static programs built from Go modules, or files of installed Debian packages),
// imported with podman, saved as a docker archive and cached under the cache folder, keyed on
// its inputs. The node imports the archives into containerd (importImages).
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import {
  appendFile,
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { buildTool, hackDir, moduleDir, tekton } from "./upstream.ts";

const run = promisify(execFile);
const big = { maxBuffer: 64 << 20 };

export interface NodeImages {
  /** The pod sandbox: one static program waiting for SIGTERM. */
  pause: string;
  /** Debian's busybox-static: sh, awk, sed, wget and the rest of the applets. */
  busybox: string;
  /** Debian's awscli and curl, with busybox for a shell. */
  awscli: string;
  /** Debian's skopeo and curl, with busybox for a shell: what an image push step needs. */
  skopeo: string;
  /** No shell: one static program (hack/node-images/report) that prints its arguments. */
  static: string;
  /** Tekton's own images, laid out as ko builds them (tektonRecipes). */
  tekton: Record<TektonProgram, string>;
  /** The controller, built from the Dockerfile, under the reference catalog/release.yaml names. */
  controller: string;
  /** The docker archives, one per image. */
  archives: string[];
}

/** Tekton's programs with an image each: those of a TaskRun pod, then those of its Deployments. */
export const tektonPrograms = [
  "entrypoint",
  "nop",
  "workingdirinit",
  "sidecarlogresults",
  "controller",
  "webhook",
  "events",
  "resolvers",
] as const;
export type TektonProgram = (typeof tektonPrograms)[number];

export interface Recipe {
  name: string;
  /** What the image is made of: goes into the cache key with the files' contents. */
  inputs: string[];
  entrypoint: string[];
  /** Environment of the image's processes (and of RUN steps when it is a build stage's base). */
  env?: string[];
  /** Fills the root filesystem. */
  fill(root: string): Promise<void>;
}

export const cacheDir = path.join(
  process.env.SCOPED_STEP_CACHE ?? path.join(os.homedir(), ".cache", "scoped-step"),
  "images",
);
const registry = "scoped-step.local";

const repoRoot = path.dirname(hackDir);

/**
 * A path as a cache key sees it: this repository's files by their place in it, so every clone of
 * the same commit finds the images another clone built.
 */
const keyPath = (f: string) => (f.startsWith(repoRoot + path.sep) ? path.relative(repoRoot, f) : f);

export async function hashFiles(files: string[]): Promise<string> {
  const h = createHash("sha256");
  for (const f of files) h.update(keyPath(f)).update(await readFile(f));
  return h.digest("hex");
}

export async function addFile(root: string, from: string, to = from, mode = 0o755): Promise<void> {
  await mkdir(path.join(root, path.dirname(to)), { recursive: true });
  await copyFile(from, path.join(root, to));
  await chmod(path.join(root, to), mode);
}

/** /etc/passwd and /etc/group with root and nobody, and a world-writable /tmp. */
export async function baseFiles(root: string): Promise<void> {
  await mkdir(path.join(root, "etc"), { recursive: true });
  await writeFile(
    path.join(root, "etc/passwd"),
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
  );
  await writeFile(path.join(root, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
  await mkdir(path.join(root, "tmp"), { recursive: true });
  await chmod(path.join(root, "tmp"), 0o1777);
  await mkdir(path.join(root, "root"), { recursive: true });
}

export async function addBusybox(root: string): Promise<void> {
  await addFile(root, "/bin/busybox");
  const { stdout } = await run("/bin/busybox", ["--list-full"]);
  for (const applet of stdout.split("\n").filter(Boolean)) {
    const target = path.join(root, applet);
    if (existsSync(target)) continue;
    await mkdir(path.dirname(target), { recursive: true });
    await symlink("/bin/busybox", target);
  }
}

/**
 * The installed Debian packages `roots` needs, with their versions (for the cache key). Pre-Depends
 * count: python3-minimal, which holds /usr/bin/python3, is one of python3's.
 */
export async function packageClosure(roots: string[]): Promise<string[]> {
  // prettier-ignore
  const { stdout } = await run("apt-cache", [
    "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
    "--no-replaces", "--no-enhances", ...roots,
  ], big);
  const names = new Set(
    stdout
      .split("\n")
      .filter((l) => /^\w/.test(l))
      .map((l) => l.trim()),
  );
  const { stdout: installed } = await run(
    "dpkg-query",
    ["-W", "-f", "${Package}:${Architecture}=${Version}\n"],
    big,
  );
  return installed
    .split("\n")
    .filter((l) => names.has(l.split(":")[0] ?? "") || names.has(l.split("=")[0] ?? ""))
    .sort();
}

export async function addPackages(root: string, packages: string[]): Promise<void> {
  const files = new Set<string>();
  for (const p of packages) {
    const { stdout } = await run("dpkg", ["-L", p.split("=")[0] ?? ""], big);
    for (const f of stdout.split("\n")) {
      if (!f.startsWith("/") || /^\/usr\/share\/(doc|man|locale|info|lintian)\//.test(f)) continue;
      files.add(f.slice(1));
    }
  }
  // Debian's merged /usr: /bin, /lib and the rest are links into /usr, which the packages assume.
  for (const dir of ["bin", "sbin", "lib", "lib64"]) {
    const link = await readlink(`/${dir}`).catch(() => undefined);
    if (!link) continue;
    await mkdir(path.resolve(root, link), { recursive: true });
    await symlink(link, path.join(root, dir));
  }
  const list = path.join(root, "..", "files.txt");
  await writeFile(list, [...files].join("\n"));
  // --no-recursion: directories come with their listed entries only; symlinks stay links.
  await run(
    "sh",
    ["-c", `tar -C / --no-recursion -cf - -T "${list}" 2>/dev/null | tar -C "${root}" -xf -`],
    big,
  );
}

const staticImage = (name: string, binary: string, to: string): Recipe => ({
  name,
  inputs: [binary],
  entrypoint: [to],
  fill: async (root) => {
    await baseFiles(root);
    await addFile(root, binary, to);
  },
});

/** The node's own images: the sandbox, and four kinds of image for steps. */
export async function nodeRecipes(): Promise<Recipe[]> {
  const nodeDir = await buildTool("node-images");
  const awsPackages = await packageClosure(["awscli", "curl", "ca-certificates"]);
  const skopeoPackages = await packageClosure(["skopeo", "curl", "ca-certificates"]);
  // Gives Debian's aws CLI the AWS_ENDPOINT_URL of the CLI it stands in for (hack/node-images/aws).
  const awsEndpointShim = fileURLToPath(new URL("../node-images/aws", import.meta.url));
  return [
    staticImage("pause", path.join(nodeDir, "pause"), "/pause"),
    staticImage("static", path.join(nodeDir, "report"), "/report"),
    {
      name: "busybox",
      inputs: ["/bin/busybox"],
      entrypoint: ["/bin/sh"],
      fill: async (root) => {
        await baseFiles(root);
        await addBusybox(root);
      },
    },
    {
      name: "awscli",
      inputs: ["/bin/busybox", awsEndpointShim, ...awsPackages],
      entrypoint: ["/bin/sh"],
      fill: async (root) => {
        await addPackages(root, awsPackages);
        await baseFiles(root);
        await addBusybox(root);
        // Ahead of /usr/bin on the default PATH.
        await addFile(root, awsEndpointShim, "/usr/local/bin/aws");
      },
    },
    {
      // containers-common, among skopeo's dependencies, brings /etc/containers/policy.json.
      name: "skopeo",
      inputs: ["/bin/busybox", ...skopeoPackages],
      entrypoint: ["/bin/sh"],
      fill: async (root) => {
        await addPackages(root, skopeoPackages);
        await baseFiles(root);
        await addBusybox(root);
      },
    },
  ];
}

/**
 * Tekton's images from the pinned module, as ko lays them out on its static base: the program at
 * /ko-app/<name>, the command's kodata/ folder at /var/run/ko (KO_DATA_PATH), CA certificates and
 * the nonroot user (65532) of a distroless base. The resolvers' image, as the release's, runs under
 * /sbin/tini from a base with git (for the git resolver): Debian's tini-static and git here.
 */
async function tektonRecipes(): Promise<Recipe[]> {
  const tektonDir = await buildTool("tekton-images");
  const cmdDir = path.join(await moduleDir(tekton), "cmd");
  const certs = "/etc/ssl/certs/ca-certificates.crt";
  const tini = "/usr/bin/tini-static";
  const gitPackages = await packageClosure(["git"]);
  return Promise.all(
    tektonPrograms.map(async (n) => {
      const kodata = path.join(cmdDir, n, "kodata");
      const data = existsSync(kodata) ? (await readdir(kodata)).map((f) => path.join(kodata, f)) : [];
      const withGit = n === "resolvers";
      return {
        name: `tekton/${n}`,
        inputs: [path.join(tektonDir, n), certs, ...data, ...(withGit ? [tini, ...gitPackages] : [])],
        entrypoint: [`/ko-app/${n}`],
        env: ["KO_DATA_PATH=/var/run/ko"],
        fill: async (root: string) => {
          if (withGit) {
            await addPackages(root, gitPackages);
            await addFile(root, tini, "/sbin/tini");
          }
          await baseFiles(root);
          await appendFile(
            path.join(root, "etc/passwd"),
            "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
          );
          await appendFile(path.join(root, "etc/group"), "nonroot:x:65532:\n");
          await addFile(root, certs, certs, 0o644);
          for (const f of data) await addFile(root, f, `/var/run/ko/${path.basename(f)}`, 0o644);
          await addFile(root, path.join(tektonDir, n), `/ko-app/${n}`);
        },
      };
    }),
  );
}

/**
 * podman's global flags for a storage and state of its own under `work`, removed afterwards:
 * nothing is left in /var/lib/containers, and the `system reset` that ends a build cannot remove
 * the state (by default /run/libpod) of another build running beside it.
 */
export function podmanStorage(work: string): string[] {
  // prettier-ignore
  return ["--root", path.join(work, "storage"), "--runroot", path.join(work, "run"),
    "--tmpdir", path.join(work, "tmp"), "--storage-driver", "vfs"];
}

/**
 * A change to an image's inputs makes a new archive (the controller's is about 190 MB): the others
 * of the same image go once unused for an hour (a hit refreshes an archive's time), so a run of
 * another checkout sharing the cache still finds the one it is about to import.
 */
export async function pruneArchives(name: string, keep: string): Promise<void> {
  const prefix = `${name.replace("/", "-")}-`;
  for (const file of await readdir(cacheDir)) {
    const archive = path.join(cacheDir, file);
    if (!file.startsWith(prefix) || !/^[0-9a-f]{16}\.tar$/.test(file.slice(prefix.length))) continue;
    if (archive === keep) continue;
    // Gone already: another run pruned it.
    const age = Date.now() - ((await stat(archive).catch(() => undefined))?.mtimeMs ?? Date.now());
    if (age > 3_600_000) await rm(archive, { force: true });
  }
}

/** Where an archive is written before it is renamed into the cache: one per process building it. */
export const archiveScratch = (archive: string) => `${archive}.${process.pid}.tmp`;

export async function buildImage(
  recipe: Recipe,
  log: (l: string) => void,
): Promise<{ ref: string; archive: string }> {
  const files = recipe.inputs.filter((i) => i.startsWith("/"));
  const key = createHash("sha256")
    .update(JSON.stringify({ ...recipe, inputs: recipe.inputs.map(keyPath), fill: recipe.fill.toString() }))
    .update(await hashFiles(files))
    .digest("hex")
    .slice(0, 16);
  const ref = `${registry}/${recipe.name}:${key}`;
  const archive = path.join(cacheDir, `${recipe.name.replace("/", "-")}-${key}.tar`);
  if (existsSync(archive)) {
    await utimes(archive, new Date(), new Date());
    return { ref, archive };
  }
  log(`building image ${ref}`);
  const work = await mkdtemp(path.join(os.tmpdir(), "scoped-step-image-"));
  try {
    const root = path.join(work, "root");
    await mkdir(root);
    await recipe.fill(root);
    await run("tar", ["-C", root, "-cf", path.join(work, "rootfs.tar"), "."], big);
    const podman = podmanStorage(work);
    const changes = [
      `ENTRYPOINT ${JSON.stringify(recipe.entrypoint)}`,
      ...(recipe.env ?? []).map((e) => `ENV ${e}`),
    ];
    // prettier-ignore
    await run("podman", [...podman, "import", ...changes.flatMap((c) => ["--change", c]),
      path.join(work, "rootfs.tar"), ref], big);
    await mkdir(cacheDir, { recursive: true });
    await run(
      "podman",
      [...podman, "save", "--format", "docker-archive", "-o", archiveScratch(archive), ref],
      big,
    );
    await rename(archiveScratch(archive), archive);
    await pruneArchives(recipe.name, archive);
    await run("podman", [...podman, "system", "reset", "--force"], big).catch(() => undefined);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { ref, archive };
}

/** Builds the images not yet cached; outside the node's namespace, before it starts. */
export async function buildImages(
  log: (l: string) => void = () => undefined,
): Promise<Omit<NodeImages, "controller">> {
  const built = new Map<string, { ref: string; archive: string }>();
  for (const r of [...(await nodeRecipes()), ...(await tektonRecipes())])
    built.set(r.name, await buildImage(r, log));
  const ref = (name: string) => built.get(name)?.ref ?? "";
  return {
    pause: ref("pause"),
    busybox: ref("busybox"),
    awscli: ref("awscli"),
    skopeo: ref("skopeo"),
    static: ref("static"),
    tekton: Object.fromEntries(tektonPrograms.map((n) => [n, ref(`tekton/${n}`)])) as NodeImages["tekton"],
    archives: [...built.values()].map((b) => b.archive),
  };
}

/** Imports every archive into containerd's `k8s.io` namespace, where the kubelet looks. */
export async function importImages(
  ctr: string,
  socket: string,
  images: NodeImages,
  log: (l: string) => void,
): Promise<void> {
  log(`importing ${images.archives.length} images into containerd`);
  for (const archive of images.archives) {
    await run(ctr, ["--address", socket, "-n", "k8s.io", "images", "import", archive], big);
  }
}
