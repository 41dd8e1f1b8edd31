// Capacity of deny-policy revocation per role, against the loopback AWS peer (which holds a role's
// inline policies to IAM's 10,240-character aggregate limit) through the real IAM SDK client:
//   1. entries per role: sessions denied, one after another, until IAM refuses the next;
//   2. sustained revocations per minute at 900 s sessions: a simulated clock runs for two hours
//      with revocations arriving at a steady rate, each for a session minted that minute (the worst
//      case: a step that ends at once leaves its whole session to deny), pruning as the controller
//      does; the highest rate with no fallback to expiry is found by bisection.
//   node bench/revocations.ts [sessionSeconds]   (default 900)
import { IAMClient } from "@aws-sdk/client-iam";
import { pino } from "pino";
import { denyListRevoker, revocationPolicyName } from "../tasks/scoped-step/credentials/aws-revocation.ts";
import { sourceIdentity, unrecordedMintMarginSeconds } from "../tasks/scoped-step/credentials/aws.ts";
import { startAwsPeer, type AwsPeer } from "../simulators/aws/server.ts";

const sessionSeconds = Number(process.argv[2] ?? 900);
const log = pino({ level: "silent" });
const trustPolicy = {
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" }],
};

let roles = 0;
let uids = 0;
/** A source identity as the provider makes them, for a fresh run. */
const nextIdentity = () =>
  sourceIdentity({
    namespace: "team-a",
    customRun: "run",
    uid: `bench-${++uids}`,
    attempt: 0,
    serviceAccount: "default",
    application: "payments",
    component: "api",
  });

function freshRole(peer: AwsPeer) {
  const arn = `arn:aws:iam::${peer.accountId}:role/bench-${++roles}`;
  peer.createRole({ arn, trustPolicy });
  return arn;
}

function revoker(peer: AwsPeer, now: () => Date) {
  const client = new IAMClient({
    region: "us-east-1",
    endpoint: peer.endpoint,
    credentials: peer.adminCredentials,
  });
  return denyListRevoker({ log, client, now });
}

/** Sessions denied one after another, all expiring within the same minute, until IAM refuses. */
async function entriesPerRole(peer: AwsPeer): Promise<{ entries: number; characters: number }> {
  const roleArn = freshRole(peer);
  const now = new Date();
  const r = revoker(peer, () => now);
  const expiresAt = new Date(now.getTime() + sessionSeconds * 1000);
  for (let n = 0; ; n++) {
    const result = await r.revoke({ roleArn, sourceIdentity: nextIdentity(), expiresAt });
    if (!result.denied) {
      const text = peer.rolePolicies(roleArn)[revocationPolicyName] ?? "";
      return { entries: n, characters: text.length };
    }
  }
}

/** Whether `perMinute` revocations a minute for `minutes` simulated minutes all fit. */
async function sustains(
  peer: AwsPeer,
  perMinute: number,
  minutes: number,
  extraSeconds: number,
): Promise<boolean> {
  const roleArn = freshRole(peer);
  let clock = Date.parse("2026-01-01T00:00:00Z");
  const r = revoker(peer, () => new Date(clock));
  let owed = 0;
  for (let minute = 0; minute < minutes; minute++) {
    owed += perMinute;
    const batch = Math.floor(owed);
    owed -= batch;
    for (let i = 0; i < batch; i++) {
      // Spread over the minute; each session was minted at that moment.
      const at = clock + Math.floor((i * 60_000) / Math.max(batch, 1));
      const expiresAt = new Date(at + (sessionSeconds + extraSeconds) * 1000);
      const saved = clock;
      clock = at;
      const result = await r.revoke({ roleArn, sourceIdentity: nextIdentity(), expiresAt });
      clock = saved;
      if (!result.denied) return false;
    }
    clock += 60_000;
    await r.prune(roleArn, new Date(clock));
  }
  return true;
}

async function sustainedRate(peer: AwsPeer, extraSeconds: number): Promise<number> {
  const minutes = 120;
  let low = 0;
  let high = 256;
  while (high - low > 0.25) {
    const mid = (low + high) / 2;
    if (await sustains(peer, mid, minutes, extraSeconds)) low = mid;
    else high = mid;
  }
  return low;
}

const peer = await startAwsPeer();
try {
  const started = performance.now();
  const { entries, characters } = await entriesPerRole(peer);
  console.log(
    `entries per role: ${entries} denied sessions (${characters} characters of 10,240) before IAM refused the next`,
  );
  const minted = await sustainedRate(peer, 0);
  console.log(
    `sustained revocations per role at ${sessionSeconds} s sessions, minted sessions: ${minted.toFixed(1)} per minute with no fallback to expiry`,
  );
  const unrecorded = await sustainedRate(peer, unrecordedMintMarginSeconds);
  console.log(
    `sustained, sessions whose mint was never recorded (denied for ${sessionSeconds} s + ${unrecordedMintMarginSeconds} s): ${unrecorded.toFixed(1)} per minute`,
  );
  console.log(`(${((performance.now() - started) / 1000).toFixed(0)} s, ${peer.calls().length} IAM calls)`);
} finally {
  await peer.stop();
}
