import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BlobError, BlobStore } from "./blob-store.js";

// Local uploads: a peer on the coordinator's host writes an upload's bytes straight into
// the upload file (uploadPathOf) and finishes with finishLocal. The store checks size and
// SHA-256 as it does for chunks; a refused upload leaves no file behind.

const dirs: string[] = [];
const stores: BlobStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open(dir?: string): BlobStore {
  const root = dir ?? join(mkdtempSync(join(tmpdir(), "dce-blobs-")), "data");
  if (dir === undefined) dirs.push(join(root, ".."));
  const store = new BlobStore({ dir: root, maxBlobBytes: 64 << 20, maxOpenUploads: 8, uploadIdleMs: 60_000 });
  stores.push(store);
  return store;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const uploads = (store: BlobStore) => readdirSync(join(store.dir, "uploads"));

/** Expects `p` to reject with a BlobError of `kind` whose message matches `message`. */
async function expectBlobError(p: Promise<unknown>, kind: BlobError["kind"], message: RegExp): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BlobError);
  expect((e as BlobError).kind).toBe(kind);
  expect((e as BlobError).message).toMatch(message);
}

/** Begins an upload of `data`, which the store must not hold yet. */
function beginNew(store: BlobStore, data: Uint8Array): { uploadId: string } {
  const begun = store.begin(data.byteLength, sha256(data), 0);
  if (begun === undefined) throw new Error("blob unexpectedly present");
  return begun;
}

describe("BlobStore.finishLocal", () => {
  it("adopts bytes written into the upload file: the blob reads back and the upload is gone", async () => {
    const store = open();
    // Larger than finishLocal's 8 MiB read buffer, so the hash is fed in several reads.
    const data = randomBytes(9 * 1024 * 1024 + 8);
    const id = sha256(data);
    const begun = beginNew(store, data);
    const path = store.uploadPathOf(begun.uploadId);
    expect(path).toBe(join(store.dir, "uploads", begun.uploadId));
    expect(existsSync(path)).toBe(true); // created by begin, for the peer to write
    writeFileSync(path, data);

    await expect(store.finishLocal(begun.uploadId)).resolves.toBe(id);
    expect(store.sizeOf(id)).toBe(data.byteLength);
    expect(readFileSync(store.pathOf(id)).equals(data)).toBe(true);
    const part = store.read(id, 1024, 4096);
    expect(part.totalBytes).toBe(data.byteLength);
    expect(Buffer.from(part.data).equals(data.subarray(1024, 1024 + 4096))).toBe(true);
    expect(uploads(store)).toEqual([]);
    // The session is over: neither chunks nor a second finish are taken.
    expect(() => store.append(begun.uploadId, 0, new Uint8Array(8), 0)).toThrow(/not found/);
    await expectBlobError(store.finishLocal(begun.uploadId), "not-found", /not found/);
    // A later upload of the same content is recognised as present.
    expect(store.begin(data.byteLength, id, 0)).toBeUndefined();
  });

  it("adopts two local uploads of the same content begun side by side as one blob", async () => {
    const store = open();
    const data = randomBytes(4096);
    const id = sha256(data);
    const first = store.begin(data.byteLength, id, 0);
    const second = store.begin(data.byteLength, id, 0);
    if (first === undefined || second === undefined) throw new Error("blob unexpectedly present");
    writeFileSync(store.uploadPathOf(first.uploadId), data);
    writeFileSync(store.uploadPathOf(second.uploadId), data);
    await expect(store.finishLocal(first.uploadId)).resolves.toBe(id);
    await expect(store.finishLocal(second.uploadId)).resolves.toBe(id);
    expect(readFileSync(store.pathOf(id)).equals(data)).toBe(true);
    expect(uploads(store)).toEqual([]);
  });

  it.each([
    ["short", (d: Buffer) => d.subarray(0, d.byteLength - 8), /the locally written upload has 4088 bytes; 4096 were declared/],
    ["long", (d: Buffer) => Buffer.concat([d, Buffer.alloc(8)]), /has 4104 bytes; 4096 were declared/],
    ["empty (never written)", undefined, /has 0 bytes; 4096 were declared/],
  ] as const)("refuses a %s file as invalid and removes it", async (_name, write, message) => {
    const store = open();
    const data = randomBytes(4096);
    const id = sha256(data);
    const begun = beginNew(store, data);
    const path = store.uploadPathOf(begun.uploadId);
    if (write) writeFileSync(path, write(data));
    await expectBlobError(store.finishLocal(begun.uploadId), "invalid", message);
    expect(existsSync(path)).toBe(false);
    expect(uploads(store)).toEqual([]);
    expect(store.sizeOf(id)).toBeUndefined();
    // The upload is over; the same content can be uploaded again from the start.
    await expectBlobError(store.finishLocal(begun.uploadId), "not-found", /not found/);
    const again = beginNew(store, data);
    writeFileSync(store.uploadPathOf(again.uploadId), data);
    await expect(store.finishLocal(again.uploadId)).resolves.toBe(id);
  });

  it("refuses bytes of the right size whose hash is not the declared one, and removes them", async () => {
    const store = open();
    const data = randomBytes(4096);
    const id = sha256(data);
    const begun = beginNew(store, data);
    const path = store.uploadPathOf(begun.uploadId);
    const wrong = Buffer.from(data);
    wrong[100] = (wrong[100] ?? 0) ^ 1;
    writeFileSync(path, wrong);
    await expectBlobError(
      store.finishLocal(begun.uploadId),
      "invalid",
      new RegExp(`upload bytes hash to ${sha256(wrong)}, not the declared sha256 ${id}`),
    );
    expect(existsSync(path)).toBe(false);
    expect(uploads(store)).toEqual([]);
    expect(store.sizeOf(id)).toBeUndefined();
    expect(store.sizeOf(sha256(wrong))).toBeUndefined();
    expect(existsSync(store.pathOf(sha256(wrong)))).toBe(false);
  });

  it("refuses a local finish after chunks, and the upload can still be finished with its chunks", async () => {
    const store = open();
    const data = randomBytes(4096);
    const id = sha256(data);
    const begun = beginNew(store, data);
    store.append(begun.uploadId, 0, data.subarray(0, 1024), 0);
    await expectBlobError(
      store.finishLocal(begun.uploadId),
      "invalid",
      /already has 1024 bytes in chunks; it cannot also be written locally/,
    );
    expect(store.sizeOf(id)).toBeUndefined();
    // The refusal changed nothing: the chunked upload goes on and completes as usual
    // (an abandoned one is removed by expireIdle or close, like any other).
    expect(store.append(begun.uploadId, 1024, data.subarray(1024), 0)).toBe(4096);
    expect(store.finish(begun.uploadId)).toBe(id);
    expect(readFileSync(store.pathOf(id)).equals(data)).toBe(true);
    expect(uploads(store)).toEqual([]);
  });

  it("a chunk that arrives while a local finish is checking is refused", async () => {
    const store = open();
    const data = randomBytes(4096);
    const id = sha256(data);
    const begun = beginNew(store, data);
    writeFileSync(store.uploadPathOf(begun.uploadId), data);
    const finishing = store.finishLocal(begun.uploadId);
    expect(() => store.append(begun.uploadId, 0, data.subarray(0, 8), 0)).toThrow(/not found/);
    expect(() => store.finish(begun.uploadId)).toThrow(/not found/);
    await expect(finishing).resolves.toBe(id);
  });

  it("answers not-found for an unknown upload id", async () => {
    const store = open();
    await expectBlobError(store.finishLocal("no-such-upload"), "not-found", /upload no-such-upload not found/);
    expect(() => store.uploadPathOf("no-such-upload")).toThrow(BlobError);
  });
});

describe("BlobStore.storeId", () => {
  it("is created once, durably, and survives reopening the same directory", () => {
    const first = open();
    expect(first.storeId).toMatch(/^[0-9a-f]{32}$/);
    expect(readFileSync(join(first.dir, "store-id"), "utf8")).toBe(`${first.storeId}\n`);
    expect(existsSync(join(first.dir, "store-id.tmp"))).toBe(false);
    first.close();
    const reopened = open(first.dir);
    expect(reopened.storeId).toBe(first.storeId);
    expect(reopened.dir).toBe(first.dir);
    // Another directory is another store.
    expect(open().storeId).not.toBe(first.storeId);
  });

  it("replaces a store-id file that does not hold an id", () => {
    const first = open();
    first.close();
    writeFileSync(join(first.dir, "store-id"), "not an id\n");
    const reopened = open(first.dir);
    expect(reopened.storeId).toMatch(/^[0-9a-f]{32}$/);
    expect(reopened.storeId).not.toBe(first.storeId);
    expect(readFileSync(join(first.dir, "store-id"), "utf8")).toBe(`${reopened.storeId}\n`);
  });

  it("is absolute, and a data dir it creates is closed to group and others", () => {
    const root = mkdtempSync(join(tmpdir(), "dce-blobs-"));
    dirs.push(root);
    const absolute = join(root, "new", "data");
    const store = new BlobStore({
      dir: relative(process.cwd(), absolute),
      maxBlobBytes: 1 << 20,
      maxOpenUploads: 1,
      uploadIdleMs: 1,
    });
    stores.push(store);
    expect(store.dir).toBe(absolute);
    expect(readFileSync(join(absolute, "store-id"), "utf8")).toBe(`${store.storeId}\n`);
    expect(statSync(absolute).mode & 0o077).toBe(0);
  });
});
