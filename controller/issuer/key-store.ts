// Where the key set lives: one Kubernetes Secret shared by every replica. Writes are conditional
// (create fails if it exists, an update fails if the resourceVersion moved), so replicas racing to
// create or rotate never overwrite each other: the loser re-reads and adopts what won.
import type { V1Secret } from "@kubernetes/client-node";
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
const secrets = { apiVersion: "v1", plural: "secrets" };

export function secretKeyStore(kube: Kube, namespace: string, name = defaultSecretName): KeyStore {
  const location = `Secret ${namespace}/${name}`;

  const data = (keys: KeySet) => ({ [secretDataKey]: Buffer.from(serializeKeySet(keys)).toString("base64") });

  const decode = (secret: V1Secret): StoredKeySet => {
    const version = secret.metadata?.resourceVersion;
    const encoded = secret.data?.[secretDataKey];
    // A Secret an operator created empty (to set labels or RBAC first) counts as not yet filled.
    if (encoded === undefined || encoded === "") return { keys: undefined, version };
    try {
      return { keys: parseKeySet(Buffer.from(encoded, "base64").toString("utf8")), version };
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
        return decode(await kube.request<V1Secret>("GET", resourcePath(secrets, namespace, name)));
      } catch (err) {
        if (hasCode(err, 404)) return { keys: undefined, version: undefined };
        throw err;
      }
    },
    async write(keys, version) {
      try {
        // A merge patch carrying resourceVersion is conditional like a replace, but keeps whatever
        // else others put on the Secret (annotations, labels, extra keys).
        const written =
          version === undefined
            ? await kube.request<V1Secret>("POST", resourcePath(secrets, namespace), {
                body: {
                  type: "Opaque",
                  metadata: { name, namespace, labels: secretLabels },
                  data: data(keys),
                },
              })
            : await kube.request<V1Secret>("PATCH", resourcePath(secrets, namespace, name), {
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
