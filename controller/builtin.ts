// Node's http and https modules as CommonJS gives them. An ES import of node:http evaluates every
// export of the module, among them the lazily loaded WebSocket, EventSource and MessageEvent
// classes, and so loads undici: 13 MiB of resident memory, measured at idle, for a controller that
// uses none of them. process.getBuiltinModule returns the same module without touching those.
import type * as Http from "node:http";
import type * as Https from "node:https";

export const nodeHttp: typeof Http = process.getBuiltinModule("node:http");
export const nodeHttps: typeof Https = process.getBuiltinModule("node:https");
