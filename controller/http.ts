// The controller's HTTP endpoints: health, readiness, metrics and the OIDC documents.
import type http from "node:http";
import { nodeHttp } from "./builtin.ts";

export interface HttpRoutes {
  ready: () => { ok: boolean; why: string };
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** The issuer's handler; returns true when it answered the request. */
  oidc?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
}

export function startHttpServer(host: string, port: number, routes: HttpRoutes): Promise<http.Server> {
  const server = nodeHttp.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") {
      res.writeHead(200, { "Content-Type": "text/plain" }).end("ok");
    } else if (path === "/readyz") {
      const { ok, why } = routes.ready();
      res.writeHead(ok ? 200 : 503, { "Content-Type": "text/plain" }).end(ok ? "ok" : why);
    } else if (path === "/metrics" && routes.metrics) {
      routes.metrics().then(
        ({ contentType, body }) => res.writeHead(200, { "Content-Type": contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    } else if (!routes.oidc?.(req, res)) {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
