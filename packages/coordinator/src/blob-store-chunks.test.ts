import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BlobError, BlobStore } from "./blob-store.js";
import { MAX_HELD_BYTES } from "./upload-progress.js";

const dirs: string[] = [];
const stores: BlobStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open(): BlobStore {
  const root = mkdtempSync(join(tmpdir(), "dce-chunks-"));
  dirs.push(root);
  const store = new BlobStore({ dir: join(root, "data"), maxBlobBytes: 128 << 20, maxOpenUploads: 4, uploadIdleMs: 60_000 });
  stores.push(store);
  return store;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Sends `data` in `chunkBytes` chunks in the order of `order` (chunk indexes); returns the last answer. */
function sendChunks(store: BlobStore, uploadId: string, data: Uint8Array, chunkBytes: number, order: number[]): number {
  let received = 0;
  for (const i of order)
    received = store.append(uploadId, i * chunkBytes, data.subarray(i * chunkBytes, (i + 1) * chunkBytes), 0);
  return received;
}

describe("BlobStore chunks in any order", () => {
  it("stores the blob of the bytes when chunks land out of order and some twice, counting each byte once", async () => {
    const store = open();
    const data = randomBytes(10 * 4096);
    const up = store.begin(data.byteLength, sha256(data), 0);
    if (!up) throw new Error("a new blob");
    expect(sendChunks(store, up.uploadId, data, 4096, [1, 0, 3, 2, 2, 0, 9, 5, 4, 6, 8])).toBe(9 * 4096);
    expect(sendChunks(store, up.uploadId, data, 4096, [7, 7])).toBe(10 * 4096);
    // Hashed as the gaps filled: no promise.
    expect(store.finish(up.uploadId)).toBe(sha256(data));
    expect(readFileSync(store.pathOf(sha256(data))).equals(data)).toBe(true);
  });

  it("refuses to finish with a gap, and a chunk that overlaps received bytes in part", () => {
    const store = open();
    const data = randomBytes(3 * 4096);
    const up = store.begin(data.byteLength, "", 0);
    if (!up) throw new Error("a new blob");
    sendChunks(store, up.uploadId, data, 4096, [0, 2]);
    expect(() => store.append(up.uploadId, 2048, data.subarray(2048, 6144), 0)).toThrow(/overlaps bytes \[0, 4096\)/);
    const e = (() => {
      try {
        store.finish(up.uploadId);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(BlobError);
    expect((e as BlobError).message).toMatch(/upload has 8192 bytes; 12288 were declared/);
    expect(readdirSync(join(store.dir, "uploads"))).toEqual([]);
  });

  it("hashes the file on a digest thread when chunks came too far out of order to be held, and still checks the digest", async () => {
    const store = open();
    const chunkBytes = 4 << 20;
    const chunks = MAX_HELD_BYTES / chunkBytes + 2;
    const data = randomBytes(chunks * chunkBytes);
    const backwards = Array.from({ length: chunks }, (_, i) => chunks - 1 - i);
    const good = store.begin(data.byteLength, sha256(data), 0);
    if (!good) throw new Error("a new blob");
    sendChunks(store, good.uploadId, data, chunkBytes, backwards);
    const finished = store.finish(good.uploadId);
    expect(finished).toBeInstanceOf(Promise);
    await expect(finished).resolves.toBe(sha256(data));
    expect(readFileSync(store.pathOf(sha256(data))).equals(data)).toBe(true);

    const other = randomBytes(data.byteLength);
    const bad = store.begin(
      other.byteLength,
      sha256(data).replace(/^./, (c) => (c === "0" ? "1" : "0")),
      0,
    );
    if (!bad) throw new Error("a new blob");
    sendChunks(store, bad.uploadId, other, chunkBytes, backwards);
    await expect(store.finish(bad.uploadId)).rejects.toThrow(/not the declared sha256/);
    expect(readdirSync(join(store.dir, "uploads"))).toEqual([]);
  });
});
