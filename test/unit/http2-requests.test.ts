// The API client's HTTP/2 requests against real local TLS servers: one session for many requests,
// a new one after GOAWAY, a refused stream sent again, a stream reset mid-request not sent again,
// timeouts, idle sessions closed, and a server that speaks only HTTP/1.1 reached over HTTP/1.1.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { createSecureContext } from "node:tls";
import { http2Requests } from "../../controller/http2-requests.ts";
import { loadKube } from "../../controller/kube-client.ts";
import { eventually } from "../support/wait.ts";

const dir = mkdtempSync(path.join(tmpdir(), "scoped-step-h2-"));
execFileSync("openssl", [
  "req",
  "-x509",
  "-newkey",
  "ec",
  "-pkeyopt",
  "ec_paramgen_curve:P-256",
  "-nodes",
  "-keyout",
  path.join(dir, "key.pem"),
  "-out",
  path.join(dir, "cert.pem"),
  "-days",
  "1",
  "-subj",
  "/CN=localhost",
  "-addext",
  "subjectAltName=DNS:localhost,IP:127.0.0.1",
]);
const key = readFileSync(path.join(dir, "key.pem"));
const cert = readFileSync(path.join(dir, "cert.pem"));
const secureContext = createSecureContext({ ca: cert });

type Handler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, n: number) => void;

async function h2Server(handle: Handler) {
  const server = http2.createSecureServer({ key, cert });
  let streams = 0;
  let sessions = 0;
  let closedSessions = 0;
  server.on("session", (s) => {
    sessions++;
    s.on("close", () => closedSessions++);
  });
  server.on("stream", (stream, headers) => {
    // A stream this server resets reports the reset as an error here too.
    stream.on("error", () => undefined);
    handle(stream, headers, ++streams);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    counts: () => ({ streams, sessions, closedSessions }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const answer = (stream: http2.ServerHttp2Stream, body: unknown, status = 200) => {
  stream.respond({ ":status": status, "content-type": "application/json" });
  stream.end(JSON.stringify(body));
};

/** A kubeconfig file naming the server, trusting the test's certificate, with a bearer token. */
function kubeconfigFor(server: string): string {
  const file = path.join(dir, `kubeconfig-${new URL(server).port}`);
  writeFileSync(
    file,
    JSON.stringify({
      "current-context": "c",
      contexts: [{ name: "c", context: { cluster: "c", user: "u" } }],
      clusters: [{ name: "c", cluster: { server, "certificate-authority-data": cert.toString("base64") } }],
      users: [{ name: "u", user: { token: "secret-token" } }],
    }),
  );
  return file;
}

test("many requests at once share one session, each answered with its own body", async (t) => {
  const server = await h2Server((stream, headers) =>
    answer(stream, { path: headers[":path"], method: headers[":method"], auth: headers.authorization }),
  );
  t.after(() => server.close());
  const h2 = http2Requests(server.origin, { secureContext, timeoutMs: 5000 });
  t.after(() => h2.close());
  const answers = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      h2.send("GET", `/obj/${i}`, { authorization: "Bearer t" }, undefined),
    ),
  );
  answers.forEach((a, i) => {
    assert.equal(a?.status, 200);
    assert.deepEqual(JSON.parse(a?.text ?? ""), { path: `/obj/${i}`, method: "GET", auth: "Bearer t" });
  });
  assert.deepEqual(server.counts(), { streams: 20, sessions: 1, closedSessions: 0 });
});

test("a body is sent with the request, and an error status comes back as it is", async (t) => {
  const server = await h2Server((stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () =>
      answer(stream, { got: Buffer.concat(chunks).toString(), type: headers["content-type"] }, 409),
    );
  });
  t.after(() => server.close());
  const h2 = http2Requests(server.origin, { secureContext, timeoutMs: 5000 });
  t.after(() => h2.close());
  const a = await h2.send("POST", "/x", { "content-type": "application/json" }, Buffer.from('{"a":1}'));
  assert.equal(a?.status, 409);
  assert.deepEqual(JSON.parse(a?.text ?? ""), { got: '{"a":1}', type: "application/json" });
});

test("after the server's GOAWAY the next request opens a new session", async (t) => {
  const server = await h2Server((stream, _h, n) => {
    answer(stream, { n });
    if (n === 1) stream.session?.goaway();
  });
  t.after(() => server.close());
  const h2 = http2Requests(server.origin, { secureContext, timeoutMs: 5000 });
  t.after(() => h2.close());
  assert.equal((await h2.send("GET", "/a", {}, undefined))?.status, 200);
  // Whether the GOAWAY arrives before this request is sent or after (the server then refuses its
  // stream), it is answered on a new session.
  assert.equal((await h2.send("GET", "/b", {}, undefined))?.status, 200);
  assert.equal(server.counts().sessions, 2);
});

test("a stream the server refused unprocessed is sent once more; a stream reset after it is not", async (t) => {
  const server = await h2Server((stream, headers, n) => {
    if (headers[":path"] === "/refused" && n === 1) stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    else if (headers[":path"] === "/reset") stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    else answer(stream, { n });
  });
  t.after(() => server.close());
  const h2 = http2Requests(server.origin, { secureContext, timeoutMs: 5000 });
  t.after(() => h2.close());
  const retried = await h2.send("POST", "/refused", {}, Buffer.from("{}"));
  assert.deepEqual(JSON.parse(retried?.text ?? ""), { n: 2 });
  await assert.rejects(h2.send("POST", "/reset", {}, Buffer.from("{}")));
  assert.equal(server.counts().streams, 3, "the reset POST was sent once");
});

test("a request the server never answers times out", async (t) => {
  const server = await h2Server(() => undefined);
  t.after(() => server.close());
  const h2 = http2Requests(server.origin, { secureContext, timeoutMs: 200 });
  t.after(() => h2.close());
  await assert.rejects(h2.send("GET", "/slow?watch=0", {}, undefined), /GET \/slow: timed out/);
});

test("a session idle for idleMs is closed, and the next request opens another", async (t) => {
  const server = await h2Server((stream) => answer(stream, {}));
  t.after(() => server.close());
  const h2 = http2Requests(server.origin, { secureContext, timeoutMs: 5000, idleMs: 100 });
  t.after(() => h2.close());
  await h2.send("GET", "/a", {}, undefined);
  await eventually("the idle session to close", () =>
    Promise.resolve(server.counts().closedSessions === 1 || undefined),
  );
  await h2.send("GET", "/b", {}, undefined);
  assert.equal(server.counts().sessions, 2);
});

test("an API server that speaks only HTTP/1.1 is reached over HTTP/1.1, and HTTP/2 is not tried again", async (t) => {
  let requests = 0;
  const server = https.createServer({ key, cert }, (req, res) => {
    requests++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ version: req.httpVersion, auth: req.headers.authorization }));
  });
  let handshakes = 0;
  let refusedHttp2 = 0;
  server.on("secureConnection", () => handshakes++);
  server.on("tlsClientError", () => refusedHttp2++);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const kubeconfig = kubeconfigFor(`https://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const kube = await loadKube(kubeconfig);
  for (let i = 0; i < 3; i++)
    assert.deepEqual(await kube.request("GET", "/api/v1/namespaces/default"), {
      version: "1.1",
      auth: "Bearer secret-token",
    });
  assert.equal(requests, 3);
  assert.equal(refusedHttp2, 1, "HTTP/2 was offered once");
  assert.equal(handshakes, 1, "one HTTP/1.1 connection, reused");
});

test("the API client sends its requests over HTTP/2 to a server that speaks it", async (t) => {
  const server = await h2Server((stream, headers) =>
    headers[":path"]?.includes("missing")
      ? answer(stream, { kind: "Status", message: 'namespaces "missing" not found' }, 404)
      : answer(stream, { auth: headers.authorization, accept: headers.accept }),
  );
  t.after(() => server.close());
  const kubeconfig = kubeconfigFor(server.origin);
  const kube = await loadKube(kubeconfig);
  assert.deepEqual(await kube.request("GET", "/api/v1/namespaces/default"), {
    auth: "Bearer secret-token",
    accept: "application/json",
  });
  await assert.rejects(kube.request("GET", "/api/v1/namespaces/missing"), {
    name: "KubeError",
    statusCode: 404,
    message: 'GET /api/v1/namespaces/missing: HTTP 404: namespaces "missing" not found',
  });
  assert.equal(server.counts().sessions, 1);
});
