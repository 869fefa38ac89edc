/**
 * The coordinator's Node request handler for its Connect routes: `connectNodeAdapter`
 * from connect-node, except that every RPC gets an answer.
 *
 * connect-node's adapter leaves two holes, both found by test/fuzz (issue 12):
 * - an error thrown while building the request (`contextValues`, or an HTTP/1.0
 *   request without a Host header) escapes the request listener: the uncaught
 *   exception ended the coordinator;
 * - when writing a status fails (a parse error of a gRPC+JSON request that quotes a lone
 *   surrogate cannot go into `grpc-message`), it logs and never ends the response:
 *   the call stays open until the client's deadline.
 * Here both end the call at once with INTERNAL and a fixed message (with the
 * `INTERNAL` ErrorInfo), and log the cause. Errors of interceptors and handlers never
 * get this far: `error-boundary.ts` makes their messages safe to send and gives them
 * an ErrorInfo. The statuses connect-es sets itself before any interceptor runs (a gRPC
 * body that does not parse, a message over the size limit, compression) get theirs
 * here, by code (`FALLBACK_REASON_OF_CODE`), for gRPC; Connect and gRPC-web answers of
 * that kind are sent as connect-es made them.
 *
 * @module
 */
import * as http2 from "node:http2";
import { Code, ConnectError, type ConnectRouterOptions, createConnectRouter } from "@connectrpc/connect";
import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import { errorToJson } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import {
  type ConnectNodeAdapterOptions,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import { ErrorReason } from "@dce/proto";
import type { Logger } from "pino";
import { INTERNAL_MESSAGE } from "./error-boundary.js";
import { dceError, FALLBACK_REASON_OF_CODE, withErrorInfo } from "./errors.js";
import { wellFormedJsonDecoder } from "./well-formed-json.js";

/** A Node request listener, HTTP/1.1 or HTTP/2 (connect-node's `NodeHandlerFn`). */
export type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
type NodeRequest = Parameters<NodeHandler>[0];
type NodeResponse = Parameters<NodeHandler>[1];

/** Options of {@link createRpcHandler}: those of `connectNodeAdapter` (without a path prefix) and a logger. */
export interface RpcHandlerOptions extends Omit<ConnectNodeAdapterOptions, "requestPathPrefix"> {
  /** Where a call that failed outside the handlers is logged, with its cause. */
  readonly logger: Logger;
}

/**
 * Creates the request listener that serves `options.routes` and hands every other path
 * to `options.fallback` (404 without one). Compression defaults to none accepted. JSON
 * requests are decoded by `wellFormedJsonDecoder`, so no lone surrogate gets in.
 */
export function createRpcHandler(options: RpcHandlerOptions): NodeHandler {
  const router = createConnectRouter({
    ...options,
    acceptCompression: options.acceptCompression ?? [],
    // connect-es's JSON codec reads `textDecoder` from these options (createJsonSerialization), though
    // the router's type does not list it; test/integration/unanswered-calls.test.ts pins that it is used.
    jsonOptions: { ...options.jsonOptions, textDecoder: wellFormedJsonDecoder } as NonNullable<
      ConnectRouterOptions["jsonOptions"]
    >,
  });
  options.routes(router);
  const paths = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const fallback: NodeHandler =
    options.fallback ??
    ((_req, res) => {
      res.writeHead(404);
      res.end();
    });
  return (req, res) => {
    const handler = paths.get(req.url?.split("?", 2)[0] ?? "");
    if (!handler) {
      fallback(req, res);
      return;
    }
    const method = `${handler.service.typeName}/${handler.method.name}`;
    const unanswered = (e: unknown) => {
      // A client that went away (stream reset, connection closed) needs no answer.
      const code = ConnectError.from(e).code;
      if (code !== Code.Aborted && code !== Code.Canceled) {
        options.logger.error({ err: e, method }, "RPC failed outside the handlers; answered INTERNAL");
      }
      endWithInternal(req, res);
    };
    try {
      const uReq = universalRequestFromNodeRequest(req, res, undefined, options.contextValues?.(req));
      handler(uReq)
        .then((uRes) => universalResponseToNodeResponse(withGrpcErrorInfo(uRes), res))
        .catch(unanswered);
    } catch (e) {
      unanswered(e);
    }
  };
}

/**
 * `uRes` with an ErrorInfo added to its gRPC error trailer when it has none, once its
 * body has been sent (the trailer is final only then). Other responses are unchanged.
 */
function withGrpcErrorInfo(uRes: UniversalServerResponse): UniversalServerResponse {
  const { trailer, body } = uRes;
  if (trailer === undefined) return uRes;
  if (body === undefined || body instanceof Uint8Array) {
    addGrpcErrorInfo(trailer);
    return uRes;
  }
  async function* thenAddErrorInfo() {
    yield* body as AsyncIterable<Uint8Array>;
    addGrpcErrorInfo(trailer as Headers);
  }
  return { ...uRes, body: thenAddErrorInfo() };
}

/** Adds `grpc-status-details-bin` with the fallback ErrorInfo of its code to an error trailer without one. */
function addGrpcErrorInfo(trailer: Headers): void {
  const status = trailer.get("grpc-status");
  if (status === null || status === "0" || trailer.has("grpc-status-details-bin")) return;
  const code = Number(status);
  if (!(code in FALLBACK_REASON_OF_CODE)) return;
  let message = "";
  try {
    message = decodeURIComponent(trailer.get("grpc-message") ?? "");
  } catch {
    // A message that does not decode is sent as it is; the detail repeats none of it.
  }
  const withDetail = setTrailerStatus(new Headers(), withErrorInfo(new ConnectError(message, code as Code)));
  const details = withDetail.get("grpc-status-details-bin");
  if (details !== null) trailer.set("grpc-status-details-bin", details);
}

/** The INTERNAL error a call that failed outside the handlers is answered with. */
const internalError = () => dceError(Code.Internal, ErrorReason.INTERNAL, INTERNAL_MESSAGE);

/**
 * Ends a call that has no status yet with INTERNAL, in the protocol the request spoke:
 * a gRPC or gRPC-web trailers-only response, or a Connect error. If the response has
 * already begun, the stream is reset (INTERNAL_ERROR; clients read INTERNAL).
 */
function endWithInternal(req: NodeRequest, res: NodeResponse): void {
  try {
    if (res.writableEnded || res.destroyed) return;
    if (res.headersSent) {
      if ("stream" in res) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      else res.destroy();
      return;
    }
    const contentType = String(req.headers["content-type"] ?? "");
    if (contentType.startsWith("application/grpc")) {
      const status = setTrailerStatus(new Headers(), internalError());
      res.writeHead(200, {
        "content-type": contentType.split(";")[0] ?? "application/grpc",
        ...Object.fromEntries(status),
      });
      res.end();
    } else if (contentType.startsWith("application/connect+")) {
      // A Connect streaming call ends with an end-stream message (flag 2) holding the error.
      const json = Buffer.from(JSON.stringify({ error: errorToJson(internalError(), undefined) }));
      const head = Buffer.from([2, 0, 0, 0, 0]);
      head.writeUInt32BE(json.byteLength, 1);
      res.writeHead(200, { "content-type": contentType.split(";")[0] ?? "application/connect+json" });
      res.end(Buffer.concat([head, json]));
    } else {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify(errorToJson(internalError(), undefined)));
    }
  } catch {
    // The response cannot be written any more: drop the stream rather than leave it open.
    res.destroy();
  }
}
