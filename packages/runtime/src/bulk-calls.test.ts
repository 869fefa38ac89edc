import { createHash } from "node:crypto";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { BlobService, ErrorInfoSchema, ErrorReason } from "@dce/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBlobTransfer } from "./blob-transfer.js";
import { bulkReadBlob } from "./bulk-calls.js";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const bytesOf = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

/** A real gRPC server (HTTP/2 without TLS) with a BlobService over memory, served by Connect. */
const blobs = new Map<string, Uint8Array>();
const uploads = new Map<string, { data: Uint8Array; received: number }>();
const seenHeaders: string[] = [];
let server: http2.Http2Server;
const sessions = new Set<http2.ServerHttp2Session>();
let baseUrl = "";

beforeAll(async () => {
  const handler = connectNodeAdapter({
    grpc: true,
    connect: false,
    grpcWeb: false,
    routes: (router) =>
      router.service(BlobService, {
        beginUpload(req) {
          const uploadId = `u${uploads.size}`;
          uploads.set(uploadId, { data: new Uint8Array(Number(req.sizeBytes)), received: 0 });
          return { uploadId };
        },
        uploadChunk(req, ctx) {
          seenHeaders.push(ctx.requestHeader.get("authorization") ?? "");
          const u = uploads.get(req.uploadId);
          if (u === undefined) throw new ConnectError("no such upload", Code.NotFound);
          u.data.set(req.data, Number(req.offset));
          u.received += req.data.byteLength;
          return { receivedBytes: BigInt(u.received) };
        },
        finishUpload(req) {
          const u = uploads.get(req.uploadId);
          if (u === undefined) throw new ConnectError("no such upload", Code.NotFound);
          blobs.set(sha(u.data), u.data);
          return { blobId: sha(u.data) };
        },
        async readBlob(req, ctx) {
          if (req.blobId === "slow") await new Promise((r) => setTimeout(r, 2_000));
          const blob = blobs.get(req.blobId);
          if (blob === undefined) {
            const info = create(ErrorInfoSchema, { reason: ErrorReason.BLOB_NOT_FOUND });
            throw new ConnectError("blob not found", Code.NotFound, undefined, [{ desc: ErrorInfoSchema, value: info }]);
          }
          if (ctx.signal.aborted) throw new ConnectError("gone", Code.Canceled);
          if (req.segmentBytes > 0) {
            // One segment per answer is enough to prove the fields arrive.
            const at = Number(req.offset) + Number(req.gatheredOffset / BigInt(req.segmentBytes)) * Number(req.strideBytes);
            const skip = Number(req.gatheredOffset % BigInt(req.segmentBytes));
            const n = Math.min(req.maxBytes, req.segmentBytes - skip);
            const rows = Math.ceil(blob.byteLength / Number(req.strideBytes));
            return { data: blob.subarray(at + skip, at + skip + n), totalBytes: BigInt(rows * req.segmentBytes) };
          }
          const from = Number(req.offset);
          return { data: blob.subarray(from, from + req.maxBytes), totalBytes: BigInt(blob.byteLength) };
        },
      }),
  });
  server = http2.createServer(handler);
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  const closed = new Promise<void>((r) => server.close(() => r()));
  for (const session of sessions) session.destroy();
  await closed;
});

function clients() {
  const manager = new Http2SessionManager(baseUrl);
  const connect = createClient(BlobService, createGrpcTransport({ baseUrl }));
  const bulk = { manager, baseUrl, headers: () => ({ authorization: "Bearer t" }) };
  return { connect, bulk, close: () => manager.abort() };
}

describe("bulk calls", () => {
  it("upload, read and strided read a blob byte for byte, the calls carrying the channel's headers", async () => {
    const c = clients();
    try {
      const transfer = createBlobTransfer(c.connect, { chunkBytes: 16_000, bulk: c.bulk });
      const data = bytesOf(120_000);
      const id = await transfer.upload(data, { callOptions: { timeoutMs: 10_000 }, useLocalStore: false });
      expect(id).toBe(sha(data));
      expect(blobs.get(id)).toEqual(data);
      expect(seenHeaders.length).toBe(8);
      expect(new Set(seenHeaders)).toEqual(new Set(["Bearer t"]));
      const whole = new Uint8Array(data.byteLength);
      await transfer.readBlob(id, whole, { callOptions: {} });
      expect(whole).toEqual(data);
      // Columns [2, 5) of a 1000-byte-wide matrix of bytes: 120 rows of 3 bytes.
      const view = { offsetBytes: 2, strideBytes: 1000, segmentBytes: 3 };
      const panel = new Uint8Array(120 * 3);
      await transfer.readStrided(id, view, panel, 120_000, { callOptions: {} });
      const expected = Array.from({ length: 120 }, (_, r) => [...data.subarray(r * 1000 + 2, r * 1000 + 5)]).flat();
      expect([...panel]).toEqual(expected);
    } finally {
      c.close();
    }
  });

  it("raise the server's error as Connect does, with its code and details", async () => {
    const c = clients();
    try {
      const err = await bulkReadBlob(c.bulk, { blobId: "nope", maxBytes: 10 }, new Uint8Array(10), 0, {}).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.NotFound);
      expect((err as ConnectError).rawMessage).toBe("blob not found");
      expect((err as ConnectError).findDetails(ErrorInfoSchema)[0]?.reason).toBe(ErrorReason.BLOB_NOT_FOUND);
    } finally {
      c.close();
    }
  });

  it("end a call at its deadline or when its signal aborts, and leave nothing in the target past its end", async () => {
    const c = clients();
    try {
      const t0 = Date.now();
      const late = await bulkReadBlob(c.bulk, { blobId: "slow", maxBytes: 10 }, new Uint8Array(10), 0, { timeoutMs: 100 }).catch(
        (e: unknown) => e,
      );
      expect((late as ConnectError).code).toBe(Code.DeadlineExceeded);
      expect(Date.now() - t0).toBeLessThan(1_500);
      const aborted = await bulkReadBlob(c.bulk, { blobId: "slow", maxBytes: 10 }, new Uint8Array(10), 0, {
        signal: AbortSignal.timeout(50),
      }).catch((e: unknown) => e);
      expect((aborted as ConnectError).code).toBe(Code.Canceled);

      const data = bytesOf(1000, 9);
      blobs.set(sha(data), data);
      const target = new Uint8Array(1000);
      // A view shorter than the answer: the length is reported and nothing is written.
      const r = await bulkReadBlob(c.bulk, { blobId: sha(data), maxBytes: 1000 }, target.subarray(0, 500), 0, {});
      expect(r).toEqual({ dataBytes: 1000, totalBytes: 1000n });
      expect(target.every((b) => b === 0)).toBe(true);
    } finally {
      c.close();
    }
  });
});
