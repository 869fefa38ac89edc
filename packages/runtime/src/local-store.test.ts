import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { create } from "@bufbuild/protobuf";
import { BeginUploadResponseSchema, LocalStoreSchema } from "@dce/proto";
import { afterEach, describe, expect, it } from "vitest";
import { accessLocalStore, readFileRange, writeUploadLocally, writeWholeFile } from "./local-store.js";

// The local store is only used when `<dir>/store-id` proves the directory is the
// coordinator's; everything else (another host's namesake, a relative path, a missing
// field) must answer "not here" so that the caller keeps using the RPCs.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "dce-local-store-"));
  dirs.push(d);
  return d;
}

/** A store directory as the coordinator lays it out, with a fresh random id. */
function storeDir(): { dir: string; storeId: string } {
  const dir = tempDir();
  const storeId = randomBytes(16).toString("hex");
  writeFileSync(join(dir, "store-id"), `${storeId}\n`);
  return { dir, storeId };
}

const offer = (dir: string, storeId: string) => create(LocalStoreSchema, { dir, storeId });
const BLOB_ID = "ab".repeat(32);

describe("accessLocalStore", () => {
  it("gives access when <dir>/store-id holds the offered id", () => {
    const { dir, storeId } = storeDir();
    const access = accessLocalStore(offer(dir, storeId));
    expect(access).toBeDefined();
    expect(access?.dir).toBe(dir);
    expect(access?.storeId).toBe(storeId);
    expect(access?.blobPath(BLOB_ID)).toBe(join(dir, "blobs", "ab", BLOB_ID));
  });

  it("is undefined for a directory whose store-id differs (a namesake elsewhere)", () => {
    const { dir } = storeDir();
    expect(accessLocalStore(offer(dir, randomBytes(16).toString("hex")))).toBeUndefined();
  });

  it("is undefined for a missing directory, a directory without store-id, and a store-id that is a directory", () => {
    const storeId = randomBytes(16).toString("hex");
    expect(accessLocalStore(offer(join(tempDir(), "gone"), storeId))).toBeUndefined();
    expect(accessLocalStore(offer(tempDir(), storeId))).toBeUndefined();
    const odd = tempDir();
    mkdirSync(join(odd, "store-id"));
    expect(accessLocalStore(offer(odd, storeId))).toBeUndefined();
  });

  it("is undefined for a relative dir, even one that names the right store", () => {
    const { dir, storeId } = storeDir();
    const rel = relative(process.cwd(), dir);
    expect(readFileSync(join(rel, "store-id"), "utf8").trim()).toBe(storeId);
    expect(accessLocalStore(offer(rel, storeId))).toBeUndefined();
    expect(accessLocalStore(offer(`./${rel}`, storeId))).toBeUndefined();
  });

  it("is undefined when nothing is offered or a field is empty", () => {
    const { dir, storeId } = storeDir();
    expect(accessLocalStore(undefined)).toBeUndefined();
    expect(accessLocalStore(offer("", storeId))).toBeUndefined();
    expect(accessLocalStore(offer(dir, ""))).toBeUndefined();
    // An empty store-id file does not match an empty id either.
    const empty = tempDir();
    writeFileSync(join(empty, "store-id"), "\n");
    expect(accessLocalStore(offer(empty, ""))).toBeUndefined();
  });

  it("remembers its answer per store", () => {
    const { dir, storeId } = storeDir();
    const first = accessLocalStore(offer(dir, storeId));
    rmSync(join(dir, "store-id"));
    expect(accessLocalStore(offer(dir, storeId))).toBe(first);
    // A different id for the same dir is checked on its own.
    expect(accessLocalStore(offer(dir, randomBytes(16).toString("hex")))).toBeUndefined();
  });

  it("blobPath refuses anything but a lower-case hex SHA-256", () => {
    const { dir, storeId } = storeDir();
    const access = accessLocalStore(offer(dir, storeId));
    if (access === undefined) throw new Error("store not accessible");
    for (const id of [
      "",
      "ab",
      "AB".repeat(32),
      `${"a".repeat(63)}g`,
      "../".repeat(22).slice(0, 64),
      `${"a".repeat(62)}/x`,
      "a".repeat(65),
    ]) {
      expect(() => access.blobPath(id), id).toThrow(RangeError);
    }
    expect(() => access.blobPath("x".repeat(5000))).toThrow(/^not a blob id: x{80}$/);
  });
});

describe("readFileRange", () => {
  const file = (bytes: number[]) => {
    const path = join(tempDir(), "blob");
    writeFileSync(path, Uint8Array.from(bytes));
    return path;
  };

  it("reads a range into a SharedArrayBuffer-backed array", async () => {
    const path = file(Array.from({ length: 64 }, (_, i) => i));
    const target = new Uint8Array(new SharedArrayBuffer(24));
    await readFileRange(path, 16, target, 64);
    expect(Array.from(target)).toEqual(Array.from({ length: 24 }, (_, i) => 16 + i));
    // Into the middle of a larger shared buffer, up to the file's end.
    const shared = new SharedArrayBuffer(32);
    await readFileRange(path, 56, new Uint8Array(shared, 8, 8), 64);
    const expected = new Uint8Array(32);
    expected.set([56, 57, 58, 59, 60, 61, 62, 63], 8);
    expect(new Uint8Array(shared)).toEqual(expected);
  });

  it("throws when the file does not hold the expected number of bytes", async () => {
    const path = file(Array.from({ length: 64 }, (_, i) => i));
    const target = new Uint8Array(8);
    await expect(readFileRange(path, 0, target, 72)).rejects.toThrow(`${path} holds 64 bytes, expected 72`);
    await expect(readFileRange(path, 0, target, 56)).rejects.toThrow(`${path} holds 64 bytes, expected 56`);
    expect(Array.from(target)).toEqual(Array(8).fill(0));
  });

  it("throws when the range runs past the end of the file", async () => {
    const path = file(Array.from({ length: 16 }, (_, i) => i));
    await expect(readFileRange(path, 8, new Uint8Array(16), 16)).rejects.toThrow(`${path} ends at 16 bytes`);
  });

  it("throws for a missing file", async () => {
    await expect(readFileRange(join(tempDir(), "none"), 0, new Uint8Array(8), 8)).rejects.toMatchObject({ code: "ENOENT" });
  });
});

describe("writeWholeFile", () => {
  it("replaces the content of an existing file, shorter or longer", async () => {
    const path = join(tempDir(), "upload");
    writeFileSync(path, Buffer.alloc(100, 0xee));
    await writeWholeFile(path, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
    expect(Array.from(readFileSync(path))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const big = randomBytes(3 * 1024 * 1024 + 5);
    await writeWholeFile(path, new Uint8Array(big.buffer, big.byteOffset, big.byteLength));
    expect(readFileSync(path).equals(big)).toBe(true);
  });

  it("writes a view at an offset of a larger buffer", async () => {
    const path = join(tempDir(), "upload");
    writeFileSync(path, "");
    const backing = Uint8Array.from([9, 9, 1, 2, 3, 9]);
    await writeWholeFile(path, backing.subarray(2, 5));
    expect(Array.from(readFileSync(path))).toEqual([1, 2, 3]);
  });

  it("does not create a file that is not there (only the coordinator creates uploads)", async () => {
    const path = join(tempDir(), "missing");
    await expect(writeWholeFile(path, Uint8Array.from([1]))).rejects.toMatchObject({ code: "ENOENT" });
    expect(() => readFileSync(path)).toThrow();
  });
});

describe("writeUploadLocally", () => {
  /** A store with one upload file, as BeginUpload would have created it. */
  const setUp = () => {
    const { dir, storeId } = storeDir();
    mkdirSync(join(dir, "uploads"));
    const localPath = join(dir, "uploads", "u1");
    writeFileSync(localPath, "");
    return { dir, storeId, localPath };
  };
  const begin = (localPath: string, dir: string, storeId: string) =>
    create(BeginUploadResponseSchema, { uploadId: "u1", localPath, localStore: { dir, storeId } });
  const bytes = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);

  it("writes the upload file of a store that proves itself", async () => {
    const { dir, storeId, localPath } = setUp();
    await expect(writeUploadLocally(begin(localPath, dir, storeId), bytes)).resolves.toBe(true);
    expect(Array.from(readFileSync(localPath))).toEqual(Array.from(bytes));
  });

  it("writes nothing and answers false when no store or no path is offered, or the store does not prove itself", async () => {
    const { dir, storeId, localPath } = setUp();
    await expect(writeUploadLocally(create(BeginUploadResponseSchema, { uploadId: "u1", localPath }), bytes)).resolves.toBe(
      false,
    );
    await expect(writeUploadLocally(begin("", dir, storeId), bytes)).resolves.toBe(false);
    await expect(writeUploadLocally(begin(localPath, dir, randomBytes(16).toString("hex")), bytes)).resolves.toBe(false);
    expect(readFileSync(localPath).byteLength).toBe(0);
  });

  it("writes nothing outside <dir>/uploads of the proven store", async () => {
    const { dir, storeId, localPath } = setUp();
    const elsewhere = join(tempDir(), "uploads", "u1");
    mkdirSync(dirname(elsewhere));
    writeFileSync(elsewhere, "");
    // Files of the store that are not uploads: blobs, the journal, the id itself.
    mkdirSync(join(dir, "blobs", "ab"), { recursive: true });
    const blob = join(dir, "blobs", "ab", BLOB_ID);
    writeFileSync(blob, "keep");
    mkdirSync(join(dir, "journal"));
    const journal = join(dir, "journal", "000001.log");
    writeFileSync(journal, "keep");
    const paths = [
      elsewhere,
      blob,
      journal,
      join(dir, "store-id"),
      `${dir}/uploads/../journal/000001.log`,
      `${dir}/blobs/../uploads/u1`,
      `${dir}/uploads/./u1`,
      `${dir}/uploads/..`,
      "uploads/u1",
    ];
    for (const path of paths) {
      await expect(writeUploadLocally(begin(path, dir, storeId), bytes), path).resolves.toBe(false);
    }
    expect(readFileSync(elsewhere).byteLength).toBe(0);
    expect(readFileSync(blob, "utf8")).toBe("keep");
    expect(readFileSync(journal, "utf8")).toBe("keep");
    expect(readFileSync(join(dir, "store-id"), "utf8")).toBe(`${storeId}\n`);
    expect(readFileSync(localPath).byteLength).toBe(0);
  });

  it("answers false when the upload file is gone (the chunks then go by RPC)", async () => {
    const { dir, storeId, localPath } = setUp();
    rmSync(localPath);
    await expect(writeUploadLocally(begin(localPath, dir, storeId), bytes)).resolves.toBe(false);
    expect(existsSync(localPath)).toBe(false);
  });
});
