import type { DurableModel, DurableRecord, TileBounds } from "@dce/core";
import type { BlobUsage, StoredBlob } from "../blob-index.js";
import type { RecoveryReport } from "../journal.js";
import type { StridedView } from "../strided-read.js";

/**
 * The write-ahead journal as the shell uses it: the durable model recovered when it was
 * opened, appends, and group commits. Implemented by the disk `Journal` and by
 * `MemoryJournal` (`@dce/coordinator/testing`).
 */
export interface JournalPort {
  /** The durable model: recovered when the journal was opened, with every record appended since. */
  readonly model: DurableModel;
  /** Appends a record; it is durable once a later {@link commit} resolves. */
  append(record: DurableRecord): void;
  /**
   * Resolves once every record appended so far is durable; with nothing appended, once
   * the commits in progress are. Rejects when the journal failed, and so does every
   * later commit (the shell then stops: memory is ahead of the journal).
   */
  commit(): Promise<void>;
  /** Commits what is pending and closes. Idempotent. */
  close(): Promise<void>;
  /** True when every record appended so far is durable: nothing pending, no commit in flight. */
  readonly settled: boolean;
}

/** A journal just opened, and what recovering it found. */
export interface OpenedJournal {
  readonly journal: JournalPort;
  readonly report: RecoveryReport;
}

/** How an upload is admitted by free space. */
export interface BeginOptions {
  /**
   * New data from a client: it must leave the data dir's `--min-free-bytes` watermark
   * free. Otherwise (a worker's tile of a running job) only the journal's reserve.
   */
  readonly fromClient?: boolean;
}

/**
 * Content-addressed matrix storage (blob id = SHA-256 of the bytes) with resumable
 * uploads. Refusals throw `BlobError` (mapped to Connect codes by the blob service); a
 * full or failing disk throws `DataDirError`. Implemented by the disk `BlobStore` and by
 * `MemoryBlobStore`.
 */
export interface BlobStorePort {
  /** Folder of the store, offered to peers on this host when the local store is on. */
  readonly dir: string;
  /** Identity of the store, so a peer can tell it reaches this very store. */
  readonly storeId: string;
  /** A file holding a stored blob (verification reads inputs from files). */
  pathOf(blobId: string): string;
  /** Size of a stored blob in bytes, or undefined when it is not stored (or tombstoned). */
  sizeOf(blobId: string): number | undefined;
  /** Generation of a stored blob (it grows each time the same bytes are stored again), or undefined. */
  generationOf(blobId: string): number | undefined;
  /** Every blob stored (not tombstoned), for the garbage collector. */
  list(): StoredBlob[];
  /** Blobs stored and their bytes, for metrics. */
  usage(): BlobUsage;
  /**
   * Makes a blob absent at once (sizeOf, reads and deduplication no longer see it) ahead
   * of its deletion by {@link remove}; storing the same bytes again revives it. False
   * when it is not stored.
   */
  tombstone(blobId: string): boolean;
  /**
   * Deletes a tombstoned blob; returns the bytes freed, or 0 when it was stored again
   * since its tombstone (then it stays).
   */
  remove(blobId: string): number;
  /**
   * Starts an upload at `nowMs`; undefined when the blob is already stored (a new
   * generation of it, which restarts the collector's grace period).
   */
  begin(sizeBytes: number, sha256: string, nowMs: number, opts?: BeginOptions): { uploadId: string } | undefined;
  /**
   * Writes a chunk at `offset`; chunks may come in any order and more than once
   * (`UploadProgress`). Returns the bytes received so far.
   */
  append(uploadId: string, offset: number, data: Uint8Array, nowMs: number): number;
  /** The file a peer on this host may write an upload's bytes to. */
  uploadPathOf(uploadId: string): string;
  /**
   * Completes an upload sent in chunks, checking size and SHA-256; returns the blob id,
   * or a promise of it when the bytes must be hashed now (they came too far out of order
   * to be hashed as they came).
   */
  finish(uploadId: string): string | Promise<string>;
  /** Completes an upload a peer wrote to {@link uploadPathOf}; returns the blob id. */
  finishLocal(uploadId: string): Promise<string>;
  /** Stores bytes directly; returns their blob id. */
  put(data: Uint8Array): string;
  /** Reads `[offset, offset + maxBytes)` of a blob (shorter at its end). */
  read(blobId: string, offset: number, maxBytes: number): { data: Uint8Array; totalBytes: number };
  /**
   * Reads `[gatheredOffset, gatheredOffset + maxBytes)` of the gathered bytes of a strided
   * view of a blob (`planStridedRead`: shorter at the view's end or after its segment
   * limit); `totalBytes` is the whole view's gathered length. Never reads the blob whole.
   */
  readStrided(
    blobId: string,
    view: StridedView,
    gatheredOffset: number,
    maxBytes: number,
  ): { data: Uint8Array; totalBytes: number };
  /** Drops uploads idle for longer than the store's limit at `nowMs`. */
  expireIdle(nowMs: number): void;
  /** Ends every open upload. */
  close(): void;
}

/**
 * Where each running job's C is assembled, tile by tile, and sealed into a blob once
 * complete. Buffers of unfinished jobs survive a restart. Implemented by the disk
 * `ResultSink` and by `MemoryResultSink`.
 */
export interface ResultSinkPort {
  /** Drops buffers of jobs not in `activeJobIds` (run once, on recovery). */
  retain(activeJobIds: ReadonlySet<string>): void;
  /** True when a job has a buffer. */
  has(jobId: string): boolean;
  /**
   * Checks that a new job's C (rows × cols float64) fits.
   * @throws DataDirError RESOURCE_EXHAUSTED when it does not.
   */
  admit(rows: number, cols: number): void;
  /** Opens (creating if needed) a job's buffer; does nothing when it is open. */
  prepare(jobId: string, rows: number, cols: number): void;
  /** Writes one tile (row-major float64 bytes of `bounds`) into a job's buffer. */
  writeTile(jobId: string, bounds: TileBounds, data: Uint8Array): void;
  /** Pushes tiles held in memory towards their durable place, so a full disk shows now. */
  flush(jobId: string): void;
  /**
   * Seals a job's C into the blob store; returns its blob id, at once when C is small,
   * else once it is hashed off the event loop. The buffer stays until {@link release}.
   */
  finalize(jobId: string): string | Promise<string>;
  /** Deletes a job's buffer. */
  release(jobId: string): void;
  /** Closes every buffer, keeping their contents for the next run. */
  close(): void;
}

/**
 * Free space in the data dir, and the watermark below which new work from clients is
 * refused. Implemented by `DataDirSpace` (disk-space.ts), which reads it with statfs(2)
 * or a fake.
 */
export interface FreeSpacePort {
  /** The data dir, for messages. */
  readonly dir: string;
  /** Free and total bytes of its file system; undefined when they cannot be read. */
  stat(): { freeBytes: number; totalBytes: number } | undefined;
  /** The watermark (`--min-free-bytes`), in bytes. */
  minFreeBytes(): number;
  /**
   * Checks that new work from a client of `needBytes` (an upload, a new job) leaves the
   * watermark free. @throws DataDirError RESOURCE_EXHAUSTED (`DATA_DIR_FULL`) when not.
   */
  admit(needBytes: number, what: string): void;
}

/** The storage of one coordinator: its journal, blob store and result sink. */
export interface StoragePorts {
  /** Free space of the data dir; absent (memory storage): nothing is refused for space. */
  readonly space?: FreeSpacePort;
  /** Opens the journal, recovering what earlier runs committed. Called once per coordinator. */
  openJournal(): Promise<OpenedJournal>;
  readonly blobs: BlobStorePort;
  readonly sink: ResultSinkPort;
  /** The folder workers on this host stage result tiles in (`StagedTiles`); absent (memory storage): none. */
  readonly stagingDir?: string;
}
