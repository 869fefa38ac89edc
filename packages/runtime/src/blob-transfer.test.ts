import { createHash } from "node:crypto";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { BlobService } from "@dce/proto";
import { describe, expect, it } from "vitest";
import { createBlobTransfer } from "./blob-transfer.js";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** An in-memory BlobService that records its calls; `tamper` changes what it answers. */
function fakeBlobs(
  tamper: {
    totalBytesDelta?: number;
    storeAs?: string;
    readMaxBytes?: number;
    readDelayMs?: number;
    failReadAt?: number;
    chunkDelayMs?: (offset: number) => number;
    lostChunkAt?: number;
  } = {},
) {
  const blobs = new Map<string, Uint8Array>();
  const reads = { inFlight: 0, maxInFlight: 0 };
  const chunks = { inFlight: 0, maxInFlight: 0, arrived: [] as number[] };
  const uploads = new Map<string, { sha256: string; data: Uint8Array; received: number }>();
  const calls: string[] = [];
  const chunkSizes: number[] = [];
  const transport = createRouterTransport(({ service }) => {
    service(BlobService, {
      beginUpload(req) {
        calls.push("BeginUpload");
        if (blobs.has(req.sha256)) return { alreadyPresent: true };
        const uploadId = `u${uploads.size}`;
        uploads.set(uploadId, { sha256: req.sha256, data: new Uint8Array(Number(req.sizeBytes)), received: 0 });
        return { uploadId, maxChunkBytes: 0 };
      },
      async uploadChunk(req) {
        calls.push("UploadChunk");
        chunkSizes.push(req.data.byteLength);
        chunks.inFlight++;
        chunks.maxInFlight = Math.max(chunks.maxInFlight, chunks.inFlight);
        await new Promise((r) => setTimeout(r, tamper.chunkDelayMs?.(Number(req.offset)) ?? 0));
        chunks.inFlight--;
        const u = uploads.get(req.uploadId);
        if (u === undefined) throw new ConnectError("no such upload", Code.NotFound);
        chunks.arrived.push(Number(req.offset));
        // Answers as the coordinator does: every byte received so far (a chunk can be lost).
        if (Number(req.offset) !== tamper.lostChunkAt) u.data.set(req.data, Number(req.offset));
        u.received += Number(req.offset) === tamper.lostChunkAt ? 0 : req.data.byteLength;
        return { receivedBytes: BigInt(u.received) };
      },
      finishUpload(req) {
        calls.push("FinishUpload");
        const u = uploads.get(req.uploadId);
        if (u === undefined) throw new ConnectError("no such upload", Code.NotFound);
        blobs.set(u.sha256, u.data);
        return { blobId: tamper.storeAs ?? u.sha256 };
      },
      async readBlob(req) {
        calls.push("ReadBlob");
        reads.inFlight++;
        reads.maxInFlight = Math.max(reads.maxInFlight, reads.inFlight);
        await new Promise((r) => setTimeout(r, tamper.readDelayMs ?? 0));
        reads.inFlight--;
        if (tamper.failReadAt !== undefined && Number(req.offset) === tamper.failReadAt)
          throw new ConnectError("disk on fire", Code.Unavailable);
        const blob = blobs.get(req.blobId);
        if (blob === undefined) throw new ConnectError("no such blob", Code.NotFound);
        const from = Number(req.offset);
        const data = blob.subarray(from, from + Math.min(req.maxBytes, tamper.readMaxBytes ?? Number.POSITIVE_INFINITY));
        return { data, totalBytes: BigInt(blob.byteLength + (tamper.totalBytesDelta ?? 0)) };
      },
    });
  });
  return { client: createClient(BlobService, transport), blobs, calls, chunkSizes, reads, chunks };
}

const bytesOf = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);
const callOptions = {};

describe("createBlobTransfer", () => {
  it("uploads in chunks of at most chunkBytes, names the blob by its SHA-256, and sends nothing the second time", async () => {
    const fake = fakeBlobs();
    const transfer = createBlobTransfer(fake.client, { chunkBytes: 1000 });
    const data = bytesOf(2500);
    const id = await transfer.upload(data, { callOptions, useLocalStore: false });
    expect(id).toBe(sha(data));
    expect(fake.chunkSizes).toEqual([1000, 1000, 500]);
    expect(fake.blobs.get(id)).toEqual(data);
    fake.calls.length = 0;
    expect(await transfer.upload(data, { callOptions, useLocalStore: false })).toBe(id);
    expect(fake.calls).toEqual(["BeginUpload"]);
  });

  it("reads a range in chunks, and a whole blob checked against its id", async () => {
    const fake = fakeBlobs();
    const data = bytesOf(3000);
    fake.blobs.set(sha(data), data);
    const transfer = createBlobTransfer(fake.client, { chunkBytes: () => 700 });
    const part = new Uint8Array(1500);
    await transfer.readRange(sha(data), 1000, part, 3000, { callOptions });
    expect(part).toEqual(data.subarray(1000, 2500));
    expect(fake.calls.filter((c) => c === "ReadBlob")).toHaveLength(3);
    const whole = new Uint8Array(3000);
    await transfer.readBlob(sha(data), whole, { callOptions });
    expect(whole).toEqual(data);
  });

  it("keeps 4 ReadBlob calls in flight, fills every byte even when answers come short, and stops asking after a failure", async () => {
    const fake = fakeBlobs({ readDelayMs: 5, readMaxBytes: 300 });
    const data = bytesOf(10_000);
    fake.blobs.set(sha(data), data);
    const transfer = createBlobTransfer(fake.client, { chunkBytes: 700 });
    const whole = new Uint8Array(10_000);
    await transfer.readBlob(sha(data), whole, { callOptions });
    expect(whole).toEqual(data);
    expect(fake.reads.maxInFlight).toBe(4);
    // 15 slots of 700 bytes, each answered in 300 + 300 + 100 (the last 200: 200).
    expect(fake.calls.filter((c) => c === "ReadBlob")).toHaveLength(14 * 3 + 1);

    const failing = fakeBlobs({ readDelayMs: 5, failReadAt: 1400 });
    failing.blobs.set(sha(data), data);
    const t2 = createBlobTransfer(failing.client, { chunkBytes: 700 });
    await expect(t2.readRange(sha(data), 0, new Uint8Array(10_000), 10_000, { callOptions })).rejects.toThrow("disk on fire");
    await new Promise((r) => setTimeout(r, 50));
    // The window's other calls finish, and no new one starts after the failure.
    expect(failing.calls.filter((c) => c === "ReadBlob").length).toBeLessThan(8);
  });

  it("keeps 4 UploadChunk calls in flight over all uploads, and the blob is whole when their answers come out of order", async () => {
    // Every third chunk is slow: its answer comes after later chunks' answers.
    const fake = fakeBlobs({ chunkDelayMs: (offset) => (offset % 3000 === 0 ? 15 : 2) });
    const transfer = createBlobTransfer(fake.client, { chunkBytes: 1000 });
    const a = bytesOf(12_500);
    const b = bytesOf(9_000).reverse();
    const [idA, idB] = await Promise.all([
      transfer.upload(a, { callOptions, useLocalStore: false }),
      transfer.upload(b, { callOptions, useLocalStore: false }),
    ]);
    expect(fake.blobs.get(idA)).toEqual(a);
    expect(fake.blobs.get(idB)).toEqual(b);
    expect(fake.chunks.maxInFlight).toBe(4);
    expect(fake.chunks.arrived).not.toEqual([...fake.chunks.arrived].sort((x, y) => x - y));
  });

  it("refuses an upload whose answers never count every byte", async () => {
    const fake = fakeBlobs({ lostChunkAt: 2000 });
    const transfer = createBlobTransfer(fake.client, { chunkBytes: 1000 });
    const err = await transfer.upload(bytesOf(5000), { callOptions, useLocalStore: false }).catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.DataLoss);
    expect((err as ConnectError).message).toMatch(/coordinator has 4000 bytes after every chunk of 5000 was sent/);
    expect(fake.calls).not.toContain("FinishUpload");
  });

  it("shares its 4 ReadBlob calls in flight between reads, the read asked for first served first", async () => {
    const fake = fakeBlobs({ readDelayMs: 3 });
    const data = bytesOf(7000);
    fake.blobs.set(sha(data), data);
    const transfer = createBlobTransfer(fake.client, { chunkBytes: 700 });
    const finished: string[] = [];
    const read = (name: string) =>
      transfer.readBlob(sha(data), new Uint8Array(7000), { callOptions }).then(() => finished.push(name));
    await Promise.all([read("first"), read("second"), read("third")]);
    expect(fake.reads.maxInFlight).toBe(4);
    expect(finished).toEqual(["first", "second", "third"]);
  });

  it("runs every RPC through the caller's wrapper", async () => {
    const fake = fakeBlobs();
    const transfer = createBlobTransfer(fake.client, { chunkBytes: 1000 });
    const seen: string[] = [];
    const call = <T>(name: string, rpc: () => Promise<T>) => {
      seen.push(name);
      return rpc();
    };
    const data = bytesOf(1500);
    await transfer.upload(data, { callOptions, call, useLocalStore: false });
    await transfer.readBlob(sha(data), new Uint8Array(1500), { callOptions, call });
    expect(seen).toEqual(["BeginUpload", "UploadChunk", "UploadChunk", "FinishUpload", "ReadBlob", "ReadBlob"]);
  });

  it.each([
    ["a blob of another size", { totalBytesDelta: 8 }, "size-mismatch"],
    ["content that does not match its id", {}, "digest-mismatch"],
  ] as const)("reports %s as DataLoss, or as the caller's own error", async (_what, tamper, kind) => {
    const fake = fakeBlobs(tamper);
    const data = bytesOf(100);
    const id = kind === "digest-mismatch" ? "0".repeat(64) : sha(data);
    fake.blobs.set(id, data);
    const transfer = createBlobTransfer(fake.client, { chunkBytes: 1000 });
    const err = await transfer.readBlob(id, new Uint8Array(100), { callOptions }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.DataLoss);
    const dataError = (p: { kind: string }) => new RangeError(p.kind);
    await expect(transfer.readBlob(id, new Uint8Array(100), { callOptions, dataError })).rejects.toThrow(new RangeError(kind));
  });

  it("refuses an upload the coordinator stored under another id", async () => {
    const fake = fakeBlobs({ storeAs: "f".repeat(64) });
    const transfer = createBlobTransfer(fake.client, { chunkBytes: 1000 });
    const err = await transfer.upload(bytesOf(10), { callOptions, useLocalStore: false }).catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.DataLoss);
  });
});
