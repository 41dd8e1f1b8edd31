// The controller's logger: no value of a secret field reaches a log line, at any depth, in objects,
// arrays or errors (their own fields, their cause, an AggregateError's errors), and nothing the
// caller logs is changed by the redaction.
import assert from "node:assert/strict";
import { test } from "node:test";
import { censor, createLogger, redactSecrets } from "../../controller/log.ts";

function capture() {
  const lines: string[] = [];
  const log = createLogger("debug", { write: (s: string) => void lines.push(s) });
  return { log, lines };
}

const secrets = [
  "AKIA-SECRET-1",
  "wJalr-SECRET-2",
  "FwoG-SECRET-3",
  "eyJ-SECRET-4",
  "pem-SECRET-5",
  "Bearer SECRET-6",
];

test("secret fields are redacted at every depth, in arrays, and in errors, their causes and aggregates", () => {
  const { log, lines } = capture();
  const fields = {
    secretAccessKey: secrets[0],
    credentials: { SecretAccessKey: secrets[1], nested: { sessionToken: secrets[2] } },
    list: [{ token: secrets[3] }, "plain"],
    deep: { a: { b: { c: { d: { privateKey: secrets[4] } } } } },
    headers: { authorization: secrets[5] },
  };
  log.info(fields, "minted");
  class KubeError extends Error {
    token = secrets[3];
  }
  const failed = new KubeError("the request failed", {
    cause: Object.assign(new Error("underneath"), { sessionToken: secrets[2] }),
  });
  log.error({ err: failed }, "could not write");
  log.warn(
    { err: new AggregateError([Object.assign(new Error("one"), { webIdentityToken: secrets[3] })], "many") },
    "several failed",
  );
  const written = lines.join("");
  for (const secret of secrets) assert.ok(!written.includes(secret), `${secret} is not logged`);
  assert.equal(lines.length, 3);
  const [minted, error] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(minted?.credentials, {
    SecretAccessKey: censor,
    nested: { sessionToken: censor },
  });
  assert.deepEqual(minted?.list, [{ token: censor }, "plain"]);
  const err = error?.err as { type: string; message: string; stack: string; token: string };
  assert.equal(err.type, "KubeError", "the error keeps its class");
  assert.match(err.message, /the request failed/);
  assert.match(err.stack, /the request failed\n\s+at /, "and its stack");
  assert.equal(err.token, censor);
  assert.equal(fields.credentials.nested.sessionToken, secrets[2], "the caller's object is unchanged");
  assert.equal(failed.token, secrets[3], "the caller's error is unchanged");
});

test("what holds no secret is logged as it is, and an object too deep to walk is not logged", () => {
  const plain = { run: "ns/r", attempt: 1, at: new Date(0), tags: ["a", "b"] };
  assert.equal(redactSecrets(plain), plain, "the same object: nothing copied");
  let deep: Record<string, unknown> = { token: "SECRET" };
  for (let i = 0; i < 20; i++) deep = { deeper: deep };
  const { log, lines } = capture();
  log.info({ deep }, "deep");
  assert.ok(!lines.join("").includes("SECRET"));
  assert.match(lines.join(""), /too deep to log/);
});
