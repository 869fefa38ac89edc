import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { BlobService } from "@dce/proto";
import { afterEach, describe, expect, it } from "vitest";
import { createBlobTransfer } from "./blob-transfer.js";
import type { LocalStoreAccess } from "./local-store.js";
import { readFileStrided } from "./local-store.js";
import { columnPanelView, type StridedView } from "./strided-view.js";

// readStrided: a column panel of B by strided ReadBlob chunks (only the panel's bytes
// cross the wire) or from the local store's file, with readRange's data checks.

const [k, n] = [17, 13];
const blob = Uint8Array.from({ length: k * n * 8 }, (_, i) => (i * 31 + 7) & 0xff);
const blobId = "c".repeat(64);

/** Columns [c0, c1) of the k×n float64 matrix in `blob`, as bytes. */
function panelBytes(c0: number, c1: number): Uint8Array {
  const out = new Uint8Array(k * (c1 - c0) * 8);
  for (let r = 0; r < k; r++) out.set(blob.subarray((r * n + c0) * 8, (r * n + c1) * 8), r * (c1 - c0) * 8);
  return out;
}

/** A BlobService answering strided reads naively; counts the bytes it sends. */
function stridedBlobs(tamper: { totalBytesDelta?: number; emptyAt?: number } = {}) {
  const sent = { bytes: 0, calls: 0, plain: 0 };
  const transport = createRouterTransport(({ service }) => {
    service(BlobService, {
      readBlob(req) {
        sent.calls++;
        if (req.segmentBytes === 0) {
          sent.plain++;
          throw new ConnectError("this fake serves strided reads only", Code.Unimplemented);
        }
        const gathered: number[] = [];
        const [seg, stride] = [req.segmentBytes, Number(req.strideBytes)];
        for (let at = Number(req.offset); at + seg <= blob.byteLength; at += stride)
          gathered.push(...blob.subarray(at, at + seg));
        const from = Number(req.gatheredOffset);
        const data = Uint8Array.from(gathered.slice(from, from === tamper.emptyAt ? from : from + req.maxBytes));
        sent.bytes += data.byteLength;
        return { data, totalBytes: BigInt(gathered.length + (tamper.totalBytesDelta ?? 0)) };
      },
    });
  });
  return { client: createClient(BlobService, transport), sent };
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function blobFile(bytes: Uint8Array = blob): string {
  const dir = mkdtempSync(join(tmpdir(), "dce-strided-"));
  dirs.push(dir);
  const path = join(dir, "blob");
  writeFileSync(path, bytes);
  return path;
}

const callOptions = {};

describe("BlobTransfer.readStrided", () => {
  it.each([
    [0, 1, 1],
    [5, 6, 3],
    [2, 11, 64],
    [0, 13, 100_000],
  ])("reads columns [%i, %i) in chunks of %i bytes, and only their bytes cross the wire", async (c0, c1, chunkBytes) => {
    const fake = stridedBlobs();
    const transfer = createBlobTransfer(fake.client, { chunkBytes });
    const target = new Uint8Array(new SharedArrayBuffer(k * (c1 - c0) * 8));
    await transfer.readStrided(blobId, columnPanelView(n, c0, c1), target, blob.byteLength, { callOptions });
    expect(target).toEqual(panelBytes(c0, c1));
    expect(fake.sent.bytes).toBe(target.byteLength);
    expect(fake.sent.calls).toBe(Math.ceil(target.byteLength / chunkBytes));
  });

  it("reads a panel from the local store's file, without an RPC", async () => {
    const fake = stridedBlobs();
    const path = blobFile();
    const localStore: LocalStoreAccess = { dir: "/unused", storeId: "s", blobPath: () => path };
    const transfer = createBlobTransfer(fake.client, { chunkBytes: 64 });
    const target = new Uint8Array(k * 4 * 8);
    await transfer.readStrided(blobId, columnPanelView(n, 9, 13), target, blob.byteLength, { callOptions, localStore });
    expect(target).toEqual(panelBytes(9, 13));
    expect(fake.sent.calls).toBe(0);
  });

  it("falls back to ReadBlob when the local file is unreadable, and says why", async () => {
    const fake = stridedBlobs();
    const localStore: LocalStoreAccess = { dir: "/unused", storeId: "s", blobPath: () => join(tmpdir(), "dce-no-such-blob") };
    const errors: unknown[] = [];
    const transfer = createBlobTransfer(fake.client, { chunkBytes: 64 });
    const target = new Uint8Array(k * 8);
    const onLocalStoreError = (e: unknown) => errors.push(e);
    await transfer.readStrided(blobId, columnPanelView(n, 3, 4), target, blob.byteLength, {
      callOptions,
      localStore,
      onLocalStoreError,
    });
    expect(target).toEqual(panelBytes(3, 4));
    expect(errors).toHaveLength(1);
  });

  it.each([
    [
      "a view of another length (the blob's size differs)",
      { totalBytesDelta: 8 },
      "size-mismatch",
      /a strided view of blob c+ has 144 bytes, expected 136/,
    ],
    ["an empty chunk", { emptyAt: 40 }, "bad-chunk", /ReadBlob returned 0 bytes at gathered offset 40 of a strided view/],
  ] as const)("reports %s as DataLoss, or as the caller's own error", async (_what, tamper, kind, message) => {
    const transfer = createBlobTransfer(stridedBlobs(tamper).client, { chunkBytes: 40 });
    const read = (o: object) =>
      transfer.readStrided(blobId, columnPanelView(n, 0, 1), new Uint8Array(k * 8), blob.byteLength, { callOptions, ...o });
    const err = await read({}).catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.DataLoss);
    expect((err as ConnectError).rawMessage).toMatch(message);
    const dataError = (p: { kind: string }) => new RangeError(p.kind);
    await expect(read({ dataError })).rejects.toThrow(new RangeError(kind));
  });

  it.each<[string, StridedView, number]>([
    ["a view past the blob", { offsetBytes: k * n * 8, strideBytes: 8, segmentBytes: 8 }, 8],
    ["a stride under a segment", { offsetBytes: 0, strideBytes: 4, segmentBytes: 8 }, 8],
    ["a target longer than the view", columnPanelView(n, 0, 1), k * 8 + 8],
  ])("refuses %s before any RPC", async (_what, view, targetBytes) => {
    const fake = stridedBlobs();
    const transfer = createBlobTransfer(fake.client, { chunkBytes: 64 });
    await expect(
      transfer.readStrided(blobId, view, new Uint8Array(targetBytes), blob.byteLength, { callOptions }),
    ).rejects.toThrow(RangeError);
    expect(fake.sent.calls).toBe(0);
  });
});

describe("readFileStrided", () => {
  it.each([0, 8, 1 << 20])("gathers the same bytes whatever gaps it merges (max gap %i)", async (maxGapBytes) => {
    const path = blobFile();
    for (const [c0, c1] of [
      [0, 1],
      [4, 9],
      [12, 13],
      [0, 13],
    ] as const) {
      const target = new Uint8Array(k * (c1 - c0) * 8);
      await readFileStrided(path, columnPanelView(n, c0, c1), target, blob.byteLength, maxGapBytes);
      expect(target).toEqual(panelBytes(c0, c1));
    }
  });

  it("throws when the file is not the expected size or ends early", async () => {
    const path = blobFile(blob.subarray(0, 100));
    await expect(readFileStrided(path, columnPanelView(n, 0, 1), new Uint8Array(8), blob.byteLength)).rejects.toThrow(
      `${path} holds 100 bytes, expected ${blob.byteLength}`,
    );
  });
});
