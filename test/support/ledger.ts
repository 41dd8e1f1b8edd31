// The credential ledger as the tests read and seed it: entries are ConfigMaps in the controller's
// namespace, written here through the controller's own store so their shape cannot drift.
import { randomUUID } from "node:crypto";
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { kubeFromKubeConfig } from "../../controller/kube-client.ts";
import { kubeLedger, ledgerLabels } from "../../controller/ledger.ts";
import type { LedgerEntry } from "../../tasks/scoped-step/ledger.ts";

export const ledgerSelector = `${ledgerLabels.kind}=credential`;

/** The entries in the controller namespace, as the controller reads them. */
export async function ledgerEntries(kc: KubeConfig, controllerNs: string): Promise<LedgerEntry[]> {
  return kubeLedger(await kubeFromKubeConfig(kc), controllerNs, pino({ level: "silent" })).list();
}

/** Names of the ledger ConfigMaps in the controller namespace. */
export async function ledgerNames(kc: KubeConfig, controllerNs: string): Promise<string[]> {
  const core = kc.makeApiClient(CoreV1Api);
  const list = await core.listNamespacedConfigMap({ namespace: controllerNs, labelSelector: ledgerSelector });
  return list.items.map((c) => c.metadata?.name ?? "");
}

/** An entry for a run long gone whose session expired an hour ago, never revoked. */
export async function writeExpiredLedgerEntry(
  kc: KubeConfig,
  controllerNs: string,
  runNamespace: string,
): Promise<LedgerEntry> {
  const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
  const entry: LedgerEntry = {
    provider: "aws",
    run: { namespace: runNamespace, name: "long-gone", uid: randomUUID() },
    attempt: 0,
    intent: { roleArn: "arn:aws:iam::111122223333:role/gone", sourceIdentity: "scoped-step-gone-0" },
    notAfter: hourAgo,
    state: "minted",
    expiresAt: hourAgo,
  };
  await kubeLedger(await kubeFromKubeConfig(kc), controllerNs, pino({ level: "silent" })).recordIntent(entry);
  return entry;
}
