// A step that prints its own credentials and fails: its log tail is what the run's condition and
// Failed Event quote. Nothing of the credential, and no JWT, may reach the controller's logs,
// Events, or the CustomRun's status and results, in any delivery mode, nor after the controller
// is killed at any failpoint.
import { test } from "node:test";
import assert from "node:assert/strict";
import { failpoints } from "../../tasks/scoped-step/ports.ts";
import { deployRole, published, startIdentityWorld, type IdentityWorld } from "../support/identity-world.ts";
import { condition } from "../support/world.ts";

const delivery = { env: "payments-env", file: "payments-file", "token-only": "payments-token" } as const;
type Delivery = keyof typeof delivery;

const world = startIdentityWorld({
  aws: { allowedRoleArns: ["arn:aws:iam::111122223333:role/payments-*"], maxSessionDuration: 3600 },
  deliveryModes: ["env", "file", "token-only"],
  tokenOnly: { audiences: ["vault.example.com"] },
  revocation: "deny-policy",
}).then(async (w) => {
  for (const [mode, app] of Object.entries(delivery)) {
    await w.createApplication(app, [
      {
        name: "api",
        type: "webservice",
        traits: [
          {
            type: "scoped-identity",
            properties: {
              delivery: mode,
              // A raw token's audience is the system it is for; an STS audience needs an opt-in.
              ...(mode === "token-only" ? { audience: "vault.example.com" } : {}),
              aws: { roleArn: deployRole, region: "eu-west-1" },
            },
          },
        ],
      },
    ]);
  }
  return w;
});

const prints: Record<Delivery, string> = {
  env: 'echo "id $AWS_ACCESS_KEY_ID"; echo "key $AWS_SECRET_ACCESS_KEY"; echo "token $AWS_SESSION_TOKEN"',
  file: 'cat "$AWS_SHARED_CREDENTIALS_FILE"; grep -o "= .*" "$AWS_SHARED_CREDENTIALS_FILE"',
  "token-only": 'cat "$SCOPED_STEP_OIDC_TOKEN_FILE"; echo',
};

/** The credential values the step printed: its own output is the one place they belong. */
function printedSecrets(output: string): string[] {
  const values = [...output.matchAll(/(?:^|\s|=\s?)([A-Za-z0-9+/=._-]{16,})\s*$/gm)].map((m) => m[1] ?? "");
  return [...new Set(values)].filter((v) => !v.startsWith("eu-west"));
}

const jwt = /eyJ[\w-]{10,}\.[\w-]{10,}/;

async function leakCheck(
  w: IdentityWorld,
  name: string,
  mode: Delivery,
  { terminalEvent = true } = {},
): Promise<void> {
  const run = await w.waitDone(name, 120_000);
  assert.equal(condition(run)?.reason, "Failed", condition(run)?.message);
  // Events follow the status write; a controller killed between the two never sends that one.
  if (terminalEvent) await w.waitForEvents(name, ["Failed"]);
  const output = w.kubelet?.output(w.ns, `${name}-pod`) ?? "";
  const secrets = printedSecrets(output);
  assert.ok(
    secrets.length >= (mode === "token-only" ? 1 : 3),
    `the step printed its credentials: ${secrets.length}`,
  );
  const text = await published(w);
  const hits = secrets.filter((s) => text.includes(s));
  assert.deepEqual(
    hits.map((h) => `${h.slice(0, 4)}… (${h.length})`),
    [],
    "credential values published",
  );
  assert.doesNotMatch(text, jwt, "a JWT was published");
}

const failing = (w: IdentityWorld, mode: Delivery) => [
  { name: "image", value: "alpine" },
  { name: "script", value: `${prints[mode]}; echo the deploy failed; exit 3` },
  { name: "application", value: delivery[mode] },
  { name: "component", value: "api" },
  { name: "env", value: { AWS_ENDPOINT_URL: w.peer.endpoint } },
];

for (const mode of Object.keys(delivery) as Delivery[]) {
  test(`a failing ${mode}-mode step that prints its credentials publishes none of them`, async () => {
    const w = await world;
    const name = `leak-${mode}`;
    await w.createRun(name, { params: failing(w, mode) });
    await leakCheck(w, name, mode);
  });
}

for (const point of failpoints) {
  test(`killed ${point}, the controller still publishes none of a failing step's credentials`, async () => {
    const w = await world;
    const name = `leak-${point}`;
    await w.restartController({ SCOPED_STEP_FAILPOINT: point });
    const doomed = w.controller;
    await w.createRun(name, { params: failing(w, "file") });
    const code = await doomed?.exited;
    assert.equal(doomed?.child.signalCode ?? code, "SIGKILL", `the controller died at ${point}`);
    await w.restartController();
    await leakCheck(w, name, "file", { terminalEvent: point !== "after-terminal" });
  });
}
