// The CPU one API request costs this process: over the controller's own client (one HTTP/2
// session, as client-go talks to the API server; controller/kube-client.ts) and over a pool of
// HTTP/1.1 keep-alive connections, as it sent them before. Both GET the same object from a local
// control plane, C at a time, and read the JSON; the figure is this process's CPU divided by the
// requests.
//   node bench/transport.ts [N] [C]     (default 3000 requests, 16 at a time; each measured twice)
import https from "node:https";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { loadKube } from "../controller/kube-client.ts";
import { benchControlPlane } from "./support.ts";

const requests = Number(process.argv[2] ?? 3000);
const concurrency = Number(process.argv[3] ?? 16);
const target = "/api/v1/namespaces/default";

interface KubeconfigFile {
  clusters: { cluster: Record<string, string> }[];
  users: { user: Record<string, string> }[];
}

async function measure(name: string, one: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 200; i++) await one();
  const cpu = process.cpuUsage();
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < requests) await one();
    }),
  );
  const used = process.cpuUsage(cpu);
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `  ${name.padEnd(36)} ${((used.user + used.system) / requests).toFixed(0).padStart(5)} µs CPU per request, ${(requests / seconds).toFixed(0)} requests/s`,
  );
}

const cp = await benchControlPlane();
try {
  const kube = await loadKube(cp.kubeconfigPath);
  const config = parse(readFileSync(cp.kubeconfigPath, "utf8")) as KubeconfigFile;
  const cluster = config.clusters[0]?.cluster ?? {};
  const user = config.users[0]?.user ?? {};
  const base = path.dirname(cp.kubeconfigPath);
  const file = (data?: string, name?: string) =>
    data ? Buffer.from(data, "base64") : name ? readFileSync(path.resolve(base, name)) : undefined;
  const agent = new https.Agent({
    keepAlive: true,
    maxSockets: 32,
    ca: file(cluster["certificate-authority-data"], cluster["certificate-authority"]),
    cert: file(user["client-certificate-data"], user["client-certificate"]),
    key: file(user["client-key-data"], user["client-key"]),
  });
  const server = new URL(cluster.server ?? "");
  const overHttp1 = () =>
    new Promise((resolve, reject) => {
      const req = https.request({
        hostname: server.hostname,
        port: server.port,
        path: target,
        agent,
        headers: { accept: "application/json" },
      });
      req.on("error", reject);
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString("utf8"))));
      });
      req.end();
    });
  console.log(`GET ${target}, ${requests} requests, ${concurrency} at a time:`);
  for (let round = 0; round < 2; round++) {
    await measure("the controller's client (HTTP/2)", () => kube.request("GET", target));
    await measure("a pool of HTTP/1.1 connections", overHttp1);
  }
  agent.destroy();
} finally {
  await cp.stop();
}
