// The ports tests and the local control plane hand to processes they start: outside the kernel's
// ephemeral range, free, and never the same port to two processes on this machine at once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { freePorts } from "../../hack/cluster/processes.ts";

const processesModule = fileURLToPath(new URL("../../hack/cluster/processes.ts", import.meta.url));
const [ephemeralLow, ephemeralHigh] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
  .trim()
  .split(/\s+/)
  .map(Number) as [number, number];

function listen(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(port, "127.0.0.1", () => resolve(s));
  });
}

test("ports handed out are distinct, outside the ephemeral range, and bindable", async () => {
  const ports = (await Promise.all(Array.from({ length: 10 }, () => freePorts(5)))).flat();
  assert.equal(new Set(ports).size, ports.length, `distinct: ${ports.join(",")}`);
  for (const port of ports) {
    assert.ok(
      port < ephemeralLow || port > ephemeralHigh,
      `${port} is outside ${ephemeralLow}-${ephemeralHigh}`,
    );
  }
  const servers = await Promise.all(ports.map(listen));
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

test("a port another process listens on is not handed out", async () => {
  const held = await Promise.all((await freePorts(200)).map(listen));
  const heldPorts = new Set(held.map((s) => (s.address() as net.AddressInfo).port));
  try {
    const more = await freePorts(300);
    assert.deepEqual(
      more.filter((p) => heldPorts.has(p)),
      [],
    );
  } finally {
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
  }
});

test("two processes choosing ports at the same time never choose the same one", async () => {
  // 500 each from 10,000: without the claims, about 25 would be shared. Each child holds its
  // claims (stays alive) until every chooser has chosen.
  const script = `import { freePorts } from ${JSON.stringify(processesModule)};
console.log(JSON.stringify(await freePorts(500)));
process.stdin.resume().on("end", () => process.exit(0));`;
  const children = [0, 1].map(() =>
    spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "inherit"] }),
  );
  const chosen = children.map(
    (child) =>
      new Promise<number[]>((resolve, reject) => {
        let out = "";
        child.stdout.setEncoding("utf8").on("data", (c: string) => {
          out += c;
          if (out.endsWith("\n")) resolve(JSON.parse(out) as number[]);
        });
        child.once("exit", (code) => reject(new Error(`chooser exited ${code} before answering`)));
      }),
  );
  try {
    const [a, b, own] = await Promise.all([...chosen, freePorts(500)]);
    const all = [...(a ?? []), ...(b ?? []), ...(own ?? [])];
    assert.equal(all.length, 1500);
    assert.equal(new Set(all).size, all.length, "no port was handed to two processes");
  } finally {
    for (const child of children) child.stdin.end();
    await Promise.all(children.filter((c) => c.exitCode === null).map((c) => once(c, "exit")));
  }
});
