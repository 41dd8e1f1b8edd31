import { test } from "node:test";
import assert from "node:assert/strict";
import {
  intentEntry,
  ledgerEntryName,
  mintAllowanceSeconds,
  recordFromEntry,
  sweepAction,
  type LedgerEntry,
} from "../../tasks/scoped-step/ledger.ts";
import type { CustomRun } from "../../tasks/scoped-step/types.ts";

const now = new Date("2026-11-29T12:00:00Z");
const later = (s: number) => new Date(now.getTime() + s * 1000).toISOString();
const entry = (change: Partial<LedgerEntry> = {}): LedgerEntry => ({
  provider: "aws",
  run: { namespace: "team-a", name: "deploy", uid: "uid-1" },
  attempt: 0,
  intent: { roleArn: "arn:aws:iam::111122223333:role/r", sourceIdentity: "scoped-step-x-0" },
  notAfter: later(1200),
  state: "intent",
  ...change,
});
const run = (change: Partial<CustomRun["metadata"]> = {}, status: CustomRun["status"] = {}): CustomRun => ({
  apiVersion: "tekton.dev/v1beta1",
  kind: "CustomRun",
  metadata: { name: "deploy", namespace: "team-a", uid: "uid-1", ...change },
  spec: {},
  status,
});
const finished = { conditions: [{ type: "Succeeded", status: "True" as const, reason: "Succeeded" }] };

test("the intent allows for the credential's lifetime and the time the mint may take", () => {
  const e = intentEntry({ provider: "aws", attempt: 2, intent: { sessionName: "s" } }, entry().run, 900, now);
  assert.equal(e.notAfter, later(900 + mintAllowanceSeconds));
  assert.equal(e.state, "intent");
  assert.equal(ledgerEntryName(e.run.uid, e.attempt), "credential-uid-1-2");
});

test("a live run's credential is left alone", () => {
  assert.deepEqual(sweepAction(entry(), run(), now), { kind: "keep" });
  assert.deepEqual(sweepAction(entry({ state: "minted" }), run(), now), { kind: "keep" });
});

test("a credential whose run is gone, replaced, deleting, finished or past that attempt is revoked", () => {
  const cases: [CustomRun | undefined, string, boolean][] = [
    [undefined, "run deleted", true],
    [run({ uid: "uid-2" }), "run deleted", true],
    [run({ deletionTimestamp: new Date() }), "run being deleted", false],
    [run({}, finished), "run finished", false],
    [run({}, { retriesStatus: [{}] }), "attempt over", false],
  ];
  for (const [r, why, runGone] of cases) {
    assert.deepEqual(sweepAction(entry({ state: "minted" }), r, now), { kind: "revoke", why, runGone });
  }
});

test("an entry is removed once its session has expired, revoked or not, and not before", () => {
  const expired = { notAfter: later(1200), expiresAt: later(-1) };
  assert.equal(sweepAction(entry({ ...expired, state: "minted" }), undefined, now).kind, "delete");
  assert.equal(sweepAction(entry({ notAfter: later(0), state: "intent" }), run(), now).kind, "delete");
  assert.equal(sweepAction(entry({ state: "revoked" }), undefined, now).kind, "keep");
});

test("revocation from an entry alone denies until the credential's expiry, or the latest possible one", () => {
  assert.equal(recordFromEntry(entry()).expiresAt, later(1200));
  assert.equal(recordFromEntry(entry()).state, "minting");
  const minted = recordFromEntry(entry({ state: "minted", expiresAt: later(900) }));
  assert.equal(minted.expiresAt, later(900));
  assert.equal(minted.state, "active");
  assert.deepEqual(minted.intent, entry().intent);
});
