import { test } from "node:test";
import assert from "node:assert/strict";
import type { V1Pod, V1Secret } from "@kubernetes/client-node";
import { podOutcome } from "../../tasks/scoped-step/outcome.ts";
import { redact } from "../../tasks/scoped-step/redact.ts";

const key = "ASIAQ3EGRXTZ4EXAMPLE";
const secretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";
const sessionToken = "IQoJb3JpZ2luX2VjEHcaCWV1LXdlc3QtMSJHMEUCIQD6Ex4mplE+sessionTOKEN/more==";
const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2NvcGVkLXN0ZXAifQ.c2lnbmF0dXJlLWJ5dGVz";
const file = `[default]\naws_access_key_id = ${key}\naws_secret_access_key = ${secretKey}\naws_session_token = ${sessionToken}\nregion = eu-west-1\n`;
const secret = (data: Record<string, string>): V1Secret => ({
  data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString("base64")])),
});
const leaks = (text: string) => [key, secretKey, sessionToken, jwt].filter((v) => text.includes(v));

test("each value inside a credentials file is redacted, printed alone or as the file", () => {
  const printed = `cat creds:\n${file}\nkey=${key} secret=${secretKey}\ntoken ${sessionToken}`;
  const out = redact(printed, secret({ credentials: file }));
  assert.deepEqual(leaks(out), []);
  assert.match(out, /cat creds:/);
  assert.match(out, /^cat creds:\n\[redacted\]/, "what is not secret stays readable");
});

test("without the Secret, anything shaped like a key id, a secret key, a token or a JWT is redacted", () => {
  const out = redact(`AWS_ACCESS_KEY_ID=${key}\nsecret ${secretKey}\n${sessionToken}\nbearer ${jwt}\n`);
  assert.deepEqual(leaks(out), []);
  assert.doesNotMatch(out, /eyJ/);
});

test("ordinary output survives: words, paths, hex digests", () => {
  const text = "error: bucket not found at s3://artifacts/build-1234 (sha256 " + "ab12".repeat(16) + ")";
  assert.equal(redact(text), text);
});

test("a value cut off at the start of the text is caught by its tail", () => {
  const tail = sessionToken.slice(20);
  const out = redact(`${tail}\nthen it failed`, secret({ sessionToken }));
  assert.equal(out, "[redacted]\nthen it failed");
});

test("the step's message is redacted before it is cut to its last lines, so no fragment survives", () => {
  const padding = "x".repeat(1000);
  // The cut to 1024 characters falls inside the secret key: redacting afterwards would miss it.
  const message = `${secretKey}${padding}\nexit`;
  const pod: V1Pod = {
    metadata: { name: "p" },
    status: {
      containerStatuses: [
        {
          name: "step",
          state: { terminated: { exitCode: 1, message } },
          ready: false,
          restartCount: 0,
          image: "",
          imageID: "",
        },
      ],
    },
  };
  const out = podOutcome(pod, (t) => redact(t, secret({ secretAccessKey: secretKey })));
  assert.ok(out.phase === "failed");
  assert.ok(!out.message.includes(secretKey.slice(-12)), out.message.slice(0, 80));
  assert.match(out.message, /\[redacted\]/);
});
