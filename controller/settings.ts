// The configuration ConfigMap: read once at start, then watched. A change applies the settings
// that can change while running; an invalid one is refused, logged, and the old settings stay.
import type { V1ConfigMap } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { ConfigError, loadConfig, options, reloadable, type Config } from "./config.ts";
import { Informer } from "./informer.ts";
import { resourcePath, statusCode, type Kube } from "./kube-client.ts";

const configMaps = { apiVersion: "v1", plural: "configmaps" };

export async function readConfigMap(
  kube: Kube,
  namespace: string,
  name: string,
): Promise<Record<string, string>> {
  try {
    const cm = await kube.request<V1ConfigMap>("GET", resourcePath(configMaps, namespace, name));
    return cm.data ?? {};
  } catch (err) {
    if (statusCode(err) === 404) return {};
    throw err;
  }
}

export interface SettingsWatch {
  stop(): void;
}

/** Watches the ConfigMap and calls apply with the new config when a reloadable setting changes. */
export function watchSettings(
  kube: Kube,
  current: Config,
  argv: string[],
  env: NodeJS.ProcessEnv,
  log: Logger,
  apply: (next: Config, changed: (keyof Config)[]) => void,
): SettingsWatch {
  let active = current;
  const fieldSelector = `metadata.name=${current.configMap}`;
  const onChange = (cm: V1ConfigMap, kind: string) => {
    const data = kind === "deleted" ? {} : (cm.data ?? {});
    let next: Config;
    try {
      next = loadConfig(argv, env, data);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      log.error(
        { configMap: current.configMap, error: err.message },
        "ignoring invalid configuration ConfigMap",
      );
      return;
    }
    const changed = (Object.keys(options) as (keyof Config)[]).filter(
      (k) => JSON.stringify(next[k]) !== JSON.stringify(active[k]),
    );
    if (changed.length === 0) return;
    const later = changed.filter((k) => !(reloadable as readonly string[]).includes(k));
    if (later.length) {
      log.warn(
        { settings: later.map((k) => options[k].flag) },
        "configuration changed; these settings apply after a restart",
      );
    }
    const now = changed.filter((k) => (reloadable as readonly string[]).includes(k));
    if (now.length === 0) return;
    const applied = { ...active };
    for (const k of now) Object.assign(applied, { [k]: next[k] });
    active = applied;
    log.info({ settings: now.map((k) => options[k].flag) }, "configuration reloaded");
    apply(applied, now);
  };
  const informer = new Informer<V1ConfigMap>({
    kube,
    log,
    resyncMs: 60_000,
    fieldSelector,
    path: resourcePath(configMaps, current.namespace),
    namespace: current.namespace,
    onChange: (cm, kind) => onChange(cm, kind),
  });
  informer.start();
  return { stop: () => informer.stop() };
}
