// Where the key set lives: one Kubernetes Secret shared by every replica (a ConfigMap for the KMS
// store, whose set holds nothing private). Writes are conditional
// (create fails if it exists, an update fails if the resourceVersion moved), so replicas racing to
// create or rotate never overwrite each other: the loser re-reads and adopts what won.
import type { V1ConfigMap, V1Secret } from "@kubernetes/client-node";
import { resourcePath, statusCode, type Kube } from "../kube-client.ts";
import { parseKeySet, serializeKeySet, type KeySet } from "./keys.ts";

/** What a store holds: the key set (none yet when absent or empty) and its version. */
export interface StoredKeySet {
  keys: KeySet | undefined;
  /** Opaque version for optimistic concurrency; `undefined` when nothing is stored. */
  version: string | undefined;
}

export interface KeyStore {
  /** Human-readable location, for messages and logs. */
  readonly location: string;
  read(): Promise<StoredKeySet>;
  /**
   * Stores `keys` if the store is still at `version` (`undefined`: if nothing is stored yet).
   * Returns the new state, or `undefined` when another writer got there first.
   */
  write(keys: KeySet, version: string | undefined): Promise<StoredKeySet | undefined>;
}

export const defaultSecretName = "scoped-step-signing-keys";
export const secretDataKey = "keys.json";
export const secretLabels = {
  "app.kubernetes.io/part-of": "scoped-step",
  "app.kubernetes.io/component": "oidc-issuer",
};

const hasCode = (err: unknown, code: number) => statusCode(err) === code;

export function secretKeyStore(kube: Kube, namespace: string, name = defaultSecretName): KeyStore {
  return objectKeyStore(kube, {
    kind: "Secret",
    plural: "secrets",
    namespace,
    name,
    extra: { type: "Opaque" },
    encode: (text) => Buffer.from(text).toString("base64"),
    decode: (data) => Buffer.from(data, "base64").toString("utf8"),
  });
}

/**
 * The KMS store's key set: public keys, KMS key ARNs, states and times, nothing private. A
 * ConfigMap, so that reading it (for audit, or to publish the JWKS elsewhere) needs no access to
 * Secrets; it takes the same conditional writes as the Secret.
 */
export function configMapKeyStore(kube: Kube, namespace: string, name = defaultSecretName): KeyStore {
  return objectKeyStore(kube, {
    kind: "ConfigMap",
    plural: "configmaps",
    namespace,
    name,
    extra: {},
    encode: (text) => text,
    decode: (data) => data,
  });
}

interface ObjectKind {
  kind: "Secret" | "ConfigMap";
  plural: string;
  namespace: string;
  name: string;
  extra: Record<string, string>;
  encode: (text: string) => string;
  decode: (data: string) => string;
}

function objectKeyStore(kube: Kube, o: ObjectKind): KeyStore {
  const { namespace, name } = o;
  const location = `${o.kind} ${namespace}/${name}`;
  const type = { apiVersion: "v1", plural: o.plural };
  const data = (keys: KeySet) => ({ [secretDataKey]: o.encode(serializeKeySet(keys)) });

  const decode = (object: V1Secret | V1ConfigMap): StoredKeySet => {
    const version = object.metadata?.resourceVersion;
    const encoded = object.data?.[secretDataKey];
    // An object an operator created empty (to set labels or RBAC first) counts as not yet filled.
    if (encoded === undefined || encoded === "") return { keys: undefined, version };
    try {
      return { keys: parseKeySet(o.decode(encoded)), version };
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new Error(
        `${location} key ${secretDataKey} ${why}; fix or delete it (deleting invalidates live tokens)`,
        { cause: err },
      );
    }
  };

  return {
    location,
    async read() {
      try {
        return decode(await kube.request<V1Secret | V1ConfigMap>("GET", resourcePath(type, namespace, name)));
      } catch (err) {
        if (hasCode(err, 404)) return { keys: undefined, version: undefined };
        throw err;
      }
    },
    async write(keys, version) {
      try {
        // A merge patch carrying resourceVersion is conditional like a replace, but keeps whatever
        // else others put on the object (annotations, labels, extra keys).
        const written =
          version === undefined
            ? await kube.request<V1Secret | V1ConfigMap>("POST", resourcePath(type, namespace), {
                body: { ...o.extra, metadata: { name, namespace, labels: secretLabels }, data: data(keys) },
              })
            : await kube.request<V1Secret | V1ConfigMap>("PATCH", resourcePath(type, namespace, name), {
                body: { metadata: { resourceVersion: version, labels: secretLabels }, data: data(keys) },
                mergePatch: true,
              });
        return { keys, version: written.metadata?.resourceVersion };
      } catch (err) {
        // 409: created or changed by another writer; 404: deleted under an update. Either way the
        // caller re-reads and starts over.
        if (hasCode(err, 409) || hasCode(err, 404)) return undefined;
        throw err;
      }
    },
  };
}

/** A store in memory, for unit tests and tools that must not touch a cluster. */
export function memoryKeyStore(): KeyStore {
  let current: StoredKeySet = { keys: undefined, version: undefined };
  let counter = 0;
  return {
    location: "memory",
    read: () => Promise.resolve(structuredClone(current)),
    write(keys, version) {
      if (current.version !== version) return Promise.resolve(undefined);
      current = { keys: structuredClone(keys), version: String(++counter) };
      return Promise.resolve(structuredClone(current));
    },
  };
}
