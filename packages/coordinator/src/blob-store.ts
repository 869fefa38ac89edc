import { createHash, randomUUID } from "node:crypto";
import {
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { resolve } from "node:path";
import { quote } from "@dce/core";
import { blobPath, blobPrefixDir, blobsDir, storeIdPath, uploadPath, uploadsDir } from "@dce/runtime/blob-layout";
import { digestFile } from "@dce/runtime/file-digest";
import { BlobError, checkOpenUploads, checkUploadDigest, checkUploadRequest, uploadNotFound } from "./blob-error.js";
import { digestLocalUpload, ensureStoreId, fsyncPath, gatherFromFile, scanBlobs } from "./blob-files.js";
import { IndexedBlobStore } from "./blob-index.js";
import { BlobSyncQueue } from "./blob-sync-queue.js";
import type { DataDirSpace } from "./disk-space.js";
import { JOURNAL_BLOB_MAX_BYTES, type JournalBlobs } from "./journal-blobs.js";
import type { BeginOptions } from "./ports/storage.js";
import { dataDirError, withDataDir, withDataDirAsync } from "./storage-errors.js";
import { planStridedRead, type StridedView } from "./strided-read.js";
import { UploadProgress } from "./upload-progress.js";

export { BlobError };

interface UploadSession {
  readonly id: string;
  readonly sizeBytes: number;
  readonly sha256: string;
  readonly path: string;
  readonly fd: number;
  readonly hash: ReturnType<typeof createHash>;
  readonly progress: UploadProgress;
  lastActiveMs: number;
}

/** Limits of the blob store. */
export interface BlobStoreOptions {
  /** Root folder; blobs live in `dir/blobs`, uploads in progress in `dir/uploads`. */
  readonly dir: string;
  /** Largest blob accepted, in bytes. */
  readonly maxBlobBytes: number;
  /** Uploads in progress at once. */
  readonly maxOpenUploads: number;
  /** An upload idle this long is dropped. */
  readonly uploadIdleMs: number;
  /** Free-space admission of uploads and inline matrices; none when absent. */
  readonly space?: DataDirSpace;
}

/**
 * Content-addressed storage of float64 matrix bytes on local disk: a blob's id is the
 * hex SHA-256 of its bytes, so an identical upload is recognised and skipped. Uploads
 * stream into a temporary file while being hashed; nothing is held in memory whole.
 *
 * A write the disk refuses (full, over quota, I/O error) throws a `DataDirError`
 * (RESOURCE_EXHAUSTED or UNAVAILABLE, naming the data dir) and leaves nothing half
 * written: the upload or temporary file is deleted, and no blob id is handed out for
 * bytes that are not all on disk. Covered by blob-store-disk.test.ts.
 */
export class BlobStore extends IndexedBlobStore {
  readonly #opts: BlobStoreOptions;
  readonly #blobDir: string;
  readonly #uploadDir: string;
  readonly #uploads = new Map<string, UploadSession>();
  /** Inline matrices and sealed results made durable by the next journal commit ({@link syncPending}). */
  readonly #pending = new BlobSyncQueue((blobId, sizeBytes) => this.index.stored(blobId, sizeBytes));
  /** Small inline matrices made durable by the journal's data frames, once a journal is attached. */
  #journalBlobs: JournalBlobs | undefined;
  /** Absolute root of the store, as peers on this host see it. */
  readonly dir: string;
  /** Random id in `dir/store-id`: a peer that reads it there knows it sees this store. */
  readonly storeId: string;

  constructor(opts: BlobStoreOptions) {
    super();
    this.#opts = opts;
    this.dir = resolve(opts.dir);
    this.#blobDir = blobsDir(opts.dir);
    this.#uploadDir = uploadsDir(opts.dir);
    // Owner-only when created here: processes that can read the data dir can read every
    // blob, and the local store (LocalStore in the protocol) is offered on that basis.
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    mkdirSync(this.#blobDir, { recursive: true });
    this.storeId = withDataDir(this.dir, "writing store-id", () => ensureStoreId(storeIdPath(opts.dir)));
    // Uploads in progress do not survive a restart: clients start them again. This also
    // removes the temporary files of uploads, inline matrices and results being stored
    // when the process was killed (blob-store-gc.test.ts "a restart removes ...").
    rmSync(this.#uploadDir, { recursive: true, force: true });
    mkdirSync(this.#uploadDir, { recursive: true });
    withDataDir(this.dir, "listing blobs", () => scanBlobs(this.#blobDir, this.index));
  }

  /** Path of a stored blob (the id must already be validated); an inline matrix not yet synced is read from its temporary file. */
  pathOf(blobId: string): string {
    return this.#pending.pathOf(blobId) ?? blobPath(this.#opts.dir, blobId);
  }

  /** Size of a stored blob, including one whose durability waits for the next journal commit. */
  override sizeOf(blobId: string): number | undefined {
    return this.#pending.sizeOf(blobId) ?? super.sizeOf(blobId);
  }

  /**
   * Makes the blobs stored with a deferred sync durable (inline matrices, sealed results):
   * the journal runs it before writing each batch, so no record names a blob that a crash
   * could take back.
   * @throws DataDirError when the disk refuses.
   */
  syncPending(): Promise<void> {
    if (this.#pending.empty) return Promise.resolve();
    return withDataDirAsync(this.dir, "storing new blobs", () => this.#pending.sync());
  }

  /**
   * From now on, small inline matrices go through `blobs` (journal-blobs.ts): durable by
   * the journal's data frames instead of fsyncs of their own.
   */
  attachJournal(blobs: JournalBlobs): void {
    this.#journalBlobs = blobs;
  }

  /**
   * Stores a small blob (a sealed result, an inline matrix) through the journal's data frames (journal-blobs.ts),
   * durable with the next commit; false when it must go the usual way (no journal
   * attached, or over the frames' size limit). Throws the file system's error, unmapped.
   */
  storeViaJournal(blobId: string, data: Uint8Array): boolean {
    const viaJournal = this.#journalBlobs;
    if (viaJournal === undefined || data.byteLength > JOURNAL_BLOB_MAX_BYTES) return false;
    // A disk fault is the caller's to name (the sealing of a job's result, a submit).
    if (this.sizeOf(blobId) !== data.byteLength) viaJournal.put(blobId, data);
    if (this.#pending.sizeOf(blobId) === undefined) this.index.stored(blobId, data.byteLength);
    return true;
  }

  /** Counts a blob written back from the journal after a restart (journal-blobs.ts) as stored. */
  restored(blobId: string, sizeBytes: number): void {
    this.index.stored(blobId, sizeBytes);
  }

  /**
   * Deletes a tombstoned blob's file; returns the bytes freed. A blob stored again since
   * its tombstone is left alone (0).
   * @throws DataDirError when the disk refuses; the blob stays tombstoned, to be retried.
   */
  remove(blobId: string): number {
    if (!this.index.isTombstoned(blobId)) return 0;
    withDataDir(this.dir, `deleting blob ${blobId}`, () => rmSync(this.pathOf(blobId), { force: true }));
    return this.index.forget(blobId);
  }

  /**
   * Starts an upload; returns undefined when the blob is already stored (which restarts
   * its grace period). A client's upload must leave the watermark free, a worker's only
   * the journal's reserve (see `BeginOptions`).
   */
  begin(sizeBytes: number, sha256: string, nowMs: number, opts: BeginOptions = {}): { uploadId: string } | undefined {
    checkUploadRequest(sizeBytes, sha256, this.#opts.maxBlobBytes);
    // "Already stored" is a promise to the client: a blob still waiting for its sync is uploaded again.
    if (sha256 !== "" && this.#pending.sizeOf(sha256) === undefined && this.sizeOf(sha256) === sizeBytes) {
      this.index.stored(sha256, sizeBytes);
      return undefined;
    }
    this.expireIdle(nowMs);
    checkOpenUploads(this.#uploads.size, this.#opts.maxOpenUploads);
    if (opts.fromClient) this.#opts.space?.admit(sizeBytes, `an upload of ${sizeBytes} bytes`);
    else this.#opts.space?.require(sizeBytes, `an upload of ${sizeBytes} bytes`);
    const id = randomUUID();
    const path = uploadPath(this.#opts.dir, id);
    const fd = withDataDir(this.dir, `creating upload ${id}`, () => openSync(path, "w"));
    const progress = new UploadProgress(sizeBytes);
    this.#uploads.set(id, { id, sizeBytes, sha256, path, fd, hash: createHash("sha256"), progress, lastActiveMs: nowMs });
    return { uploadId: id };
  }

  /**
   * Writes a chunk at its offset; chunks may come in any order (see {@link UploadProgress}),
   * and one already received is acknowledged without effect. Returns the bytes received.
   */
  append(uploadId: string, offset: number, data: Uint8Array, nowMs: number): number {
    const u = this.#session(uploadId);
    u.lastActiveMs = nowMs;
    if (!u.progress.admit(offset, data.byteLength)) return u.progress.received;
    // A chunk the disk refuses ends the upload and frees its space: its bytes are gone
    // and a later chunk would only fail the same way. The client begins again.
    withDataDir(
      this.dir,
      `writing upload ${uploadId}`,
      () => {
        let off = 0;
        while (off < data.byteLength) off += writeSync(u.fd, data, off, data.byteLength - off, offset + off);
      },
      () => this.#discard(u),
    );
    for (const piece of u.progress.add(offset, data)) u.hash.update(piece);
    return u.progress.received;
  }

  /** The file an upload's bytes go to; a peer on this host may write it directly. */
  uploadPathOf(uploadId: string): string {
    return resolve(this.#session(uploadId).path);
  }

  /**
   * Completes an upload whose bytes a peer on this host wrote straight into its file
   * ({@link uploadPathOf}): checks the size and SHA-256 as for chunks, reading the file
   * off the event loop, then stores it. Returns the blob id.
   */
  async finishLocal(uploadId: string): Promise<string> {
    const u = this.#session(uploadId);
    if (u.progress.received !== 0) {
      throw new BlobError(
        "invalid",
        `upload ${uploadId} already has ${u.progress.received} bytes in chunks; it cannot also be written locally`,
      );
    }
    this.#drop(u);
    try {
      const digest = await digestLocalUpload(u.path, u.sizeBytes);
      checkUploadDigest(digest, u.sha256);
      this.adopt(u.path, digest, u.sizeBytes);
      return digest;
    } catch (e) {
      rmSync(u.path, { force: true });
      throw dataDirError(e, this.dir, `storing upload ${uploadId}`) ?? e;
    }
  }

  /**
   * Completes an upload after checking its size and hash; returns the blob id. The hash
   * ran as the bytes came, except when chunks came so far out of order that they could
   * not all be held for it: then the file is hashed now, on a digest thread (a promise).
   */
  finish(uploadId: string): string | Promise<string> {
    const u = this.#session(uploadId);
    this.#drop(u);
    if (!u.progress.complete) {
      rmSync(u.path, { force: true });
      throw new BlobError("invalid", `upload has ${u.progress.received} bytes; ${u.sizeBytes} were declared`);
    }
    if (u.progress.hashedInOrder) return this.#store(u, u.hash.digest("hex"));
    return digestFile(u.path, u.sizeBytes).then(
      (digest) => this.#store(u, digest),
      (e: unknown) => {
        rmSync(u.path, { force: true });
        throw dataDirError(e, this.dir, `hashing upload ${uploadId}`) ?? e;
      },
    );
  }

  /** Checks a complete upload's digest, then makes its file the blob. */
  #store(u: UploadSession, digest: string): string {
    try {
      checkUploadDigest(digest, u.sha256);
    } catch (e) {
      rmSync(u.path, { force: true });
      throw e;
    }
    withDataDir(
      this.dir,
      `storing upload ${u.id}`,
      () => {
        fsyncPath(u.path);
        this.adopt(u.path, digest, u.sizeBytes);
      },
      () => rmSync(u.path, { force: true }),
    );
    return digest;
  }

  /**
   * Moves (or, with `keepSource`, hard-links) a finished, fsynced file into the store
   * under its hash, deduplicating, and makes the new name durable. Bytes already there
   * under a tombstone are kept and revived (a new generation): the collector's pending
   * deletion checks the tombstone in the same synchronous step as it unlinks, so it
   * leaves them. When that fails, a name it made is taken back (so the blob is not seen
   * as stored) and the error thrown; the source is left to the caller. With `deferSync`
   * the folder is synced by the next {@link syncPending} (the journal's next commit), and
   * the blob counts as stored from then on.
   */
  adopt(path: string, blobId: string, sizeBytes: number, opts: { keepSource?: boolean; deferSync?: boolean } = {}): void {
    const dir = blobPrefixDir(this.#opts.dir, blobId);
    const dest = blobPath(this.#opts.dir, blobId);
    mkdirSync(dir, { recursive: true });
    let made = false;
    try {
      if (existsSync(dest)) {
        if (!opts.keepSource) unlinkSync(path);
      } else if (opts.keepSource) {
        linkSync(path, dest);
        made = true;
      } else {
        renameSync(path, dest);
        made = true;
      }
      if (opts.deferSync && (made || this.#pending.sizeOf(blobId) !== undefined)) {
        // Counted as stored once the journal's next commit has synced the folder.
        this.#pending.addLink(blobId, sizeBytes, dir);
        return;
      }
      fsyncPath(dir);
    } catch (e) {
      // A name that may not survive a crash must not be handed out: BeginUpload would then
      // answer "already present" for bytes the next start may not have.
      try {
        if (made && opts.keepSource) rmSync(dest, { force: true });
        else if (made) renameSync(dest, path);
      } catch {
        // Reported below. A file left under its hash still holds exactly those bytes
        // (synced before it was named); it is only not known to survive a crash.
      }
      throw e;
    }
    this.index.stored(blobId, sizeBytes);
  }

  /**
   * Stores bytes directly (matrices sent inline in SubmitJob). They are readable at once
   * and durable after the journal's next commit ({@link syncPending}).
   */
  put(data: Uint8Array): string {
    const blobId = createHash("sha256").update(data).digest("hex");
    if (this.sizeOf(blobId) === data.byteLength) {
      if (this.#pending.sizeOf(blobId) === undefined) this.index.stored(blobId, data.byteLength);
      return blobId;
    }
    // Only submits store inline matrices: new work, held to the watermark.
    this.#opts.space?.admit(data.byteLength, `an inline matrix of ${data.byteLength} bytes`);
    if (withDataDir(this.dir, `storing inline matrix ${blobId}`, () => this.storeViaJournal(blobId, data))) return blobId;
    const tmp = uploadPath(this.#opts.dir, randomUUID());
    withDataDir(
      this.dir,
      `storing inline matrix ${blobId}`,
      () => {
        const fd = openSync(tmp, "w");
        try {
          let off = 0;
          while (off < data.byteLength) off += writeSync(fd, data, off, data.byteLength - off, off);
        } catch (e) {
          closeSync(fd);
          throw e;
        }
        // Synced, named and counted as stored by the journal's next commit: the submit
        // that sent it replies only after that commit (blob-store.test.ts "inline matrix").
        this.#pending.addFile(
          blobId,
          tmp,
          fd,
          blobPath(this.#opts.dir, blobId),
          blobPrefixDir(this.#opts.dir, blobId),
          data.byteLength,
        );
      },
      () => rmSync(tmp, { force: true }),
    );
    return blobId;
  }

  /** Reads `[offset, offset + maxBytes)` of a blob (shorter at its end). */
  read(blobId: string, offset: number, maxBytes: number): { data: Uint8Array; totalBytes: number } {
    const total = this.sizeOf(blobId);
    if (total === undefined)
      throw new BlobError("not-found", `blob ${quote(blobId, 64)} not found`, { metadata: { blob_id: blobId } });
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > total) {
      throw new BlobError("invalid", `offset ${offset} is outside the blob (0..${total})`);
    }
    const len = Math.min(maxBytes, total - offset);
    const data = Buffer.allocUnsafe(len);
    withDataDir(this.dir, `reading blob ${blobId}`, () => {
      const fd = openSync(this.pathOf(blobId), "r");
      try {
        let got = 0;
        while (got < len) {
          const n = readSync(fd, data, got, len - got, offset + got);
          if (n === 0) {
            throw new BlobError("not-found", `blob ${blobId} is shorter than recorded`, { metadata: { blob_id: blobId } });
          }
          got += n;
        }
      } finally {
        closeSync(fd);
      }
    });
    return { data, totalBytes: total };
  }

  /** Reads part of the gathered bytes of a strided view of a blob, with positioned reads (never the blob whole). */
  readStrided(blobId: string, view: StridedView, gatheredOffset: number, maxBytes: number) {
    const total = this.sizeOf(blobId);
    if (total === undefined)
      throw new BlobError("not-found", `blob ${quote(blobId, 64)} not found`, { metadata: { blob_id: blobId } });
    const plan = planStridedRead(view, total, gatheredOffset, maxBytes);
    const data = withDataDir(this.dir, `reading blob ${blobId}`, () => gatherFromFile(this.pathOf(blobId), blobId, plan));
    return { data, totalBytes: plan.gatheredBytes };
  }

  /** Bytes that uploads in progress were declared with and have not sent yet. */
  pendingUploadBytes(): number {
    let n = 0;
    for (const u of this.#uploads.values()) n += u.sizeBytes - u.progress.received;
    return n;
  }

  /** Drops uploads idle longer than the limit. */
  expireIdle(nowMs: number): void {
    for (const u of [...this.#uploads.values()]) {
      if (nowMs - u.lastActiveMs > this.#opts.uploadIdleMs) this.#discard(u);
    }
  }

  /** Closes every open upload. */
  close(): void {
    for (const u of [...this.#uploads.values()]) this.#discard(u);
    this.#pending.close();
  }

  #session(uploadId: string): UploadSession {
    const u = this.#uploads.get(uploadId);
    if (!u) throw uploadNotFound(uploadId);
    return u;
  }

  #drop(u: UploadSession): void {
    this.#uploads.delete(u.id);
    closeSync(u.fd);
  }

  /** Ends an upload and deletes its file. */
  #discard(u: UploadSession): void {
    this.#drop(u);
    rmSync(u.path, { force: true });
  }
}
