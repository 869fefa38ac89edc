import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import type { Dashboard } from "./dashboard.js";
import type { CoordinatorMetrics } from "./metrics.js";

type FallbackHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
/** An HTTP request reaching the coordinator outside gRPC (HTTP/1.1 or HTTP/2). */
export type OpsRequest = Parameters<FallbackHandler>[0];
type OpsResponse = Parameters<FallbackHandler>[1];

/**
 * Which group of plain-HTTP endpoints a request is for; see {@link OpsGuard}. `ui` is
 * the dashboard's static page, script and style; `ui-data` its JSON model.
 */
export type OpsEndpoint = "ui" | "ui-data" | "metrics" | "healthz";

/** A refusal from an {@link OpsGuard}: 401 (no valid credential) or 403 (not allowed), with why. */
export interface OpsDenial {
  readonly status: 401 | 403;
  readonly message: string;
}

/**
 * Decides whether a plain-HTTP request may proceed: the hook for access control
 * (e.g. an admin role for `metrics`). Return false to answer 403, or an
 * {@link OpsDenial} to choose the status and message. It may inspect headers or the
 * TLS peer (`req.socket`). Throwing answers 500.
 */
export type OpsGuard = (endpoint: OpsEndpoint, req: OpsRequest) => boolean | OpsDenial | Promise<boolean | OpsDenial>;

/** Options of {@link createOpsHttpHandler}. */
export interface OpsHttpOptions {
  /** Serves `GET /metrics` when set. */
  metrics?: CoordinatorMetrics;
  /** Serves `GET /ui` and `GET /ui/api/state` when set. */
  dashboard?: Dashboard;
  /** True while the coordinator takes work: `/healthz` answers 200 "ok", else 503 "draining". */
  isServing(): boolean;
  /** Access control for the endpoints; default: everything allowed. */
  guard?: OpsGuard;
  /** Folder holding the dashboard's static files. Default: the package's `ui/` ({@link DEFAULT_UI_DIR}). */
  uiDir?: string | URL;
  logger?: Logger;
}

/** The static files of the dashboard, with their content types. */
const UI_FILES: Readonly<Record<string, { file: string; type: string }>> = {
  "/ui": { file: "index.html", type: "text/html; charset=utf-8" },
  "/ui/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/ui/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/ui/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};

// The page loads only its own script and style, and fetches only its own API.
const UI_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** Default folder of the dashboard files: `ui/` at the package root (next to `src/` and `dist/`). */
export const DEFAULT_UI_DIR = new URL("../../ui/", import.meta.url);

/**
 * Creates the handler for every request that is not a gRPC method: pass it as
 * `fallback` to `createRpcHandler` (`rpc-handler.ts`). It serves
 *
 * - `GET /healthz`: 200 "ok" while serving, 503 "draining" once draining;
 * - `GET /metrics`: the Prometheus text format (when `metrics` is set);
 * - `GET /ui`, `/ui/app.js`, `/ui/style.css`: the read-only live dashboard, and
 *   `GET /ui/api/state[?job=ID]`: its JSON model (when `dashboard` is set).
 *
 * Anything else gets 404; a method other than GET or HEAD gets 405.
 */
export function createOpsHttpHandler(o: OpsHttpOptions): FallbackHandler {
  const uiDir =
    o.uiDir === undefined ? DEFAULT_UI_DIR : o.uiDir instanceof URL ? o.uiDir : pathToFileURL(o.uiDir.replace(/\/?$/, "/"));
  // Read once, on first use: the files ship with the package and do not change under a running server.
  const cache = new Map<string, Buffer>();
  const asset = (file: string): Buffer => {
    let data = cache.get(file);
    if (!data) {
      data = readFileSync(new URL(file, uiDir));
      cache.set(file, data);
    }
    return data;
  };

  const send = (res: OpsResponse, status: number, body: string | Buffer, headers: Record<string, string>, head: boolean) => {
    const buf = typeof body === "string" ? Buffer.from(body) : body;
    res.writeHead(status, { ...headers, "content-length": String(buf.byteLength) });
    if (head) res.end();
    else res.end(buf);
  };
  const text = { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" };

  const route = async (req: OpsRequest, res: OpsResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://coordinator");
    const path = url.pathname;
    const endpoint: OpsEndpoint | undefined =
      path === "/healthz"
        ? "healthz"
        : path === "/metrics" && o.metrics
          ? "metrics"
          : path === "/ui/api/state" && o.dashboard
            ? "ui-data"
            : (path === "/ui" || path.startsWith("/ui/")) && o.dashboard
              ? "ui"
              : undefined;
    if (!endpoint) {
      send(res, 404, "not found\n", text, false);
      return;
    }
    const head = req.method === "HEAD";
    if (req.method !== "GET" && !head) {
      send(res, 405, "method not allowed\n", { ...text, allow: "GET, HEAD" }, false);
      return;
    }
    const verdict = o.guard ? await o.guard(endpoint, req) : true;
    if (verdict !== true) {
      const denial = verdict === false ? { status: 403, message: "forbidden" } : verdict;
      // A 401 names the scheme; browsers and Prometheus send `authorization: Bearer <token>`.
      const challenge: Record<string, string> = denial.status === 401 ? { "www-authenticate": 'Bearer realm="dce"' } : {};
      send(res, denial.status, `${denial.message}\n`, { ...text, ...challenge }, head);
      return;
    }
    if (endpoint === "healthz") {
      const serving = o.isServing();
      send(res, serving ? 200 : 503, serving ? "ok\n" : "draining\n", text, head);
      return;
    }
    if (endpoint === "metrics" && o.metrics) {
      const body = await o.metrics.scrape();
      send(res, 200, body, { "content-type": o.metrics.contentType, "cache-control": "no-store" }, head);
      return;
    }
    if ((endpoint === "ui" || endpoint === "ui-data") && o.dashboard) {
      if (endpoint === "ui-data") {
        const job = url.searchParams.get("job") ?? undefined;
        const body = JSON.stringify(o.dashboard.snapshot(job));
        send(
          res,
          200,
          body,
          { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", ...UI_HEADERS },
          head,
        );
        return;
      }
      const file = UI_FILES[path];
      if (!file) {
        send(res, 404, "not found\n", text, false);
        return;
      }
      send(res, 200, asset(file.file), { "content-type": file.type, "cache-control": "no-cache", ...UI_HEADERS }, head);
    }
  };

  return (req, res) => {
    route(req, res).catch((e: unknown) => {
      o.logger?.error({ err: e, path: req.url }, "ops endpoint failed");
      if (!res.headersSent) send(res, 500, "internal error\n", text, false);
      else res.end();
    });
  };
}
