// The run's workspaces: the bindings on the CustomRun (spec.workspaces, as Tekton passes a
// pipeline's workspaces on) matched with what the step declares, as Tekton does for a TaskRun. Each
// bound workspace becomes one volume (a claim bound twice is one volume) mounted at its path, and
// gives the values of $(workspaces.<name>.path|bound|claim|volume). Pure.
import type { V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import { RunFailure } from "./failure.ts";
import { boundedName } from "./names.ts";

export const workspaceDir = "/workspace";

/** A workspace the step declares (ScopedStep spec.workspaces), as in a Tekton Task. */
export interface WorkspaceDeclaration {
  name: string;
  description?: string;
  mountPath?: string;
  readOnly?: boolean;
  optional?: boolean;
}

/** A binding on the CustomRun: Tekton's v1beta1 WorkspaceBinding. */
export interface WorkspaceBinding {
  name: string;
  subPath?: string;
  persistentVolumeClaim?: { claimName: string; readOnly?: boolean };
  volumeClaimTemplate?: unknown;
  emptyDir?: Record<string, unknown>;
  configMap?: { name: string; [k: string]: unknown };
  secret?: { secretName: string; [k: string]: unknown };
  projected?: { sources?: { secret?: { name?: string }; [k: string]: unknown }[]; [k: string]: unknown };
  csi?: { driver: string; readOnly?: boolean; [k: string]: unknown };
}

export interface RunWorkspaces {
  volumes: V1Volume[];
  mounts: V1VolumeMount[];
  /** "workspaces.<name>.path" and the rest, for every declared workspace, bound or not. */
  variables: Map<string, string>;
}

const sources = ["persistentVolumeClaim", "emptyDir", "configMap", "secret", "projected", "csi"] as const;
type Source = (typeof sources)[number];

/** Paths the step pod itself needs: a workspace may not be mounted over or under them. */
const reservedPaths = ["/tekton", "/tmp", "/var/run/secrets", "/var/run/scoped-step"];

/**
 * Credential Secrets of runs (pod.ts credentialSecretName: `<run>-credentials-<attempt>`, or that
 * cut to 253 characters with a hash). No step may mount one through a workspace.
 */
export function looksLikeCredentialSecret(name: string): boolean {
  return /-credentials-\d+$/.test(name) || (name.length === 253 && /-[0-9a-f]{8}$/.test(name));
}

function sourceOf(b: WorkspaceBinding): Source {
  const set = sources.filter((s) => b[s] !== undefined);
  if (b.volumeClaimTemplate !== undefined) {
    throw new RunFailure(
      "UnsupportedWorkspaceBinding",
      `workspace ${b.name} is bound with a volumeClaimTemplate: in a PipelineRun, Tekton creates the claim and ` +
        `passes it on as persistentVolumeClaim; on a CustomRun of your own, create the claim and bind persistentVolumeClaim`,
    );
  }
  if (set.length !== 1) {
    throw new RunFailure(
      "InvalidWorkspaceBinding",
      `workspace ${b.name} must be bound to exactly one of ${sources.join(", ")}` +
        (set.length ? `; it sets ${set.join(" and ")}` : ""),
    );
  }
  return set[0] as Source;
}

/** Secrets, ConfigMaps and projected volumes are always mounted read-only by the kubelet. */
function readOnlyBinding(b: WorkspaceBinding, source: Source): boolean {
  if (source === "configMap" || source === "secret" || source === "projected") return true;
  if (source === "persistentVolumeClaim") return b.persistentVolumeClaim?.readOnly === true;
  if (source === "csi") return b.csi?.readOnly === true;
  return false;
}

function mountPathOf(d: WorkspaceDeclaration): string {
  const p = d.mountPath ?? d.name;
  return p.startsWith("/") ? p : `${workspaceDir}/${p}`;
}

const under = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`) || dir.startsWith(`${p}/`);

function checkSubPath(b: WorkspaceBinding): void {
  const sub = b.subPath ?? "";
  if (sub.startsWith("/") || sub.split("/").includes("..")) {
    throw new RunFailure(
      "InvalidWorkspaceBinding",
      `workspace ${b.name} has subPath "${sub}": it must be a relative path without ".."`,
    );
  }
}

function checkSecrets(b: WorkspaceBinding): void {
  const names = [b.secret?.secretName, ...(b.projected?.sources ?? []).map((s) => s.secret?.name)];
  for (const name of names) {
    if (name && looksLikeCredentialSecret(name)) {
      throw new RunFailure(
        "WorkspaceNotAllowed",
        `workspace ${b.name} binds Secret ${name}, which is named as a run's credential Secret: a step gets only its own ` +
          `credentials, from the controller`,
      );
    }
  }
}

/**
 * Matches bindings to declarations. `declared` undefined (a run given by params alone, which has
 * nowhere to declare): every binding is taken as declared with its defaults, as Tekton propagates
 * a pipeline's workspaces into an embedded task.
 */
export function runWorkspaces(
  bindings: WorkspaceBinding[],
  declared: WorkspaceDeclaration[] | undefined,
  source: string,
): RunWorkspaces {
  const seen = new Set<string>();
  for (const b of bindings) {
    if (seen.has(b.name)) {
      throw new RunFailure("InvalidWorkspaceBinding", `workspace ${b.name} is bound more than once`);
    }
    seen.add(b.name);
  }
  const declarations: WorkspaceDeclaration[] = declared ?? bindings.map((b) => ({ name: b.name }));
  const names = new Set(declarations.map((d) => d.name));
  for (const b of bindings) {
    if (!names.has(b.name)) {
      const list = [...names];
      throw new RunFailure(
        "UnknownWorkspace",
        `workspace ${b.name} is bound but ${source} declares ${list.length ? `only ${list.join(", ")}` : "no workspaces"}`,
      );
    }
  }
  const paths = new Map<string, string>();
  for (const d of declarations) {
    const p = mountPathOf(d);
    const reserved = p === workspaceDir ? workspaceDir : reservedPaths.find((r) => under(p, r));
    if (reserved) {
      throw new RunFailure(
        "InvalidStepSpec",
        `workspace ${d.name} would be mounted at ${p}, where the step pod keeps ${reserved}: choose another mountPath`,
      );
    }
    const clash = [...paths].find(([, other]) => other === p);
    if (clash) {
      throw new RunFailure(
        "InvalidStepSpec",
        `workspaces ${clash[0]} and ${d.name} have the same mountPath ${p}`,
      );
    }
    paths.set(d.name, p);
  }

  const byName = new Map(bindings.map((b) => [b.name, b]));
  const volumes: V1Volume[] = [];
  const mounts: V1VolumeMount[] = [];
  const variables = new Map<string, string>();
  const claimVolumes = new Map<string, string>();
  for (const d of declarations) {
    const b = byName.get(d.name);
    const v = (what: string, value: string) => variables.set(`workspaces.${d.name}.${what}`, value);
    if (!b) {
      if (!d.optional) {
        throw new RunFailure(
          "MissingWorkspace",
          `${source} needs workspace ${d.name}, and the run binds none of that name; bind it in the pipeline task's workspaces` +
            ` (or declare it optional)`,
        );
      }
      // An optional workspace left unbound: its path is empty, as in Tekton.
      v("path", "");
      v("bound", "false");
      v("claim", "");
      v("volume", "");
      continue;
    }
    const kind = sourceOf(b);
    checkSubPath(b);
    checkSecrets(b);
    const readOnly = readOnlyBinding(b, kind);
    if (readOnly && declared && !d.readOnly) {
      throw new RunFailure(
        "WorkspaceReadOnly",
        `workspace ${d.name} is bound to a ${kind === "persistentVolumeClaim" || kind === "csi" ? `read-only ${kind}` : kind}, ` +
          `which is mounted read-only, but ${source} declares it writable: declare it readOnly: true, or bind a writable volume`,
      );
    }
    const claim = kind === "persistentVolumeClaim" ? (b.persistentVolumeClaim?.claimName ?? "") : "";
    let volumeName = claim ? claimVolumes.get(claim) : undefined;
    if (!volumeName) {
      volumeName = boundedName(`ws-${d.name}`, 63);
      volumes.push({ name: volumeName, [kind]: b[kind] });
      if (claim) claimVolumes.set(claim, volumeName);
    }
    const path = paths.get(d.name) ?? "";
    mounts.push({
      name: volumeName,
      mountPath: path,
      ...(b.subPath ? { subPath: b.subPath } : {}),
      ...(d.readOnly || readOnly ? { readOnly: true } : {}),
    });
    v("path", path);
    v("bound", "true");
    v("claim", claim);
    v("volume", volumeName);
  }
  return { volumes, mounts, variables };
}
