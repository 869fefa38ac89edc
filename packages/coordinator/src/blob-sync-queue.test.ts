import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blobPath } from "@dce/runtime/blob-layout";
import { afterEach, describe, expect, it } from "vitest";
import { BlobStore } from "./blob-store.js";

// Blobs whose durability waits for the journal's next commit (BlobStore.syncPending,
// run by the journal before it writes a batch): inline matrices and sealed results.

const dirs: string[] = [];
const stores: BlobStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open(dir?: string): BlobStore {
  const root = dir ?? join(mkdtempSync(join(tmpdir(), "dce-blob-sync-")), "data");
  if (dir === undefined) dirs.push(join(root, ".."));
  const store = new BlobStore({ dir: root, maxBlobBytes: 64 << 20, maxOpenUploads: 8, uploadIdleMs: 60_000 });
  stores.push(store);
  return store;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("BlobStore inline matrix (put)", () => {
  it("is readable at once, named and listed only after syncPending", async () => {
    const store = open();
    const data = randomBytes(4096);
    const id = store.put(data);
    expect(id).toBe(sha256(data));
    expect(store.sizeOf(id)).toBe(4096);
    expect(Buffer.from(store.read(id, 0, 4096).data).equals(data)).toBe(true);
    // Not under its name yet, and not a stored blob for the collector.
    expect(existsSync(blobPath(store.dir, id))).toBe(false);
    expect(store.list().map((b) => b.blobId)).not.toContain(id);
    await store.syncPending();
    expect(existsSync(blobPath(store.dir, id))).toBe(true);
    expect(store.pathOf(id)).toBe(blobPath(store.dir, id));
    expect(store.list().map((b) => b.blobId)).toContain(id);
    expect(readdirSync(join(store.dir, "uploads"))).toEqual([]);
  });

  it("is gone after a restart that came before the sync (nothing had been promised)", () => {
    const store = open();
    const id = store.put(randomBytes(1024));
    const again = open(join(store.dir));
    expect(again.sizeOf(id)).toBeUndefined();
    expect(existsSync(blobPath(store.dir, id))).toBe(false);
  });

  it("is not 'already stored' to an upload until it is durable", async () => {
    const store = open();
    const data = randomBytes(2048);
    const id = store.put(data);
    // The client's upload goes ahead and stores its own durable copy...
    const begun = store.begin(data.byteLength, id, 0);
    expect(begun).toBeDefined();
    store.append(begun?.uploadId ?? "", 0, data, 0);
    expect(store.finish(begun?.uploadId ?? "")).toBe(id);
    // ...and the inline copy, synced later, keeps it.
    await store.syncPending();
    expect(store.sizeOf(id)).toBe(2048);
    expect(readdirSync(join(store.dir, "uploads"))).toEqual([]);
    expect(store.begin(data.byteLength, id, 0)).toBeUndefined();
  });

  it("stored twice before the sync is one pending blob", async () => {
    const store = open();
    const data = randomBytes(512);
    const id = store.put(data);
    expect(store.put(data)).toBe(id);
    expect(readdirSync(join(store.dir, "uploads"))).toHaveLength(1);
    await store.syncPending();
    expect(store.sizeOf(id)).toBe(512);
  });
});

describe("BlobStore.adopt with deferSync (a sealed result)", () => {
  it("links the name at once and counts the blob as stored after syncPending", async () => {
    const store = open();
    const data = randomBytes(800);
    const src = join(store.dir, "..", "result.f64");
    writeFileSync(src, data);
    const id = sha256(data);
    store.adopt(src, id, data.byteLength, { keepSource: true, deferSync: true });
    expect(existsSync(blobPath(store.dir, id))).toBe(true);
    expect(store.list().map((b) => b.blobId)).not.toContain(id);
    // An upload of the same bytes is not told "already stored" before the sync.
    expect(store.begin(data.byteLength, id, 0)).toBeDefined();
    await store.syncPending();
    expect(store.list().map((b) => b.blobId)).toContain(id);
    expect(store.begin(data.byteLength, id, 0)).toBeUndefined();
  });

  it("stays readable while the commit's sync of its folder is under way", async () => {
    const store = open();
    const data = randomBytes(640);
    const src = join(store.dir, "..", "result.f64");
    writeFileSync(src, data);
    const id = sha256(data);
    store.adopt(src, id, data.byteLength, { keepSource: true, deferSync: true });
    const syncing = store.syncPending();
    // The folder's fsync has not finished: the job may already be reported succeeded.
    expect(store.sizeOf(id)).toBe(640);
    expect(Buffer.from(store.read(id, 0, 640).data).equals(data)).toBe(true);
    await syncing;
    expect(store.sizeOf(id)).toBe(640);
  });
});
