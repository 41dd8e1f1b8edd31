// Tekton's config-defaults ConfigMap, watched by name in Tekton's namespace: the default pod
// template and the resolution timeout every TaskRun gets, which a scoped step gets too. Read once
// per change, never per run. An invalid value is logged and the last good one stays, as Tekton's
// own controller keeps its last good configuration.
import type { V1ConfigMap } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { parse } from "yaml";
import { notAppliedDefaultFields } from "../tasks/scoped-step/default-pod-template.ts";
import { parseGoDuration } from "../tasks/scoped-step/duration.ts";
import { tektonDefaultsNone, type TektonDefaults } from "../tasks/scoped-step/ports.ts";
import { Informer } from "./informer.ts";
import { resourcePath, type Kube } from "./kube-client.ts";

export const tektonDefaultsConfigMap = "config-defaults";
const podTemplateKey = "default-pod-template";
const resolutionTimeoutKey = "default-maximum-resolution-timeout";
/** Runs do not wait longer than this for a first read (no RBAC, API trouble): then they go without. */
const firstReadWaitMs = 10_000;

export interface TektonDefaultsWatch {
  /** The current defaults, once the ConfigMap has been read (or the first read gave up). */
  current(): Promise<TektonDefaults>;
  stop(): void;
}

/** The defaults a ConfigMap's data gives; throws with a message naming the key when one is invalid. */
export function parseTektonDefaults(data: Record<string, string>, source: string): TektonDefaults {
  const out: TektonDefaults = { ...tektonDefaultsNone, source };
  const template = data[podTemplateKey];
  if (template !== undefined && template.trim() !== "") {
    const parsed = parse(template) as unknown;
    if (parsed !== null && (typeof parsed !== "object" || Array.isArray(parsed)))
      throw new Error(`${podTemplateKey} is not a YAML mapping`);
    if (parsed !== null) out.podTemplate = parsed;
  }
  const timeout = data[resolutionTimeoutKey];
  if (timeout !== undefined && timeout.trim() !== "") {
    const ms = parseGoDuration(timeout.trim());
    if (ms <= 0) throw new Error(`${resolutionTimeoutKey} must be a positive duration`);
    out.resolutionTimeoutMs = ms;
  }
  return out;
}

export function watchTektonDefaults(kube: Kube, namespace: string, log: Logger): TektonDefaultsWatch {
  const source = `ConfigMap ${namespace}/${tektonDefaultsConfigMap}`;
  let active: TektonDefaults = { ...tektonDefaultsNone, source };
  let read = false;
  // The first list reports the ConfigMap as a resync: every event is read, and only a change logged.
  const onChange = (cm: V1ConfigMap, kind: string) => {
    let next: TektonDefaults;
    try {
      next = parseTektonDefaults(kind === "deleted" ? {} : (cm.data ?? {}), source);
    } catch (err) {
      log.error({ configMap: source, error: (err as Error).message }, "ignoring invalid Tekton defaults");
      return;
    }
    if (read && JSON.stringify(next) === JSON.stringify(active)) return;
    read = true;
    active = next;
    const notApplied = notAppliedDefaultFields(active.podTemplate);
    log.info(
      {
        configMap: source,
        podTemplateFields: Object.keys((active.podTemplate as object | undefined) ?? {}),
        ...(notApplied.length ? { notApplied } : {}),
        resolutionTimeoutMs: active.resolutionTimeoutMs,
      },
      "Tekton defaults read",
    );
  };
  const informer = new Informer<V1ConfigMap>({
    kube,
    log,
    resyncMs: 300_000,
    fieldSelector: `metadata.name=${tektonDefaultsConfigMap}`,
    path: resourcePath({ apiVersion: "v1", plural: "configmaps" }, namespace),
    namespace,
    onChange,
  });
  informer.start();
  const firstRead = Promise.race([
    informer.whenSynced(),
    new Promise<void>((resolve) => setTimeout(resolve, firstReadWaitMs).unref()),
  ]).then(() => {
    if (!informer.synced)
      log.warn({ configMap: source }, "Tekton defaults not read yet; runs go without them");
  });
  return {
    current: async () => {
      await firstRead;
      return active;
    },
    stop: () => informer.stop(),
  };
}
