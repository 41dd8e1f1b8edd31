// local-kms (github.com/nsmithuk/local-kms, built by hack/build-tool.sh): a real AWS KMS server
// on a loopback port, for the issuer's KMS key store. It speaks KMS's JSON protocol to the real
// @aws-sdk/client-kms: CreateKey, CreateAlias/UpdateAlias, DescribeKey, GetPublicKey, Sign,
// DisableKey. It checks no signatures, so any credentials do; its keys live in a LevelDB under
// a temporary directory removed when it stops.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after } from "node:test";
import {
  CreateAliasCommand,
  CreateKeyCommand,
  KMSClient,
  UpdateAliasCommand,
  type KeySpec,
} from "@aws-sdk/client-kms";
import { freePorts } from "../../hack/cluster/processes.ts";
import { buildTool } from "../../hack/cluster/upstream.ts";
import { eventually } from "./wait.ts";

export interface LocalKms {
  endpoint: string;
  region: string;
  accountId: string;
  client: KMSClient;
  /** Everything it logged (keys are never in there: it logs ARNs and operations). */
  output(): string;
  /** A new signing key (ECC_NIST_P256 unless asked otherwise); its ARN. */
  createSigningKey(spec?: KeySpec): Promise<string>;
  /** Points `alias` (alias/...) at `keyArn`, creating the alias the first time. */
  pointAlias(alias: string, keyArn: string): Promise<void>;
  /** Its port and data directory, to start it again with the same keys (`keepData` on stop). */
  port: number;
  dataPath: string;
  pid: number | undefined;
  stop(opts?: { keepData?: boolean }): Promise<void>;
}

/** Credentials for the SDK: local-kms ignores them, the SDK needs some to sign. */
export const kmsCredentials = { accessKeyId: "AKIALOCALKMS", secretAccessKey: "local-kms-secret" };

const running = new Set<LocalKms>();
after(async () => {
  for (const kms of running) await kms.stop();
});

let binary: Promise<string> | undefined;

export async function startLocalKms(
  opts: { region?: string; accountId?: string; port?: number; dataPath?: string } = {},
): Promise<LocalKms> {
  binary ??= buildTool("local-kms");
  const region = opts.region ?? "eu-west-1";
  const accountId = opts.accountId ?? "111122223333";
  const port = opts.port ?? (await freePorts(1))[0] ?? 0;
  const dataPath = opts.dataPath ?? (await mkdtemp(path.join(os.tmpdir(), "local-kms-")));
  // It listens on every interface of the port: inside the test run's own network namespace.
  const child: ChildProcess = spawn(await binary, [], {
    env: {
      PATH: process.env.PATH ?? "",
      PORT: String(port),
      KMS_REGION: region,
      KMS_ACCOUNT_ID: accountId,
      KMS_DATA_PATH: dataPath,
      KMS_SEED_PATH: path.join(dataPath, "no-seed.yaml"),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.setEncoding("utf8").on("data", (c: string) => (output += c));
  child.stderr?.setEncoding("utf8").on("data", (c: string) => (output += c));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new KMSClient({ endpoint, region, credentials: kmsCredentials, maxAttempts: 1 });
  let stopped = false;
  const kms: LocalKms = {
    endpoint,
    region,
    accountId,
    client,
    port,
    dataPath,
    pid: child.pid,
    output: () => output,
    async createSigningKey(spec = "ECC_NIST_P256") {
      const created = await client.send(new CreateKeyCommand({ KeySpec: spec, KeyUsage: "SIGN_VERIFY" }));
      const arn = created.KeyMetadata?.Arn;
      if (!arn) throw new Error("local-kms created a key without an ARN");
      return arn;
    },
    async pointAlias(alias, keyArn) {
      try {
        await client.send(new UpdateAliasCommand({ AliasName: alias, TargetKeyId: keyArn }));
      } catch (err) {
        if ((err as Error).name !== "NotFoundException") throw err;
        await client.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: keyArn }));
      }
    },
    async stop({ keepData = false } = {}) {
      if (stopped) return;
      stopped = true;
      running.delete(kms);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
      client.destroy();
      if (!keepData) await rm(dataPath, { recursive: true, force: true });
    },
  };
  running.add(kms);
  await eventually(
    `local-kms to answer on ${endpoint}`,
    async () => {
      if (child.exitCode !== null) throw new Error(`local-kms exited: ${output.slice(-2000)}`);
      const res = await fetch(endpoint, {
        method: "POST",
        headers: { "content-type": "application/x-amz-json-1.1", "x-amz-target": "TrentService.ListKeys" },
        body: "{}",
      });
      return res.ok ? true : undefined;
    },
    { timeoutMs: 60_000 },
  );
  return kms;
}
