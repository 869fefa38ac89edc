/**
 * The two calls that carry matrix bytes, UploadChunk and ReadBlob, made straight on an
 * HTTP/2 stream: still unary gRPC on the wire, to the same BlobService, but without
 * Connect's message copies (`@dce/runtime/bulk-calls`, Node.js only).
 *
 * Through the Connect client, a 4 MiB chunk is copied into a protobuf buffer and again
 * into a gRPC envelope before it leaves, and an answer is gathered into an envelope
 * before it is decoded and copied to where it belongs; each copy is a fresh 4 MiB buffer
 * for the garbage collector. Here the request is a small header followed by the caller's
 * own bytes, and the answer's `data` goes from the received frames straight into the
 * caller's target. Everything else (errors with their details, deadlines, the session's
 * keep-alive and reconnects) is the same as through Connect; other calls still go there.
 *
 * @packageDocumentation
 */
import type * as http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { findTrailerError, validateResponse } from "@connectrpc/connect/protocol-grpc";
import type { Http2SessionManager } from "@connectrpc/connect-node";

/** Where bulk calls go: a session manager (the transport's own) and what each call sends. */
export interface BulkChannel {
  readonly manager: Http2SessionManager;
  /** The coordinator's URL, as given to the transport (its path, if any, prefixes the method). */
  readonly baseUrl: string;
  /** Headers every call sends (e.g. `authorization`), asked before each call. */
  readonly headers?: () => Record<string, string>;
}

/** Deadline and cancellation of one call, as Connect's `CallOptions`. */
export interface BulkCallOptions {
  readonly timeoutMs?: number | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** The fields of a ReadBlobRequest. */
export interface BulkReadRequest {
  readonly blobId: string;
  readonly offset?: bigint;
  readonly maxBytes: number;
  readonly strideBytes?: bigint;
  readonly segmentBytes?: number;
  readonly gatheredOffset?: bigint;
}

/**
 * UploadChunk: sends `data` (never copied; do not change it until the promise settles)
 * and returns the answer's `received_bytes`.
 */
export async function bulkUploadChunk(
  ch: BulkChannel,
  req: { readonly uploadId: string; readonly offset: bigint; readonly data: Uint8Array },
  opts: BulkCallOptions,
): Promise<{ receivedBytes: bigint }> {
  const head = new Writer().string(1, req.uploadId).varint(2, req.offset).tagLength(3, req.data.byteLength).done();
  const answer = await unary(ch, "UploadChunk", [head, req.data], opts);
  let receivedBytes = 0n;
  readFields(answer, (field, wire, r) => {
    if (field === 1 && wire === 0) receivedBytes = r.varint();
    else return false;
    return true;
  });
  return { receivedBytes };
}

/**
 * ReadBlob: copies the answer's `data` into `target` from `at` on, when it fits there
 * (else nothing is copied), and returns its length and `total_bytes`.
 */
export async function bulkReadBlob(
  ch: BulkChannel,
  req: BulkReadRequest,
  target: Uint8Array,
  at: number,
  opts: BulkCallOptions,
): Promise<{ dataBytes: number; totalBytes: bigint }> {
  const w = new Writer()
    .string(1, req.blobId)
    .varint(2, req.offset ?? 0n)
    .varint(3, BigInt(req.maxBytes));
  w.varint(4, req.strideBytes ?? 0n)
    .varint(5, BigInt(req.segmentBytes ?? 0))
    .varint(6, req.gatheredOffset ?? 0n);
  const answer = await unary(ch, "ReadBlob", [w.done()], opts);
  let dataBytes = 0;
  let totalBytes = 0n;
  readFields(answer, (field, wire, r) => {
    if (field === 1 && wire === 2) {
      const length = Number(r.varint());
      // Data that does not fit is left out; the caller sees its length and refuses it.
      if (length <= target.byteLength - at) r.copyTo(target, at, length);
      else r.skip(length);
      dataBytes = length;
    } else if (field === 2 && wire === 0) totalBytes = r.varint();
    else return false;
    return true;
  });
  return { dataBytes, totalBytes };
}

/** Frames of one answer, read in place. */
type Answer = readonly Buffer[];

/**
 * One unary gRPC call of BlobService `method` with the request `parts` (one protobuf
 * message, back to back); returns the frames of the answer's message, its 5-byte
 * envelope header skipped. Errors are ConnectErrors, as Connect's client raises them.
 */
async function unary(ch: BulkChannel, method: string, parts: Uint8Array[], opts: BulkCallOptions): Promise<Answer> {
  const length = parts.reduce((n, p) => n + p.byteLength, 0);
  const envelope = Buffer.allocUnsafe(5);
  envelope.writeUInt8(0, 0);
  envelope.writeUInt32BE(length, 1);
  const url = new URL(ch.baseUrl);
  const path = `${url.pathname.replace(/\/$/, "")}/dce.v1.BlobService/${method}`;
  const headers: Record<string, string> = {
    ...ch.headers?.(),
    "content-type": "application/grpc+proto",
    te: "trailers",
    ...(opts.timeoutMs !== undefined && opts.timeoutMs > 0 ? { "grpc-timeout": `${Math.ceil(opts.timeoutMs)}m` } : {}),
  };
  opts.signal?.throwIfAborted();
  let stream: http2.ClientHttp2Stream;
  try {
    stream = await ch.manager.request("POST", path, headers, {});
  } catch (e) {
    throw ConnectError.from(e, Code.Unavailable);
  }
  return await new Promise<Answer>((resolve, reject) => {
    const frames: Buffer[] = [];
    let headerError: ConnectError | undefined;
    let foundStatus = false;
    let gotTrailers = false;
    let settled = false;
    const finish = (error: unknown, answer?: Answer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      if (error !== undefined) {
        if (!stream.closed) stream.close(0x8); // NGHTTP2_CANCEL
        reject(error);
      } else resolve(answer ?? []);
    };
    const onAbort = () => finish(new ConnectError("the call was canceled", Code.Canceled));
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const timer =
      opts.timeoutMs !== undefined && opts.timeoutMs > 0
        ? setTimeout(() => finish(new ConnectError("the deadline passed", Code.DeadlineExceeded)), opts.timeoutMs)
        : undefined;
    stream.on("response", (h) => {
      try {
        const r = validateResponse(Number(h[":status"]), toHeaders(h));
        foundStatus = r.foundStatus;
        headerError = r.headerError;
      } catch (e) {
        finish(e);
      }
    });
    stream.on("data", (chunk: Buffer) => {
      ch.manager.notifyResponseByteRead(stream);
      frames.push(chunk);
    });
    stream.on("trailers", (t) => {
      gotTrailers = true;
      const error = findTrailerError(toHeaders(t));
      if (error !== undefined) finish(error);
    });
    stream.on("error", (e) => finish(ConnectError.from(e, Code.Unavailable)));
    stream.on("close", () => {
      if (headerError !== undefined) return finish(headerError);
      if (!foundStatus && !gotTrailers) {
        const why = stream.rstCode !== 0 ? `was reset (HTTP/2 code ${stream.rstCode})` : "ended without a status";
        return finish(new ConnectError(`the ${method} stream ${why}`, Code.Unavailable));
      }
      try {
        finish(undefined, unwrapEnvelope(frames));
      } catch (e) {
        finish(e);
      }
    });
    stream.write(envelope);
    for (const [i, part] of parts.entries()) {
      if (i === parts.length - 1) stream.end(part);
      else stream.write(part);
    }
  });
}

function toHeaders(h: http2.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(":") || v === undefined) continue;
    out.set(k, Array.isArray(v) ? v.join(", ") : v);
  }
  return out;
}

/** The frames of the one message in `frames`, past its envelope header; an answer without one is an error. */
function unwrapEnvelope(frames: Buffer[]): Answer {
  const r = new FrameReader(frames);
  if (r.remaining < 5) throw new ConnectError("the answer holds no message", Code.Internal);
  const flags = r.byte();
  const length = ((r.byte() << 24) >>> 0) + (r.byte() << 16) + (r.byte() << 8) + r.byte();
  if (flags !== 0) throw new ConnectError(`unexpected message flags ${flags} (compression is not used)`, Code.Internal);
  if (r.remaining !== length) {
    throw new ConnectError(`the answer holds ${r.remaining} bytes after its header, which says ${length}`, Code.Internal);
  }
  return r.rest();
}

/**
 * Walks the fields of a protobuf message: `onField` reads a field it knows and returns
 * true, or returns false and the field is skipped.
 */
function readFields(answer: Answer, onField: (field: number, wire: number, r: FrameReader) => boolean): void {
  const r = new FrameReader([...answer]);
  while (r.remaining > 0) {
    const tag = Number(r.varint());
    const field = tag >>> 3;
    const wire = tag & 7;
    if (onField(field, wire, r)) continue;
    if (wire === 0) r.varint();
    else if (wire === 2) r.skip(Number(r.varint()));
    else if (wire === 1) r.skip(8);
    else if (wire === 5) r.skip(4);
    else throw new ConnectError(`unexpected protobuf wire type ${wire}`, Code.Internal);
  }
}

/** Reads bytes across a list of frames without joining them. */
class FrameReader {
  #i = 0;
  #pos = 0;
  remaining: number;
  constructor(private readonly frames: Buffer[]) {
    this.remaining = frames.reduce((n, f) => n + f.byteLength, 0);
  }
  byte(): number {
    if (this.remaining < 1) throw truncated();
    for (;;) {
      const f = this.frames[this.#i] as Buffer;
      if (this.#pos < f.byteLength) {
        this.remaining--;
        return f[this.#pos++] as number;
      }
      this.#i++;
      this.#pos = 0;
    }
  }
  varint(): bigint {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      const b = this.byte();
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
    throw new ConnectError("a protobuf varint is too long", Code.Internal);
  }
  copyTo(target: Uint8Array | undefined, at: number, length: number): void {
    if (this.remaining < length) throw truncated();
    for (let done = 0; done < length; ) {
      const f = this.frames[this.#i] as Buffer;
      const n = Math.min(f.byteLength - this.#pos, length - done);
      target?.set(f.subarray(this.#pos, this.#pos + n), at + done);
      done += n;
      this.#pos += n;
      if (this.#pos === f.byteLength) {
        this.#i++;
        this.#pos = 0;
      }
    }
    this.remaining -= length;
  }
  skip(length: number): void {
    this.copyTo(undefined, 0, length);
  }
  /** The frames from here on. */
  rest(): Buffer[] {
    const first = this.frames[this.#i];
    if (first === undefined) return [];
    return [first.subarray(this.#pos), ...this.frames.slice(this.#i + 1)];
  }
}

const truncated = () => new ConnectError("the answer's message ends early", Code.Internal);

/** Encodes the few small fields of a request. */
class Writer {
  readonly #bytes: number[] = [];
  #raw(v: bigint): void {
    let x = v;
    while (x >= 0x80n) {
      this.#bytes.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.#bytes.push(Number(x));
  }
  varint(field: number, v: bigint): this {
    if (v === 0n) return this; // proto3 leaves defaults out
    this.#raw(BigInt(field << 3));
    this.#raw(v);
    return this;
  }
  string(field: number, s: string): this {
    const utf8 = Buffer.from(s, "utf8");
    if (utf8.byteLength === 0) return this;
    this.tagLength(field, utf8.byteLength);
    for (const b of utf8) this.#bytes.push(b);
    return this;
  }
  /** The tag and length of a length-delimited field whose bytes follow separately. */
  tagLength(field: number, length: number): this {
    this.#raw(BigInt((field << 3) | 2));
    this.#raw(BigInt(length));
    return this;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.#bytes);
  }
}
