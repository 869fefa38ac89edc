import { createHash } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { quote } from "@dce/core";
import { BlobError, checkOpenUploads, checkUploadDigest, checkUploadRequest, uploadNotFound } from "../blob-error.js";
import { IndexedBlobStore } from "../blob-index.js";
import type { BlobStorePort } from "../ports/storage.js";
import { gatherRanges, planStridedRead, type StridedView } from "../strided-read.js";
import { UploadProgress } from "../upload-progress.js";

/** Settings of a {@link MemoryBlobStore}; each has a default. */
export interface MemoryBlobStoreOptions {
  /** Largest blob accepted, in bytes. Default 1 GiB. */
  readonly maxBlobBytes?: number;
  /** Uploads open at once. Default 64. */
  readonly maxOpenUploads?: number;
  /** An upload without a chunk for this long is dropped, in ms. Default 600 000. */
  readonly uploadIdleMs?: number;
  /**
   * Folder where {@link MemoryBlobStore.pathOf} writes a blob the first time its file is
   * asked for (result verification reads inputs from files). Without it, `pathOf` throws,
   * so run the coordinator with verification off.
   */
  readonly spillDir?: string;
}

interface MemoryUpload {
  readonly sizeBytes: number;
  readonly sha256: string;
  readonly bytes: Uint8Array;
  readonly hash: ReturnType<typeof createHash>;
  readonly progress: UploadProgress;
  lastActiveMs: number;
}

/**
 * A blob store held in memory, for tests and the simulation: the disk `BlobStore`'s
 * contract (content addressing, resumable uploads with the same refusals) without
 * files. Upload ids are `upload-1`, `upload-2`, … so runs are reproducible. Blobs survive
 * {@link close}, so a coordinator restarted on the same store finds them, like files.
 * No local store: a coordinator on it runs with `localStore` off.
 */
export class MemoryBlobStore extends IndexedBlobStore implements BlobStorePort {
  readonly dir = "memory";
  readonly storeId = "memory";
  readonly #opts: Required<Omit<MemoryBlobStoreOptions, "spillDir">> & MemoryBlobStoreOptions;
  readonly #blobs = new Map<string, Uint8Array>();
  readonly #uploads = new Map<string, MemoryUpload>();
  readonly #spilled = new Set<string>();
  #nextUpload = 1;

  constructor(options: MemoryBlobStoreOptions = {}) {
    super();
    this.#opts = { maxBlobBytes: 1 << 30, maxOpenUploads: 64, uploadIdleMs: 600_000, ...options };
  }

  pathOf(blobId: string): string {
    const dir = this.#opts.spillDir;
    if (dir === undefined) throw new Error("MemoryBlobStore has no files (pass spillDir to verify results)");
    const path = join(dir, blobId);
    const bytes = this.sizeOf(blobId) === undefined ? undefined : this.#blobs.get(blobId);
    if (bytes !== undefined && !this.#spilled.has(blobId)) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(path, bytes);
      this.#spilled.add(blobId);
    }
    return path;
  }

  remove(blobId: string): number {
    if (!this.index.isTombstoned(blobId)) return 0;
    this.#blobs.delete(blobId);
    if (this.#spilled.delete(blobId) && this.#opts.spillDir !== undefined) {
      rmSync(join(this.#opts.spillDir, blobId), { force: true });
    }
    return this.index.forget(blobId);
  }

  begin(sizeBytes: number, sha256: string, nowMs: number): { uploadId: string } | undefined {
    checkUploadRequest(sizeBytes, sha256, this.#opts.maxBlobBytes);
    if (sha256 !== "" && this.sizeOf(sha256) === sizeBytes) {
      this.index.stored(sha256, sizeBytes);
      return undefined;
    }
    this.expireIdle(nowMs);
    checkOpenUploads(this.#uploads.size, this.#opts.maxOpenUploads);
    const uploadId = `upload-${this.#nextUpload++}`;
    this.#uploads.set(uploadId, {
      sizeBytes,
      sha256,
      bytes: new Uint8Array(sizeBytes),
      hash: createHash("sha256"),
      progress: new UploadProgress(sizeBytes),
      lastActiveMs: nowMs,
    });
    return { uploadId };
  }

  append(uploadId: string, offset: number, data: Uint8Array, nowMs: number): number {
    const u = this.#session(uploadId);
    u.lastActiveMs = nowMs;
    if (!u.progress.admit(offset, data.byteLength)) return u.progress.received;
    u.bytes.set(data, offset);
    for (const piece of u.progress.add(offset, data)) u.hash.update(piece);
    return u.progress.received;
  }

  uploadPathOf(uploadId: string): string {
    this.#session(uploadId);
    throw new BlobError("invalid", "this blob store has no files to write locally");
  }

  finishLocal(uploadId: string): Promise<string> {
    return Promise.reject(
      new BlobError("invalid", `upload ${quote(uploadId, 64)}: this blob store has no files to write locally`),
    );
  }

  finish(uploadId: string): string {
    const u = this.#session(uploadId);
    this.#uploads.delete(uploadId);
    if (!u.progress.complete)
      throw new BlobError("invalid", `upload has ${u.progress.received} bytes; ${u.sizeBytes} were declared`);
    const digest = u.progress.hashedInOrder ? u.hash.digest("hex") : createHash("sha256").update(u.bytes).digest("hex");
    checkUploadDigest(digest, u.sha256);
    this.#store(digest, u.bytes);
    return digest;
  }

  put(data: Uint8Array): string {
    const blobId = createHash("sha256").update(data).digest("hex");
    this.#store(blobId, this.sizeOf(blobId) === undefined ? data.slice() : data);
    return blobId;
  }

  read(blobId: string, offset: number, maxBytes: number): { data: Uint8Array; totalBytes: number } {
    const bytes = this.sizeOf(blobId) === undefined ? undefined : this.#blobs.get(blobId);
    if (bytes === undefined) {
      throw new BlobError("not-found", `blob ${quote(blobId, 64)} not found`, { metadata: { blob_id: blobId } });
    }
    const total = bytes.byteLength;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > total) {
      throw new BlobError("invalid", `offset ${offset} is outside the blob (0..${total})`);
    }
    return { data: bytes.slice(offset, offset + Math.min(maxBytes, total - offset)), totalBytes: total };
  }

  readStrided(blobId: string, view: StridedView, gatheredOffset: number, maxBytes: number) {
    const bytes = this.sizeOf(blobId) === undefined ? undefined : this.#blobs.get(blobId);
    if (bytes === undefined) {
      throw new BlobError("not-found", `blob ${quote(blobId, 64)} not found`, { metadata: { blob_id: blobId } });
    }
    const plan = planStridedRead(view, bytes.byteLength, gatheredOffset, maxBytes);
    const data = gatherRanges(plan, (target, at, length, position) =>
      target.set(bytes.subarray(position, position + length), at),
    );
    return { data, totalBytes: plan.gatheredBytes };
  }

  expireIdle(nowMs: number): void {
    for (const [id, u] of [...this.#uploads]) if (nowMs - u.lastActiveMs > this.#opts.uploadIdleMs) this.#uploads.delete(id);
  }

  close(): void {
    this.#uploads.clear();
  }

  /** Keeps bytes under their id (again: a new generation), replacing a tombstoned copy. */
  #store(blobId: string, bytes: Uint8Array): void {
    if (this.sizeOf(blobId) === undefined) {
      this.#blobs.set(blobId, bytes);
      this.#spilled.delete(blobId);
    }
    this.index.stored(blobId, bytes.byteLength);
  }

  #session(uploadId: string): MemoryUpload {
    const u = this.#uploads.get(uploadId);
    if (!u) throw uploadNotFound(uploadId);
    return u;
  }
}
