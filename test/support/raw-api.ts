// Requests to the API server with objects exactly as written. client-node's typed models drop
// fields they do not know before sending, so a misspelt field in a catalog manifest would never
// reach the server; here it does, with strict field validation, and the server's warnings (unknown
// fields, Pod Security, deprecations) come back with the answer.
import https from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";

export interface RawResponse {
  status: number;
  body: unknown;
  warnings: string[];
}

export interface ApiObject {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; generateName?: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

export async function rawRequest(
  kc: KubeConfig,
  method: string,
  path: string,
  body?: unknown,
  contentType = "application/json",
): Promise<RawResponse> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error("no current cluster in the kubeconfig");
  const url = new URL(path, server);
  const options: https.RequestOptions = {
    method,
    headers: {
      Accept: "application/json",
      ...(body === undefined ? {} : { "Content-Type": contentType }),
    },
  };
  await kc.applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    const req = https.request(url, options, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => {
        const warnings = (res.headersDistinct.warning ?? []).map((w) =>
          // RFC 7234 form: 299 - "text"
          w.replace(/^299 - "(.*)"$/s, "$1"),
        );
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          // Not JSON: keep the text.
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, warnings });
      });
    });
    req.on("error", reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

interface Resource {
  plural: string;
  namespaced: boolean;
}

/** The resource of a kind, from the API server's discovery (so CRDs installed a moment ago work). */
export async function resourceOf(kc: KubeConfig, apiVersion: string, kind: string): Promise<Resource> {
  const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  const res = await rawRequest(kc, "GET", base);
  const list = res.body as { resources?: { name: string; kind: string; namespaced: boolean }[] };
  const found = (list.resources ?? []).find((r) => r.kind === kind && !r.name.includes("/"));
  if (res.status !== 200 || !found)
    throw new Error(`${apiVersion} ${kind} is not served (HTTP ${res.status})`);
  return { plural: found.name, namespaced: found.namespaced };
}

export async function collectionPath(kc: KubeConfig, obj: ApiObject, namespace?: string): Promise<string> {
  const { plural, namespaced } = await resourceOf(kc, obj.apiVersion, obj.kind);
  const base = obj.apiVersion.includes("/") ? `/apis/${obj.apiVersion}` : `/api/${obj.apiVersion}`;
  const ns = namespace ?? obj.metadata.namespace;
  if (namespaced && !ns) throw new Error(`${obj.kind} ${obj.metadata.name ?? ""} needs a namespace`);
  return namespaced ? `${base}/namespaces/${ns ?? ""}/${plural}` : `${base}/${plural}`;
}

/** POSTs the object with strict field validation; `dryRun` asks for server-side dry run. */
export async function createRaw(
  kc: KubeConfig,
  obj: ApiObject,
  opts: { dryRun?: boolean; namespace?: string } = {},
): Promise<RawResponse> {
  const query = new URLSearchParams({ fieldValidation: "Strict", ...(opts.dryRun ? { dryRun: "All" } : {}) });
  return rawRequest(kc, "POST", `${await collectionPath(kc, obj, opts.namespace)}?${query.toString()}`, obj);
}

/**
 * Server-side apply as `fieldManager`, as `kubectl apply --server-side` does: the fields it sets
 * become that manager's, and a later apply without them removes them, leaving other managers' alone.
 */
export async function applyRaw(
  kc: KubeConfig,
  obj: ApiObject,
  fieldManager: string,
  namespace?: string,
): Promise<RawResponse> {
  const query = new URLSearchParams({ fieldManager, fieldValidation: "Strict" });
  const path = `${await collectionPath(kc, obj, namespace)}/${obj.metadata.name ?? ""}?${query.toString()}`;
  return rawRequest(kc, "PATCH", path, obj, "application/apply-patch+yaml");
}

export async function readRaw(kc: KubeConfig, obj: ApiObject, name: string, namespace?: string) {
  return rawRequest(kc, "GET", `${await collectionPath(kc, obj, namespace)}/${name}`);
}

export async function deleteRaw(kc: KubeConfig, obj: ApiObject, name: string, namespace?: string) {
  return rawRequest(kc, "DELETE", `${await collectionPath(kc, obj, namespace)}/${name}`);
}

/** The Status message of a failed request, or the body as text. */
export function statusMessage(res: RawResponse): string {
  const body = res.body as { message?: string; reason?: string } | string;
  return typeof body === "string" ? body : `${body.reason ?? ""}: ${body.message ?? JSON.stringify(body)}`;
}
