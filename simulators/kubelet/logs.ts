// The kubelet's log endpoint, which `kubectl logs` and the API server's pods/log reach: GET
// /containerLogs/<namespace>/<pod>/<container>, with tailLines and limitBytes. HTTPS with a
// certificate of its own (the API server does not check a kubelet's serving certificate unless
// told a CA), on a loopback port the Node advertises in daemonEndpoints. Client certificates are
// not checked: only loopback reaches it.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import https from "node:https";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface LogServer {
  port: number;
  close(): Promise<void>;
}

/** `logs` gives a container's captured output, or undefined for a container it does not run. */
export async function startLogServer(
  dir: string,
  logs: (namespace: string, pod: string, container: string) => string | undefined,
): Promise<LogServer> {
  const key = path.join(dir, "kubelet.key");
  const cert = path.join(dir, "kubelet.crt");
  // prettier-ignore
  await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-nodes", "-days", "2", "-subj", "/CN=test-kubelet", "-keyout", key, "-out", cert]);
  const server = https.createServer({ key: await readFile(key), cert: await readFile(cert) }, (req, res) => {
    const url = new URL(req.url ?? "/", "https://localhost");
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const [kind, namespace = "", pod = "", container = ""] = parts;
    const text = kind === "containerLogs" && parts.length === 4 ? logs(namespace, pod, container) : undefined;
    if (req.method !== "GET" || text === undefined) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("not found\n");
      return;
    }
    const lines = Number(url.searchParams.get("tailLines") ?? "NaN");
    let out = text;
    if (Number.isInteger(lines) && lines >= 0) {
      const all = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
      out = lines === 0 || text === "" ? "" : `${all.slice(-lines).join("\n")}\n`;
    }
    const limit = Number(url.searchParams.get("limitBytes") ?? "NaN");
    let body = Buffer.from(out);
    if (Number.isInteger(limit) && limit > 0) body = body.subarray(0, limit);
    res.writeHead(200, { "Content-Type": "text/plain" }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
