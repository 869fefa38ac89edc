import * as http2 from "node:http2";
import type { ClientCredentials } from "../../support/cluster.js";

/** What the coordinator answered to one hand-made request. */
export interface RawAnswer {
  /** HTTP status, 0 if the stream was reset before any response. */
  readonly http: number;
  /** gRPC status from the trailers (or a trailers-only response), if any. */
  readonly grpcStatus?: number;
  /** Connect-protocol error code name (`invalid_argument`), if the answer was a Connect error. */
  readonly connectCode?: string;
  /** RST_STREAM code when the stream was reset. */
  readonly reset?: number;
  /** True when no answer came within the time limit. */
  readonly timedOut?: boolean;
  /** The status message: `grpc-message` decoded, a Connect error's `message`, or the start of the body. */
  readonly message: string;
}

/** Opens an HTTP/2 session to `url` with the harness's credentials. */
export function connectRaw(url: string, creds: ClientCredentials): http2.ClientHttp2Session {
  const session = http2.connect(url, {
    ca: creds.ca,
    ...(creds.cert && creds.key ? { cert: creds.cert, key: creds.key } : {}),
    // Room for many large bodies in flight (see fuzzTransport in rpc-fuzz.test.ts).
    maxSessionMemory: 1024,
  });
  // The server may end a session that floods it with garbage (GOAWAY, e.g. ENHANCE_YOUR_CALM):
  // that is a legitimate answer, seen by the caller as a closed session and reconnected.
  session.on("error", () => {});
  return session;
}

/** gRPC length-prefixed message: flags, 4-byte big-endian length, payload. */
export function envelope(payload: Uint8Array, opts: { flags?: number; declaredLength?: number } = {}): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(opts.flags ?? 0, 0);
  head.writeUInt32BE(opts.declaredLength ?? payload.byteLength, 1);
  return Buffer.concat([head, payload]);
}

/**
 * Sends one POST with `headers` and `body` on `session` and reads the answer (at most
 * 64 KiB of body are kept). Never throws: a reset or a timeout is part of the answer.
 */
export function rawCall(
  session: http2.ClientHttp2Session,
  path: string,
  headers: Record<string, string>,
  body: Uint8Array,
  timeoutMs: number,
): Promise<RawAnswer> {
  return new Promise((resolve) => {
    let http = 0;
    let grpcStatus: number | undefined;
    let grpcMessage = "";
    let contentType = "";
    const chunks: Buffer[] = [];
    let kept = 0;
    let settled = false;
    const finish = (extra: Partial<RawAnswer> = {}) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("utf8");
      let connectCode: string | undefined;
      let connectMessage: string | undefined;
      if (contentType.startsWith("application/json") && http !== 200) {
        try {
          const parsed = JSON.parse(text) as { code?: unknown; message?: unknown };
          if (typeof parsed.code === "string") connectCode = parsed.code;
          if (typeof parsed.message === "string") connectMessage = parsed.message;
        } catch {
          // not a Connect error body
        }
      }
      resolve({
        http,
        ...(grpcStatus !== undefined ? { grpcStatus } : {}),
        ...(connectCode !== undefined ? { connectCode } : {}),
        message: grpcMessage || (connectMessage ?? text.slice(0, 200)),
        ...extra,
      });
    };
    let req: http2.ClientHttp2Stream;
    try {
      req = session.request({ ":method": "POST", ":path": path, ...headers });
    } catch (e) {
      resolve({ http: 0, message: `request not sent: ${(e as Error).message}`, reset: -1 });
      return;
    }
    const timer = setTimeout(() => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      finish({ timedOut: true });
    }, timeoutMs);
    const readStatus = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) grpcStatus = Number(h["grpc-status"]);
      if (typeof h["grpc-message"] === "string") grpcMessage = decodeURIComponent(h["grpc-message"]);
    };
    // The answer is complete at its trailers (or a trailers-only response) or at the end of its body;
    // the server may answer before it has read the whole request, so "close" may never come by itself.
    const answered = () => {
      finish();
      if (!req.closed) req.close(http2.constants.NGHTTP2_CANCEL);
    };
    req.on("response", (h, flags) => {
      http = Number(h[":status"] ?? 0);
      contentType = String(h["content-type"] ?? "");
      readStatus(h);
      if (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) answered();
    });
    req.on("trailers", (h) => {
      readStatus(h);
      answered();
    });
    req.on("end", answered);
    req.on("data", (d: Buffer) => {
      if (kept < 65_536) {
        chunks.push(d);
        kept += d.length;
      }
    });
    req.on("error", () => {});
    req.on("close", () => finish(req.rstCode && req.rstCode !== 0 ? { reset: req.rstCode } : {}));
    req.end(body);
  });
}
