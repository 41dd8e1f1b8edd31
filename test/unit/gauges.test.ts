import { test } from "node:test";
import assert from "node:assert/strict";
import type { CredentialRecord } from "../../tasks/scoped-step/credentials/types.ts";
import { credentialGauges } from "../../tasks/scoped-step/gauges.ts";
import type { CustomRun } from "../../tasks/scoped-step/types.ts";

const now = new Date("2026-11-29T12:00:00.000Z");

function run(
  credential: Partial<CredentialRecord> | undefined,
  opts: { done?: boolean; cancelled?: boolean; deleting?: boolean; startTime?: string } = {},
): CustomRun {
  return {
    apiVersion: "tekton.dev/v1beta1",
    kind: "CustomRun",
    metadata: {
      name: "r",
      namespace: "team-a",
      ...(opts.deleting ? { deletionTimestamp: now } : {}),
    },
    spec: {
      customRef: { apiVersion: "scopedstep.dev/v1alpha1", kind: "ScopedStep" },
      ...(opts.cancelled ? { status: "RunCancelled" } : {}),
    },
    status: {
      ...(opts.startTime ? { startTime: opts.startTime } : {}),
      conditions: [{ type: "Succeeded", status: opts.done ? "False" : "Unknown", reason: "x", message: "" }],
      extraFields: credential
        ? {
            scopedStep: {
              credential: {
                provider: "aws",
                attempt: 0,
                intent: {},
                results: {},
                state: "active",
                ...credential,
              },
            },
          }
        : {},
    },
  };
}

test("no runs, or runs without a live credential, give zeros", () => {
  const zero = { active: 0, pendingRevocation: 0, oldestUnrevokedSince: 0 };
  assert.deepEqual(credentialGauges([]), zero);
  assert.deepEqual(
    credentialGauges([
      run(undefined),
      run({ state: "revoked", mintedAt: "2026-11-29T11:00:00Z" }, { done: true }),
    ]),
    zero,
  );
});

const unix = (iso: string) => Date.parse(iso) / 1000;

test("a running step's credential is active, not pending; it dates from minting", () => {
  const figures = credentialGauges([run({ mintedAt: "2026-11-29T11:59:30.000Z" })]);
  assert.deepEqual(figures, {
    active: 1,
    pendingRevocation: 0,
    oldestUnrevokedSince: unix("2026-11-29T11:59:30.000Z"),
  });
});

test("a credential still being minted dates from the run's start", () => {
  const figures = credentialGauges([run({ state: "minting" }, { startTime: "2026-11-29T11:59:50.000Z" })]);
  assert.deepEqual(figures, {
    active: 1,
    pendingRevocation: 0,
    oldestUnrevokedSince: unix("2026-11-29T11:59:50.000Z"),
  });
});

test("credentials of finished, cancelled and deleted runs are pending revocation; the oldest wins", () => {
  const figures = credentialGauges([
    run({ mintedAt: "2026-11-29T11:50:00.000Z" }, { cancelled: true }),
    run({ mintedAt: "2026-11-29T11:00:00.000Z" }, { done: true }),
    run({ mintedAt: "2026-11-29T11:55:00.000Z" }, { deleting: true }),
    run({ mintedAt: "2026-11-29T11:59:00.000Z" }),
  ]);
  assert.deepEqual(figures, {
    active: 4,
    pendingRevocation: 3,
    oldestUnrevokedSince: unix("2026-11-29T11:00:00.000Z"),
  });
});
