// API requests over one HTTP/2 session, as client-go sends them: one TLS connection carries every
// request at once, and a request costs a stream rather than a turn on a pooled connection (10 to
// 30 % less CPU per request than HTTP/1.1 keep-alive, bench/transport.ts). The session opens on
// first use, and again after the server ends it (GOAWAY), it fails, or it has been idle a minute.
// A request the server refused unprocessed (REFUSED_STREAM, or cut off by GOAWAY) is sent once
// more, on a new session. A server that does not speak HTTP/2 (a proxy, say) is told apart from one
// that cannot be reached: it turns HTTP/2 off, and every request goes over HTTP/1.1 from then on.
import type * as Http2 from "node:http2";
import type { SecureContext } from "node:tls";

const nodeHttp2: typeof Http2 = process.getBuiltinModule("node:http2");
const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = nodeHttp2.constants;

export interface Answer {
  status: number;
  text: string;
}

export interface Http2Requests {
  /**
   * Sends one request; resolves with the server's answer, or with undefined when it was never sent
   * because the server does not speak HTTP/2 (or could not be reached first): send it over HTTP/1.1.
   */
  send(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
  ): Promise<Answer | undefined>;
  /** False once the server turned HTTP/2 down. */
  readonly available: boolean;
  close(): void;
}

export interface Http2Options {
  secureContext: SecureContext;
  rejectUnauthorized?: boolean;
  servername?: string;
  timeoutMs: number;
  /** A session with no request in flight for this long is closed. Default one minute. */
  idleMs?: number;
}

interface Session {
  session: Http2.ClientHttp2Session;
  /**
   * Streams in flight, and when each must be answered by. The session keeps the process alive only
   * while there are some.
   */
  streams: Map<Http2.ClientHttp2Stream, { deadline: number; timedOut: () => void }>;
  /** When the last stream ended. */
  idleSince: number;
  connected: boolean;
}

/** The server answered the TLS handshake without agreeing to HTTP/2. */
const noHttp2 = (err: unknown) =>
  (err as { code?: string } | undefined)?.code === "ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL";

/** Not sent: retry it, on HTTP/1.1 if HTTP/2 is down, else on a new session. */
class NotSent extends Error {}

export function http2Requests(origin: string, options: Http2Options): Http2Requests {
  let current: Session | undefined;
  let available = true;

  const open = (): Session => {
    if (current && !current.session.closed && !current.session.destroyed) return current;
    const session = nodeHttp2.connect(origin, {
      secureContext: options.secureContext,
      ...(options.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
      ...(options.servername ? { servername: options.servername } : {}),
    });
    const entry: Session = { session, streams: new Map(), idleSince: Date.now(), connected: false };
    // One timer a session for the streams' deadlines and its own idleness, rather than one a
    // stream that every frame pushes back.
    const idleMs = options.idleMs ?? 60_000;
    const timer = setInterval(
      () => {
        const now = Date.now();
        for (const [, { deadline, timedOut }] of entry.streams) if (now >= deadline) timedOut();
        if (entry.streams.size === 0 && now - entry.idleSince >= idleMs) session.close();
      },
      Math.min(1000, options.timeoutMs, idleMs),
    );
    timer.unref();
    const forget = () => {
      if (current === entry) current = undefined;
    };
    session.on("connect", () => {
      entry.connected = true;
      // A server that picks no protocol (rather than refusing ours) is not speaking HTTP/2 either.
      if (session.alpnProtocol !== "h2") {
        available = false;
        session.destroy();
      }
    });
    session.on("error", (err) => {
      if (noHttp2(err)) available = false;
      forget();
    });
    session.on("goaway", forget);
    session.on("close", () => {
      clearInterval(timer);
      forget();
    });
    session.unref();
    current = entry;
    return entry;
  };

  const once = (method: string, path: string, headers: Record<string, string>, body: Buffer | undefined) =>
    new Promise<Answer>((resolve, reject) => {
      const entry = open();
      let stream: Http2.ClientHttp2Stream;
      try {
        stream = entry.session.request(
          { ":method": method, ":path": path, ...headers },
          { endStream: body === undefined },
        );
      } catch (err) {
        // The session is closing (GOAWAY, or just failed): nothing was sent.
        if (current === entry) current = undefined;
        reject(new NotSent(String(err)));
        return;
      }
      let status = 0;
      let ended = false;
      let timedOut = false;
      let failure: Error | undefined;
      const chunks: Buffer[] = [];
      if (entry.streams.size === 0) entry.session.ref();
      entry.streams.set(stream, {
        deadline: Date.now() + options.timeoutMs,
        timedOut: () => {
          timedOut = true;
          stream.close(NGHTTP2_CANCEL);
        },
      });
      stream.on("response", (h) => (status = Number(h[":status"])));
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => (ended = true));
      stream.on("error", (err: Error) => (failure = err));
      // Settled once the stream is closed: an answer read to its end, or why there is none.
      stream.on("close", () => {
        entry.streams.delete(stream);
        if (entry.streams.size === 0) {
          entry.idleSince = Date.now();
          entry.session.unref();
        }
        const code = stream.rstCode ?? 0;
        const request = `${method} ${path.split("?")[0] ?? path}`;
        if (ended && status > 0 && !timedOut && failure === undefined)
          resolve({ status, text: Buffer.concat(chunks).toString("utf8") });
        else if (timedOut) reject(new Error(`${request}: timed out`));
        else if (!entry.connected || code === NGHTTP2_REFUSED_STREAM)
          reject(new NotSent(failure?.message ?? `stream refused (code ${code})`));
        else reject(failure ?? new Error(`${request}: stream closed (code ${code})`));
      });
      stream.end(body);
    });

  return {
    get available() {
      return available;
    },
    async send(method, path, headers, body) {
      for (let attempt = 0; ; attempt++) {
        if (!available) return undefined;
        try {
          return await once(method, path, headers, body);
        } catch (err) {
          if (!(err instanceof NotSent)) throw err;
          // Refused twice, or never reached: the caller sends it over HTTP/1.1, which says why.
          if (attempt > 0 || !available) return undefined;
        }
      }
    },
    close() {
      current?.session.close();
      current = undefined;
    },
  };
}
