import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { BlobStore } from "./blob-store.js";
import { DataDirSpace } from "./disk-space.js";
import { DataDirError } from "./storage-errors.js";
import { faults } from "./test-support/disk-faults.js";

vi.mock("node:fs", async (orig) => (await import("./test-support/disk-faults.js")).faultyFs(await orig()));
vi.mock("node:fs/promises", async (orig) => (await import("./test-support/disk-faults.js")).faultyFsPromises(await orig()));

// The blob store on a disk that refuses writes: every refusal is a DataDirError with
// the code the client needs (RESOURCE_EXHAUSTED for a full disk, UNAVAILABLE for a
// failing one), naming the data dir, and nothing half written stays behind.

const dirs: string[] = [];
const stores: BlobStore[] = [];
afterEach(() => {
  faults.clear();
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open(space?: DataDirSpace): BlobStore {
  const root = mkdtempSync(join(tmpdir(), "dce-blobs-disk-"));
  dirs.push(root);
  const store = new BlobStore({
    dir: root,
    maxBlobBytes: 64 << 20,
    maxOpenUploads: 8,
    uploadIdleMs: 60_000,
    ...(space ? { space } : {}),
  });
  stores.push(store);
  return store;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const uploads = (store: BlobStore) => readdirSync(join(store.dir, "uploads"));
const blobFiles = (store: BlobStore) => readdirSync(join(store.dir, "blobs"), { recursive: true });

/** The error `fn` throws, which must be a DataDirError. */
function dataDirErrorOf(fn: () => unknown): DataDirError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DataDirError);
    return e as DataDirError;
  }
  throw new Error("expected a DataDirError, nothing was thrown");
}

describe("BlobStore on a full or failing disk", () => {
  it("a chunk the disk refuses: RESOURCE_EXHAUSTED naming the data dir, the upload and its file are gone", () => {
    const store = open();
    const data = randomBytes(64 * 1024);
    const up = store.begin(data.byteLength, sha256(data), 0);
    if (!up) throw new Error("blob unexpectedly present");
    store.append(up.uploadId, 0, data.subarray(0, 16 * 1024), 0);
    faults.arm({ op: "write", path: /uploads/, code: "ENOSPC", partialBytes: 4096 });
    const e = dataDirErrorOf(() => store.append(up.uploadId, 16 * 1024, data.subarray(16 * 1024, 32 * 1024), 0));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.errno).toBe("ENOSPC");
    expect(e.rawMessage).toContain(`data dir ${store.dir} is full (ENOSPC) while writing upload ${up.uploadId}`);
    expect(e.rawMessage).toMatch(/free/);
    // Half written, so removed: no file, no session, no space held.
    expect(uploads(store)).toEqual([]);
    expect(store.pendingUploadBytes()).toBe(0);
    expect(() => store.append(up.uploadId, 32 * 1024, data.subarray(32 * 1024), 0)).toThrow(/not found/);
    // Once space is back, the same upload begun again goes through.
    faults.clear();
    const again = store.begin(data.byteLength, sha256(data), 0);
    if (!again) throw new Error("blob unexpectedly present");
    store.append(again.uploadId, 0, data, 0);
    expect(store.finish(again.uploadId)).toBe(sha256(data));
  });

  it("an I/O error while storing a finished upload: UNAVAILABLE, and no blob id is handed out", () => {
    const store = open();
    const data = randomBytes(8192);
    const up = store.begin(data.byteLength, sha256(data), 0);
    if (!up) throw new Error("blob unexpectedly present");
    store.append(up.uploadId, 0, data, 0);
    faults.arm({ op: "fsync", path: /uploads/, code: "EIO", times: 1 });
    const e = dataDirErrorOf(() => store.finish(up.uploadId));
    expect(e.code).toBe(Code.Unavailable);
    expect(e.rawMessage).toContain(`data dir ${store.dir} had an I/O error (EIO) while storing upload ${up.uploadId}`);
    expect(uploads(store)).toEqual([]);
    expect(store.sizeOf(sha256(data))).toBeUndefined();
    expect(blobFiles(store)).toEqual([]);
  });

  it("a blob name that cannot be made durable is taken back (rename undone, upload file removed)", () => {
    const store = open();
    const data = randomBytes(8192);
    const up = store.begin(data.byteLength, sha256(data), 0);
    if (!up) throw new Error("blob unexpectedly present");
    store.append(up.uploadId, 0, data, 0);
    // The folder sync after the rename fails: the new name might not survive a crash.
    faults.arm({ op: "fsync", path: /blobs\/[0-9a-f]{2}$/, code: "EIO", times: 1 });
    expect(dataDirErrorOf(() => store.finish(up.uploadId)).code).toBe(Code.Unavailable);
    expect(existsSync(store.pathOf(sha256(data)))).toBe(false);
    expect(store.sizeOf(sha256(data))).toBeUndefined();
    expect(uploads(store)).toEqual([]);
  });

  it("an inline matrix the disk refuses: RESOURCE_EXHAUSTED (EDQUOT), its temporary file removed", () => {
    const store = open();
    const data = randomBytes(4096);
    faults.arm({ op: "write", path: /uploads/, code: "EDQUOT" });
    const e = dataDirErrorOf(() => store.put(data));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.rawMessage).toContain(`data dir ${store.dir} is over its disk quota (EDQUOT) while storing inline matrix`);
    expect(uploads(store)).toEqual([]);
    expect(store.sizeOf(sha256(data))).toBeUndefined();
  });

  it("a local upload whose storing fails: mapped, and its file removed", async () => {
    const store = open();
    const data = randomBytes(8192);
    const up = store.begin(data.byteLength, sha256(data), 0);
    if (!up) throw new Error("blob unexpectedly present");
    writeFileSync(store.uploadPathOf(up.uploadId), data);
    faults.arm({ op: "rename", path: /blobs/, code: "ENOSPC" });
    const e = await store.finishLocal(up.uploadId).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(DataDirError);
    expect((e as DataDirError).code).toBe(Code.ResourceExhausted);
    expect((e as DataDirError).rawMessage).toContain(`while storing upload ${up.uploadId}`);
    expect(uploads(store)).toEqual([]);
    expect(store.sizeOf(sha256(data))).toBeUndefined();
  });

  it("an upload or inline matrix that would leave less than the reserve free is refused before anything is written", async () => {
    let freeBytes = 48 << 20;
    const space = new DataDirSpace("/unused", {
      reserveBytes: 1 << 20,
      minFreeBytes: 0,
      statfs: () => ({ freeBytes, totalBytes: 48 << 20 }),
    });
    const store = open(space);
    space.promise(() => store.pendingUploadBytes());
    const stored = store.put(new Uint8Array(4096).fill(7));
    await store.syncPending();
    freeBytes = 3 << 20;
    const first = store.begin(1 << 20, "a".repeat(64), 0);
    expect(first).toBeDefined();
    // 3 MiB free, 1 MiB promised to the first upload, 1 MiB reserved: 2 MiB does not fit.
    const e = dataDirErrorOf(() => store.begin(2 << 20, "b".repeat(64), 0));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.rawMessage).toBe(
      "data dir /unused is full: an upload of 2097152 bytes needs 2.0 MiB, and 3.0 MiB of 48.0 MiB is free, " +
        "1.0 MiB of it promised to running jobs and uploads and 1.0 MiB kept for the journal; " +
        "free space there (or restart the coordinator with a bigger --data-dir), then retry",
    );
    expect(uploads(store)).toHaveLength(1);
    expect(() => store.put(new Uint8Array(2 << 20).fill(1))).toThrow(
      /an inline matrix of 2097152 bytes \(2\.0 MiB\) would leave less than --min-free-bytes 1\.0 MiB/,
    );
    expect(uploads(store)).toHaveLength(1);
    // What is already stored is never refused.
    freeBytes = 0;
    expect(store.begin(4096, stored, 0)).toBeUndefined();
    expect(store.put(new Uint8Array(4096).fill(7))).toBe(stored);
  });
});
