// A small Kubernetes API client: JSON over a bounded pool of keep-alive HTTPS connections, and
// watches as streams of JSON lines, each on a connection of its own. The controller uses it
// instead of @kubernetes/client-node's generated API classes: loading those loads every generated
// model (about 80 MiB of resident memory and 25 MiB of heap before any work), and they convert
// every response object to classes it never needs.
// Kubeconfig files with client certificates or tokens, and the in-cluster ServiceAccount, are read
// here; any other kind of kubeconfig user (exec plugins, auth providers) goes through
// @kubernetes/client-node's KubeConfig, loaded only then.
import { readFileSync, statSync } from "node:fs";
import { createSecureContext } from "node:tls";
import type http from "node:http";
import type https from "node:https";
import { homedir } from "node:os";
import path from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { parse as parseYaml } from "yaml";
import { nodeHttp, nodeHttps } from "./builtin.ts";
import { http2Requests, type Answer, type Http2Requests } from "./http2-requests.ts";

/** A request the API server answered with an error status; `status` is its Status object, if any. */
export class KubeError extends Error {
  readonly statusCode: number;
  readonly status: { message?: string; reason?: string } | undefined;
  constructor(method: string, path: string, statusCode: number, status: KubeError["status"]) {
    super(
      `${method} ${path.split("?")[0] ?? path}: HTTP ${statusCode}${status?.message ? `: ${status.message}` : ""}`,
    );
    this.name = "KubeError";
    this.statusCode = statusCode;
    this.status = status;
  }
}

function parseStatus(text: string): KubeError["status"] {
  try {
    return text ? (JSON.parse(text) as KubeError["status"]) : undefined;
  } catch {
    return undefined;
  }
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Sends the body as a JSON merge patch (RFC 7386) rather than as JSON. */
  mergePatch?: boolean;
  /** The response is text (a pod's log), returned as it is. */
  text?: boolean;
}

export type WatchEvent<T> = { type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR"; object: T };

export interface Kube {
  request<T>(method: string, path: string, opts?: RequestOptions): Promise<T>;
  /**
   * Streams watch events of a collection until the server ends the stream (`done()`), the stream
   * fails (`done(err)`) or the caller aborts it.
   */
  watch<T>(
    path: string,
    query: RequestOptions["query"],
    onEvent: (event: WatchEvent<T>) => void,
    done: (err?: unknown) => void,
  ): { abort: () => void };
  /** Every request, as it is sent: for counting them. */
  onRequest?: (method: string, path: string) => void;
}

interface Endpoint {
  server: URL;
  /** Requests, over https: one HTTP/2 session, while the server speaks HTTP/2. */
  h2?: Http2Requests;
  /** Requests otherwise: at most `maxRequestConnections` at once, kept open and reused. */
  agent: http.Agent;
  /** Watches: a connection each, however many namespaces are watched. */
  watchAgent: http.Agent;
  /** Headers that authenticate a request (a bearer token), possibly refreshed. */
  auth: () => Promise<Record<string, string>>;
}

const requestTimeoutMs = 60_000;

function queryString(query: RequestOptions["query"]): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) params.set(k, String(v));
  const s = params.toString();
  return s ? `?${s}` : "";
}

function makeClient(endpoint: Endpoint): Kube {
  const { server } = endpoint;
  const transport = server.protocol === "https:" ? nodeHttps : nodeHttp;
  const base = server.pathname.replace(/\/$/, "");

  /** A request's headers with what every request carries: JSON accepted, and the credentials. */
  const authorized = async (headers: Record<string, string>) => ({
    Accept: "application/json",
    ...headers,
    ...(await endpoint.auth()),
  });

  const send = async (
    method: string,
    pathAndQuery: string,
    headers: Record<string, string>,
    agent = endpoint.agent,
  ) =>
    transport.request({
      protocol: server.protocol,
      hostname: server.hostname.replace(/^\[|\]$/g, ""),
      port: server.port,
      method,
      path: base + pathAndQuery,
      agent,
      headers: await authorized(headers),
    });

  /** One request over HTTP/1.1, on a pooled keep-alive connection. */
  const overHttp1 = async (
    method: string,
    target: string,
    headers: Record<string, string>,
    body?: Buffer,
  ) => {
    const req = await send(method, target, headers);
    return new Promise<Answer>((resolve, reject) => {
      req.setTimeout(requestTimeoutMs, () =>
        req.destroy(new Error(`${method} ${target.split("?")[0] ?? target}: timed out`)),
      );
      req.on("error", reject);
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
      });
      req.end(body);
    });
  };

  const client: Kube = {
    async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
      const target = path + queryString(opts.query);
      const body = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
      client.onRequest?.(method, path);
      const headers: Record<string, string> = body
        ? {
            "Content-Type": opts.mergePatch ? "application/merge-patch+json" : "application/json",
            "Content-Length": String(body.length),
          }
        : {};
      const { h2 } = endpoint;
      let answer: Answer | undefined;
      if (h2?.available) answer = await h2.send(method, base + target, await authorized(headers), body);
      answer ??= await overHttp1(method, target, headers, body);
      if (answer.status < 200 || answer.status >= 300)
        throw new KubeError(method, path, answer.status, parseStatus(answer.text));
      if (opts.text) return answer.text as T;
      return (answer.text ? JSON.parse(answer.text) : undefined) as T;
    },

    watch<T>(
      path: string,
      query: RequestOptions["query"],
      onEvent: (event: WatchEvent<T>) => void,
      done: (err?: unknown) => void,
    ) {
      let ended = false;
      let current: http.ClientRequest | undefined;
      let aborted = false;
      const finish = (err?: unknown) => {
        if (ended) return;
        ended = true;
        done(aborted ? undefined : err);
      };
      client.onRequest?.("WATCH", path);
      void send("GET", path + queryString({ ...query, watch: true }), {}, endpoint.watchAgent).then(
        (req) => {
          current = req;
          if (aborted) req.destroy();
          req.on("error", (err) => finish(err));
          req.on("response", (res) => {
            const code = res.statusCode ?? 0;
            if (code !== 200) {
              const chunks: Buffer[] = [];
              res.on("data", (c: Buffer) => chunks.push(c));
              res.on("end", () =>
                finish(
                  new KubeError("WATCH", path, code, parseStatus(Buffer.concat(chunks).toString("utf8"))),
                ),
              );
              res.on("error", (err) => finish(err));
              return;
            }
            let pending = "";
            res.setEncoding("utf8");
            res.on("data", (chunk: string) => {
              pending += chunk;
              let nl;
              while ((nl = pending.indexOf("\n")) >= 0) {
                const line = pending.slice(0, nl);
                pending = pending.slice(nl + 1);
                if (!line.trim()) continue;
                try {
                  onEvent(JSON.parse(line) as WatchEvent<T>);
                } catch (err) {
                  req.destroy();
                  finish(err);
                  return;
                }
              }
            });
            res.on("error", (err) => finish(err));
            res.on("end", () => finish());
            res.on("close", () => finish());
          });
          req.end();
        },
        (err: unknown) => finish(err),
      );
      return {
        abort: () => {
          aborted = true;
          current?.destroy();
          finish();
        },
      };
    },
  };
  return client;
}

const readPath = (file: string, base: string) => readFileSync(path.resolve(base, file));
const fromBase64 = (data: string) => Buffer.from(data, "base64");

/** A token file, read again at most once a minute: bound ServiceAccount tokens rotate. */
function tokenFile(file: string): () => Record<string, string> {
  let cached: { token: string; at: number } | undefined;
  return () => {
    if (!cached || Date.now() - cached.at > 60_000)
      cached = { token: readFileSync(file, "utf8").trim(), at: Date.now() };
    return { Authorization: `Bearer ${cached.token}` };
  };
}

interface KubeconfigFile {
  "current-context"?: string;
  contexts?: { name: string; context?: { cluster?: string; user?: string } }[];
  clusters?: { name: string; cluster?: Record<string, unknown> }[];
  users?: { name: string; user?: Record<string, unknown> }[];
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

/** The endpoint a kubeconfig file names, or undefined when its user needs client-node's auth. */
function fromKubeconfigFile(file: string): Endpoint | undefined {
  const config = parseYaml(readFileSync(file, "utf8")) as KubeconfigFile;
  const base = path.dirname(file);
  const context = config.contexts?.find((c) => c.name === config["current-context"])?.context;
  const cluster = config.clusters?.find((c) => c.name === context?.cluster)?.cluster;
  const user = config.users?.find((u) => u.name === context?.user)?.user ?? {};
  const server = str(cluster?.server);
  if (!cluster || !server) throw new Error(`kubeconfig ${file}: the current context names no cluster`);
  const known = new Set([
    "client-certificate",
    "client-certificate-data",
    "client-key",
    "client-key-data",
    "token",
    "tokenFile",
  ]);
  if (Object.keys(user).some((k) => !known.has(k))) return undefined;
  const ca = str(cluster["certificate-authority-data"])
    ? fromBase64(cluster["certificate-authority-data"] as string)
    : str(cluster["certificate-authority"]) && readPath(cluster["certificate-authority"] as string, base);
  const cert = str(user["client-certificate-data"])
    ? fromBase64(user["client-certificate-data"] as string)
    : str(user["client-certificate"]) && readPath(user["client-certificate"] as string, base);
  const key = str(user["client-key-data"])
    ? fromBase64(user["client-key-data"] as string)
    : str(user["client-key"]) && readPath(user["client-key"] as string, base);
  const token = str(user.token);
  const tokenPath = str(user.tokenFile);
  const bearer: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  const auth = tokenPath ? tokenFile(path.resolve(base, tokenPath)) : () => bearer;
  return {
    server: new URL(server),
    ...agentsFor(new URL(server), {
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      rejectUnauthorized: cluster["insecure-skip-tls-verify"] !== true,
      ...(str(cluster["tls-server-name"]) ? { servername: cluster["tls-server-name"] as string } : {}),
    }),
    auth: () => Promise.resolve(auth()),
  };
}

/**
 * Requests in flight at once; more wait for a free connection. Kept open between bursts, so a
 * busy controller does not pay a TLS handshake per request.
 */
const maxRequestConnections = 32;

/**
 * Requests over HTTP/2 when the server is https and speaks it, else over a pool of HTTP/1.1
 * connections; watches each on an HTTP/1.1 connection of its own, so that no watch waits on a
 * server's limit of streams per connection.
 */
function agentsFor(server: URL, tls: https.AgentOptions): Pick<Endpoint, "agent" | "watchAgent" | "h2"> {
  const pool = { keepAlive: true, maxSockets: maxRequestConnections, maxFreeSockets: maxRequestConnections };
  if (server.protocol !== "https:")
    return { agent: new nodeHttp.Agent(pool), watchAgent: new nodeHttp.Agent({ keepAlive: true }) };
  // One TLS context for every connection: without it each new one parses the CA and key again.
  const { ca, cert, key, ...rest } = tls;
  const secure = { ...rest, secureContext: createSecureContext({ ca, cert, key }) };
  return {
    h2: http2Requests(server.origin, {
      secureContext: secure.secureContext,
      ...(rest.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
      ...(rest.servername ? { servername: rest.servername } : {}),
      timeoutMs: requestTimeoutMs,
    }),
    agent: new nodeHttps.Agent({ ...secure, ...pool }),
    watchAgent: new nodeHttps.Agent({ ...secure, keepAlive: true }),
  };
}

const inCluster = "/var/run/secrets/kubernetes.io/serviceaccount";

/** A client for a KubeConfig already loaded by @kubernetes/client-node (tests, tools). */
export async function kubeFromKubeConfig(kc: KubeConfig): Promise<Kube> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig's current context names no cluster");
  const server = new URL(cluster.server);
  const first: https.RequestOptions = { headers: {} };
  await kc.applyToHTTPSOptions(first);
  const agents = agentsFor(server, {
    ...(first.ca ? { ca: first.ca } : {}),
    ...(first.cert ? { cert: first.cert } : {}),
    ...(first.key ? { key: first.key } : {}),
    ...(first.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
  });
  return makeClient({
    server,
    ...agents,
    async auth() {
      const opts: https.RequestOptions = { headers: {} };
      await kc.applyToHTTPSOptions(opts);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(opts.headers ?? {})) if (typeof v === "string") headers[k] = v;
      return headers;
    },
  });
}

/**
 * The client for the usual places, in client-go's order: $KUBECONFIG (its first file), then
 * ~/.kube/config, then the in-cluster ServiceAccount.
 */
export async function loadKube(kubeconfigPath?: string): Promise<Kube> {
  const home = path.join(homedir(), ".kube", "config");
  const exists = (f: string) => statSync(f, { throwIfNoEntry: false })?.isFile() ?? false;
  const file =
    kubeconfigPath ??
    process.env.KUBECONFIG?.split(path.delimiter).find(exists) ??
    (exists(home) ? home : undefined);
  if (file) {
    const endpoint = fromKubeconfigFile(file);
    if (endpoint) return makeClient(endpoint);
    const { KubeConfig } = await import("@kubernetes/client-node");
    const kc = new KubeConfig();
    kc.loadFromFile(file);
    return kubeFromKubeConfig(kc);
  }
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error("no kubeconfig found and not running in a cluster");
  const server = new URL(`https://${host.includes(":") ? `[${host}]` : host}:${port}`);
  const auth = tokenFile(path.join(inCluster, "token"));
  return makeClient({
    server,
    ...agentsFor(server, { ca: readFileSync(path.join(inCluster, "ca.crt")) }),
    auth: () => Promise.resolve(auth()),
  });
}

/** The HTTP status of a failed request, if the API server answered. */
export const statusCode = (err: unknown): number | undefined =>
  err instanceof KubeError ? err.statusCode : undefined;

/** The API server's own words for a failed request (its Status message), else the error's first line. */
export function apiErrorMessage(err: unknown): string {
  if (err instanceof KubeError) {
    return err.status?.message ? `${err.status.message} (HTTP ${err.statusCode})` : `HTTP ${err.statusCode}`;
  }
  return err instanceof Error ? (err.message.split("\n")[0] ?? err.message) : String(err);
}

/**
 * What a request does, as the API server's audit log names it: the verb (a GET of a collection is
 * a list) and the resource, with its subresource ("customruns/status").
 */
export function describeRequest(method: string, path: string): { verb: string; resource: string } {
  const parts = path.split("?")[0]?.split("/").filter(Boolean) ?? [];
  // /api/v1/... or /apis/group/version/...
  let rest = parts.slice(parts[0] === "api" ? 2 : 3);
  if (rest[0] === "namespaces" && rest.length > 2) rest = rest.slice(2);
  const [resource = "", name, subresource] = rest;
  const verb = method === "GET" && name === undefined ? "LIST" : method;
  return { verb, resource: subresource ? `${resource}/${subresource}` : resource };
}

/** Paths of namespaced collections and objects. */
export function resourcePath(
  type: { apiVersion: string; plural: string },
  namespace?: string,
  name?: string,
  subresource?: string,
): string {
  const root = type.apiVersion.includes("/") ? `/apis/${type.apiVersion}` : `/api/${type.apiVersion}`;
  return [
    root,
    ...(namespace ? ["namespaces", encodeURIComponent(namespace)] : []),
    type.plural,
    ...(name ? [encodeURIComponent(name)] : []),
    ...(subresource ? [subresource] : []),
  ].join("/");
}
