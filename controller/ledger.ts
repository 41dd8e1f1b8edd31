// The credential ledger on the Kubernetes API: one ConfigMap per credential in the controller's
// namespace, labelled so one run's entries can be listed. A namespace user has no access there;
// the release grants the controller what it needs in its own namespace only.
import type { V1ConfigMap } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { ledgerEntryName, type LedgerEntry } from "../tasks/scoped-step/ledger.ts";
import { boundedName, labels, managedByValue } from "../tasks/scoped-step/pod.ts";
import type { LedgerPort } from "../tasks/scoped-step/ports.ts";
import { resourcePath, statusCode, type Kube } from "./kube-client.ts";

export const ledgerLabels = {
  kind: "scopedstep.dev/ledger",
  runNamespace: "scopedstep.dev/run-namespace",
  runName: "scopedstep.dev/run-name",
  runUid: "scopedstep.dev/run-uid",
} as const;
const kindValue = "credential";

function toConfigMap(namespace: string, entry: LedgerEntry): V1ConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: ledgerEntryName(entry.run.uid, entry.attempt),
      namespace,
      labels: {
        [labels.managedBy]: managedByValue,
        [ledgerLabels.kind]: kindValue,
        [ledgerLabels.runNamespace]: entry.run.namespace,
        [ledgerLabels.runName]: boundedName(entry.run.name, 63),
        [ledgerLabels.runUid]: entry.run.uid,
      },
    },
    data: toData(entry),
  };
}

function toData(entry: Partial<LedgerEntry>): Record<string, string> {
  const data: Record<string, string | undefined> = {
    provider: entry.provider,
    runNamespace: entry.run?.namespace,
    runName: entry.run?.name,
    runUid: entry.run?.uid,
    attempt: entry.attempt === undefined ? undefined : String(entry.attempt),
    intent: entry.intent && JSON.stringify(entry.intent),
    notAfter: entry.notAfter,
    state: entry.state,
    expiresAt: entry.expiresAt,
    secretDigest: entry.secretDigest,
    revokedAt: entry.revokedAt,
    revocation: entry.revocation,
  };
  return Object.fromEntries(Object.entries(data).filter((e): e is [string, string] => e[1] !== undefined));
}

const states = ["intent", "minted", "revoked"] as const;

function fromConfigMap(cm: V1ConfigMap): LedgerEntry {
  const d = cm.data ?? {};
  const intent: unknown = JSON.parse(d.intent ?? "{}");
  const state = states.find((s) => s === d.state);
  const attempt = Number(d.attempt);
  if (!d.provider || !d.runNamespace || !d.runName || !d.runUid || !d.notAfter || !state) {
    throw new Error("a required key is missing");
  }
  if (!Number.isInteger(attempt) || !intent || typeof intent !== "object") {
    throw new Error("attempt or intent is malformed");
  }
  return {
    provider: d.provider,
    run: { namespace: d.runNamespace, name: d.runName, uid: d.runUid },
    attempt,
    intent: intent as Record<string, string>,
    notAfter: d.notAfter,
    state,
    ...(d.expiresAt ? { expiresAt: d.expiresAt } : {}),
    ...(d.secretDigest ? { secretDigest: d.secretDigest } : {}),
    ...(d.revokedAt ? { revokedAt: d.revokedAt } : {}),
    ...(d.revocation ? { revocation: d.revocation } : {}),
  };
}

const configMaps = { apiVersion: "v1", plural: "configmaps" };

export function kubeLedger(kube: Kube, namespace: string, log: Logger): LedgerPort {
  const patch = (name: string, body: object) =>
    kube.request("PATCH", resourcePath(configMaps, namespace, name), { body, mergePatch: true });

  return {
    async recordIntent(entry) {
      const body = toConfigMap(namespace, entry);
      const name = body.metadata?.name ?? "";
      for (;;) {
        try {
          await kube.request("POST", resourcePath(configMaps, namespace), { body });
          return;
        } catch (err) {
          if (statusCode(err) !== 409) throw err;
        }
        // Written by an earlier pass: a mint now may outlive what that pass allowed for.
        const current = await kube
          .request<V1ConfigMap>("GET", resourcePath(configMaps, namespace, name))
          .catch((err: unknown) => {
            if (statusCode(err) === 404) return undefined;
            throw err;
          });
        if (!current) continue;
        if ((current.data?.notAfter ?? "") >= entry.notAfter) return;
        try {
          await patch(name, {
            metadata: { resourceVersion: current.metadata?.resourceVersion },
            data: { notAfter: entry.notAfter },
          });
          return;
        } catch (err) {
          if (statusCode(err) !== 409 && statusCode(err) !== 404) throw err;
        }
      }
    },

    async update(uid, attempt, change) {
      try {
        await patch(ledgerEntryName(uid, attempt), { data: toData(change) });
      } catch (err) {
        // A run that began before its intent could be written has nothing in the ledger to update.
        if (statusCode(err) !== 404) throw err;
      }
    },

    async get(uid, attempt) {
      const cm = await kube
        .request<V1ConfigMap>("GET", resourcePath(configMaps, namespace, ledgerEntryName(uid, attempt)))
        .catch((err: unknown) => {
          if (statusCode(err) === 404) return undefined;
          throw err;
        });
      return cm && fromConfigMap(cm);
    },

    async list(run) {
      const selector = [
        `${ledgerLabels.kind}=${kindValue}`,
        ...(run
          ? [
              `${ledgerLabels.runNamespace}=${run.namespace}`,
              `${ledgerLabels.runName}=${boundedName(run.name, 63)}`,
            ]
          : []),
      ].join(",");
      const out: LedgerEntry[] = [];
      let _continue: string | undefined;
      do {
        const page = await kube.request<{ items: V1ConfigMap[]; metadata?: { continue?: string } }>(
          "GET",
          resourcePath(configMaps, namespace),
          { query: { labelSelector: selector, limit: 500, continue: _continue } },
        );
        for (const cm of page.items) {
          try {
            const entry = fromConfigMap(cm);
            if (!run || entry.run.name === run.name) out.push(entry);
          } catch (err) {
            log.error(
              { name: cm.metadata?.name, why: err instanceof Error ? err.message : String(err) },
              "ledger entry is unreadable; leaving it for an operator",
            );
          }
        }
        _continue = page.metadata?.continue || undefined;
      } while (_continue);
      return out;
    },

    async remove(entry) {
      try {
        await kube.request(
          "DELETE",
          resourcePath(configMaps, namespace, ledgerEntryName(entry.run.uid, entry.attempt)),
        );
      } catch (err) {
        if (statusCode(err) !== 404) throw err;
      }
    },
  };
}
