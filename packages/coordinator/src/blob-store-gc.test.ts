import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blobPath } from "@dce/runtime/blob-layout";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "./blob-store.js";

// What the garbage collector relies on from the disk store: an index of every blob file
// (rebuilt from the disk at each start, so a crash leaks nothing), tombstones that hide a
// doomed blob at once, deletions that spare bytes stored again, and no temporary file
// that outlives its upload or a restart.

const dirs: string[] = [];
const stores: BlobStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open(root?: string): BlobStore {
  const dir = root ?? mkdtempSync(join(tmpdir(), "dce-blobs-gc-"));
  if (root === undefined) dirs.push(dir);
  const store = new BlobStore({ dir, maxBlobBytes: 1 << 20, maxOpenUploads: 8, uploadIdleMs: 1_000 });
  stores.push(store);
  return store;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const bytesOf = (seed: number, n = 64) => new Uint8Array(n).fill(seed);
const uploadFiles = (s: BlobStore) => readdirSync(join(s.dir, "uploads"));

/** Uploads `data` in one chunk; returns its blob id. */
function upload(s: BlobStore, data: Uint8Array, nowMs = 0): string {
  const up = s.begin(data.byteLength, sha256(data), nowMs);
  if (!up) return sha256(data);
  s.append(up.uploadId, 0, data, nowMs);
  return s.finish(up.uploadId) as string; // one chunk: hashed as it came, so no promise
}

describe("BlobStore for the garbage collector", () => {
  it("lists what it holds with sizes and generations; storing the same bytes again is a new generation", async () => {
    const s = open();
    const a = upload(s, bytesOf(1));
    const b = s.put(bytesOf(2, 128));
    await s.syncPending(); // an inline matrix is stored with the journal's next commit
    expect(s.list().sort((x, y) => x.sizeBytes - y.sizeBytes)).toEqual([
      { blobId: a, sizeBytes: 64, generation: 1 },
      { blobId: b, sizeBytes: 128, generation: 1 },
    ]);
    expect(s.begin(64, a, 0)).toBeUndefined(); // already present
    s.put(bytesOf(2, 128));
    expect(s.list().map((x) => x.generation)).toEqual([2, 2]);
    expect(s.usage()).toEqual({ blobs: 2, bytes: 192 });
  });

  it("a tombstoned blob is absent at once; remove deletes its file", () => {
    const s = open();
    const a = upload(s, bytesOf(1));
    expect(s.tombstone(a)).toBe(true);
    expect(s.tombstone(a)).toBe(false);
    expect(s.sizeOf(a)).toBeUndefined();
    expect(() => s.read(a, 0, 8)).toThrow(/not found/);
    expect(s.list()).toEqual([]);
    expect(existsSync(blobPath(s.dir, a))).toBe(true);
    expect(s.remove(a)).toBe(64);
    expect(existsSync(blobPath(s.dir, a))).toBe(false);
    expect(s.usage()).toEqual({ blobs: 0, bytes: 0 });
    expect(s.remove(a)).toBe(0);
  });

  it("an upload of a tombstoned blob is received in full and revives it: the pending deletion leaves it", () => {
    const s = open();
    const data = bytesOf(4);
    const a = upload(s, data);
    s.tombstone(a);
    const up = s.begin(64, a, 0);
    expect(up).toBeDefined(); // not deduplicated against the doomed copy
    s.append(up?.uploadId ?? "", 0, data, 0);
    expect(s.finish(up?.uploadId ?? "")).toBe(a);
    expect(s.remove(a)).toBe(0);
    expect(new Uint8Array(s.read(a, 0, 64).data)).toEqual(data);
    expect(uploadFiles(s)).toEqual([]);
  });

  it("a result sealed to the bytes of a tombstoned blob revives it", async () => {
    const s = open();
    const data = bytesOf(5);
    const a = s.put(data);
    await s.syncPending();
    s.tombstone(a);
    const src = join(s.dir, "results-copy");
    writeFileSync(src, data);
    s.adopt(src, a, 64, { keepSource: true });
    expect(existsSync(src)).toBe(true);
    expect(s.remove(a)).toBe(0);
    expect(new Uint8Array(s.read(a, 0, 64).data)).toEqual(data);
    expect(uploadFiles(s)).toEqual([]);
  });

  it("a restart lists every blob file again, drops stray files in blobs/ and every upload's temporary file", async () => {
    const s = open();
    const a = upload(s, bytesOf(1));
    const b = s.put(bytesOf(2));
    await s.syncPending();
    // An upload in progress and a file half written when the process was killed.
    const up = s.begin(64, sha256(bytesOf(3)), 0);
    s.append(up?.uploadId ?? "", 0, bytesOf(3, 32), 0);
    writeFileSync(join(s.dir, "uploads", "killed-mid-put"), bytesOf(9, 10));
    const stray = join(s.dir, "blobs", a.slice(0, 2), "not-a-blob");
    writeFileSync(stray, "x");
    mkdirSync(join(s.dir, "blobs", "zz"), { recursive: true });
    expect(uploadFiles(s)).toHaveLength(2);
    const again = open(s.dir);
    expect(new Set(again.list().map((x) => x.blobId))).toEqual(new Set([a, b]));
    expect(again.usage()).toEqual({ blobs: 2, bytes: 128 });
    expect(uploadFiles(again)).toEqual([]);
    expect(existsSync(stray)).toBe(false);
  });

  it("an abandoned upload's file goes once it has been idle for --upload-idle-ms", () => {
    const s = open();
    const up = s.begin(64, sha256(bytesOf(6)), 0);
    s.append(up?.uploadId ?? "", 0, bytesOf(6, 32), 100);
    s.expireIdle(1_100);
    expect(uploadFiles(s)).toHaveLength(1);
    s.expireIdle(1_101);
    expect(uploadFiles(s)).toEqual([]);
    expect(() => s.append(up?.uploadId ?? "", 32, bytesOf(6, 32), 1_200)).toThrow(/upload/);
  });
});
