// Amazon ECR as a pusher meets it: GetAuthorizationToken (JSON 1.1, signed with SigV4 for service
// "ecr") hands out a registry password for the caller, and the registry (the OCI distribution API
// under /v2/) takes it as HTTP Basic `AWS:<password>`. Every registry request is then authorised
// as ECR does: the action the request maps to (ecr:InitiateLayerUpload, ecr:PutImage, ...) on the
// repository's ARN, for the identity the password was issued to, with that session's policies and
// any deny written since. A session that has expired, or a password past its 12 hours, is refused.
//
// The registry itself is Debian's docker-registry (the CNCF distribution registry), listening on a
// unix socket only this front reaches: blobs and manifests are stored and served by the real thing.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request, type IncomingHttpHeaders } from "node:http";
import os from "node:os";
import path from "node:path";
import { authorizeRequest, principalArn, type Principal } from "./auth.ts";
import { now, type CallRecord, type PeerState } from "./state.ts";
import { AwsError } from "./wire.ts";
import type { HttpReply } from "./s3.ts";

export const ECR_TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921.";
/** How long a registry password lasts, as ECR's do. */
const PASSWORD_SECONDS = 12 * 3600;
export const registryBinary = "/usr/bin/docker-registry";

/** A password GetAuthorizationToken issued: who it speaks for, and until when. */
export interface RegistryPassword {
  accessKeyId: string;
  expiresAt: Date;
}

export const repositoryArn = (region: string, accountId: string, name: string) =>
  `arn:aws:ecr:${region}:${accountId}:repository/${name}`;

/** A JSON 1.1 error as the SDK reads it: `__type` names the exception. */
export function ecrError(error: AwsError): string {
  return JSON.stringify({ __type: error.code, message: error.message });
}

/**
 * GetAuthorizationToken for a signed caller: one password, valid for 12 hours or until the
 * caller's session ends, whichever is first. Other ECR API operations are not implemented.
 */
export function handleEcrApi(
  state: PeerState,
  principal: Principal,
  target: string,
  region: string,
  record: Partial<CallRecord>,
): HttpReply {
  const operation = target.startsWith(ECR_TARGET_PREFIX) ? target.slice(ECR_TARGET_PREFIX.length) : target;
  record.action = operation;
  if (operation !== "GetAuthorizationToken") {
    throw new AwsError("UnknownOperationException", `The AWS peer does not implement ECR ${operation}`);
  }
  const action = "ecr:GetAuthorizationToken";
  const decision = authorizeRequest(state, principal, action, "*");
  if (!decision.allowed) {
    throw new AwsError(
      "AccessDeniedException",
      `User: ${principalArn(principal)} is not authorized to perform: ${action} on resource: * ${decision.because}`,
      400,
    );
  }
  const password = randomBytes(48).toString("base64url");
  const limit = new Date(now(state).getTime() + PASSWORD_SECONDS * 1000);
  const ends = principal.kind === "session" ? principal.session.expiration : limit;
  const accessKeyId =
    principal.kind === "session" ? principal.session.accessKeyId : principal.user.accessKeyId;
  state.registryPasswords.set(password, { accessKeyId, expiresAt: ends < limit ? ends : limit });
  const registryHost = `${state.accountId}.dkr.ecr.${region}.amazonaws.com`;
  return {
    status: 200,
    headers: { "Content-Type": "application/x-amz-json-1.1" },
    body: JSON.stringify({
      authorizationData: [
        {
          authorizationToken: Buffer.from(`AWS:${password}`).toString("base64"),
          expiresAt: (ends < limit ? ends : limit).getTime() / 1000,
          proxyEndpoint: `https://${registryHost}`,
        },
      ],
    }),
  };
}

/** The repository a registry path names, and the ECR action the request needs on it. */
export function registryTarget(
  method: string,
  rawPath: string,
): { repository: string; action: string } | undefined {
  const m = /^\/v2\/(.+?)\/(blobs\/uploads\/[^/]*|blobs\/[^/]+|manifests\/[^/]+|tags\/list)$/.exec(rawPath);
  if (!m) return undefined;
  const [, repository = "", rest = ""] = m;
  const read = method === "GET" || method === "HEAD";
  let action: string;
  if (rest.startsWith("blobs/uploads/")) {
    action =
      method === "POST"
        ? "ecr:InitiateLayerUpload"
        : method === "PUT"
          ? "ecr:CompleteLayerUpload"
          : "ecr:UploadLayerPart";
  } else if (rest.startsWith("blobs/")) {
    action = read
      ? method === "HEAD"
        ? "ecr:BatchCheckLayerAvailability"
        : "ecr:GetDownloadUrlForLayer"
      : "ecr:BatchDeleteImage";
  } else if (rest.startsWith("manifests/")) {
    action = read ? "ecr:BatchGetImage" : method === "PUT" ? "ecr:PutImage" : "ecr:BatchDeleteImage";
  } else {
    action = "ecr:ListImages";
  }
  return { repository, action };
}

/** The registry's own error body: `{"errors": [{code, message}]}`. */
function registryError(status: number, code: string, message: string, headers: Record<string, string> = {}) {
  return {
    status,
    headers: { "Content-Type": "application/json; charset=utf-8", ...headers },
    body: JSON.stringify({ errors: [{ code, message, detail: null }] }),
  };
}

/** The Basic credentials of a request: `AWS:<password>` as ECR's tokens decode. */
function basicPassword(headers: IncomingHttpHeaders): string | undefined {
  const value = headers.authorization;
  if (!value?.startsWith("Basic ")) return undefined;
  const decoded = Buffer.from(value.slice("Basic ".length), "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return colon > 0 && decoded.slice(0, colon) === "AWS" ? decoded.slice(colon + 1) : undefined;
}

export interface Registry {
  /** Forwards one authorised request to the registry and returns its answer. */
  forward(
    method: string,
    rawPath: string,
    rawQuery: string,
    headers: IncomingHttpHeaders,
    body: Buffer,
  ): Promise<HttpReply>;
  stop(): Promise<void>;
}

/** Starts docker-registry on a unix socket in a folder of its own, and waits until it answers. */
export async function startRegistry(): Promise<Registry> {
  if (!existsSync(registryBinary)) {
    throw new Error(`aws peer: ${registryBinary} is missing: install Debian's docker-registry package`);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "aws-peer-registry-"));
  const socketPath = path.join(dir, "registry.sock");
  const config = path.join(dir, "config.yml");
  await writeFile(
    config,
    [
      "version: 0.1",
      "log: { level: warn }",
      `storage: { filesystem: { rootdirectory: ${JSON.stringify(path.join(dir, "data"))} }, delete: { enabled: true } }`,
      `http: { net: unix, addr: ${JSON.stringify(socketPath)} }`,
      "",
    ].join("\n"),
  );
  const child: ChildProcess = spawn(registryBinary, ["serve", config], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    log = (log + chunk.toString("utf8")).slice(-4000);
  });

  const forward: Registry["forward"] = (method, rawPath, rawQuery, headers, body) =>
    new Promise((resolve, reject) => {
      const forwarded = { ...headers };
      delete forwarded.authorization;
      const req = request(
        { socketPath, method, path: rawQuery ? `${rawPath}?${rawQuery}` : rawPath, headers: forwarded },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const replyHeaders: Record<string, string> = {};
            for (const [k, v] of Object.entries(res.headers)) {
              // A HEAD answer keeps the length of what GET would send: clients read it.
              const dropped = [
                "connection",
                "transfer-encoding",
                "date",
                ...(method === "HEAD" ? [] : ["content-length"]),
              ];
              if (v === undefined || dropped.includes(k)) continue;
              replyHeaders[k] = Array.isArray(v) ? v.join(", ") : v;
            }
            resolve({ status: res.statusCode ?? 502, headers: replyHeaders, body: Buffer.concat(chunks) });
          });
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`aws peer: docker-registry exited (${child.exitCode}): ${log}`);
    const ready = await forward("GET", "/v2/", "", { host: "localhost" }, Buffer.alloc(0)).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline)
      throw new Error(`aws peer: docker-registry did not answer on ${socketPath}: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    forward,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Whom a password speaks for, while it and the session behind it last. */
function passwordPrincipal(state: PeerState, issued: RegistryPassword): Principal | undefined {
  const at = now(state);
  if (at >= issued.expiresAt) return undefined;
  if (issued.accessKeyId === state.admin.accessKeyId) return { kind: "admin", user: state.admin };
  const session = state.sessions.get(issued.accessKeyId);
  return session && at < session.expiration ? { kind: "session", session } : undefined;
}

/**
 * One registry request: authenticate the password, authorise the ECR action on the repository,
 * then hand it to the registry. The challenge's realm is the host the client addressed.
 */
export async function handleRegistry(
  state: PeerState,
  registry: Registry | undefined,
  method: string,
  rawPath: string,
  rawQuery: string,
  headers: IncomingHttpHeaders,
  body: Buffer,
  record: Partial<CallRecord>,
): Promise<HttpReply> {
  const realm = `Basic realm="http://${headers.host ?? "localhost"}/",service="ecr.amazonaws.com"`;
  if (!registry) return registryError(404, "UNSUPPORTED", "the AWS peer's registry is not started");
  const password = basicPassword(headers);
  const issued = password === undefined ? undefined : state.registryPasswords.get(password);
  record.action = `${method} /v2/`;
  if (!issued) return registryError(401, "DENIED", "Not Authorized", { "WWW-Authenticate": realm });
  const principal = passwordPrincipal(state, issued);
  if (!principal) {
    return registryError(
      401,
      "DENIED",
      "Your authorization token has expired. Reauthenticate and try again.",
      {
        "WWW-Authenticate": realm,
      },
    );
  }
  record.principal = principalArn(principal);
  record.accessKeyId = issued.accessKeyId;
  if (rawPath === "/v2/" || rawPath === "/v2")
    return registry.forward(method, rawPath, rawQuery, headers, body);

  const target = registryTarget(method, rawPath);
  if (!target)
    return registryError(404, "UNSUPPORTED", `the AWS peer's registry does not serve ${method} ${rawPath}`);
  const region = state.registryRegion;
  const resource = repositoryArn(region, state.accountId, target.repository);
  record.action = target.action.slice("ecr:".length);
  record.resource = resource;
  const decision = authorizeRequest(state, principal, target.action, resource);
  if (!decision.allowed) {
    return registryError(
      403,
      "DENIED",
      `User: ${principalArn(principal)} is not authorized to perform: ${target.action} on resource: ${resource} ${decision.because}`,
    );
  }
  if (!state.repositories.has(target.repository)) {
    return registryError(
      404,
      "NAME_UNKNOWN",
      `The repository with name '${target.repository}' does not exist in the registry with id '${state.accountId}'`,
    );
  }
  return registry.forward(method, rawPath, rawQuery, headers, body);
}
