import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fdatasync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { TileBounds } from "@dce/core";
import { digestFile } from "@dce/runtime/file-digest";
import type { BlobStore } from "./blob-store.js";
import type { DataDirSpace } from "./disk-space.js";
import { ResultReleasedError, withDataDir, withDataDirAsync } from "./storage-errors.js";

const fdatasyncAsync = promisify(fdatasync);

interface OpenResult {
  readonly path: string;
  readonly fd: number;
  readonly cols: number;
  readonly sizeBytes: number;
  /**
   * A small C is also kept in memory: tiles are copied here and the rows written since the
   * last sync go to the file in one write at the next {@link ResultSink.syncDirty}, instead
   * of one write per tile row (a job of 16,384 tiles of 8×8 made 131,072 writes).
   */
  readonly mirror: Buffer | undefined;
  /** Rows `[dirtyFrom, dirtyTo)` of the mirror are not yet in the file. */
  dirtyFrom: number;
  dirtyTo: number;
}

/** Largest C kept in memory while it is assembled. */
const MIRROR_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Assembles each job's C in a file-backed buffer: every accepted tile is written at
 * the place its shard index fixes, so the final bytes cannot depend on the order in
 * which tiles arrive. Buffers of unfinished jobs survive a restart (their accepted
 * tiles are not recomputed); sealing hashes the file and links it into the blob store.
 *
 * A write the disk refuses throws a `DataDirError` (RESOURCE_EXHAUSTED or UNAVAILABLE,
 * naming the data dir). The coordinator writes a tile and {@link flush}es it before the
 * core accepts it, so a full disk refuses the tile (the worker retries) rather than
 * losing one already accepted; covered by result-sink-disk.test.ts.
 */
export class ResultSink {
  readonly #dataDir: string;
  readonly #dir: string;
  readonly #open = new Map<string, OpenResult>();
  readonly #dirty = new Set<string>();
  readonly #store: BlobStore;
  readonly #space: DataDirSpace | undefined;

  /** `space`, when given, admits new jobs' C by free space ({@link admit}). */
  constructor(dataDir: string, store: BlobStore, space?: DataDirSpace) {
    this.#dataDir = store.dir;
    this.#space = space;
    this.#dir = join(dataDir, "results");
    this.#store = store;
    mkdirSync(this.#dir, { recursive: true });
  }

  /** Deletes buffers of jobs that are no longer active (finished or unknown). */
  retain(activeJobIds: ReadonlySet<string>): void {
    for (const name of readdirSync(this.#dir)) {
      const id = name.endsWith(".f64") ? name.slice(0, -4) : "";
      if (!activeJobIds.has(id)) rmSync(join(this.#dir, name), { force: true });
    }
  }

  /** True when a job's buffer exists on disk. */
  has(jobId: string): boolean {
    return this.#open.has(jobId) || existsSync(join(this.#dir, `${jobId}.f64`));
  }

  /**
   * Checks that a new job's C (rows × cols float64) fits on disk next to what is
   * promised already, leaving the watermark free (`DataDirSpace.admit`); call before the
   * job is accepted.
   * @throws DataDirError RESOURCE_EXHAUSTED when it does not.
   */
  admit(rows: number, cols: number): void {
    this.#space?.admit(rows * cols * 8, `a new job's result (${rows}x${cols})`);
  }

  /** Opens (creating a sparse file if needed) the result buffer of a job; does nothing when it is open. */
  prepare(jobId: string, rows: number, cols: number): void {
    if (this.#open.has(jobId)) return;
    const path = join(this.#dir, `${jobId}.f64`);
    const sizeBytes = rows * cols * 8;
    const existed = existsSync(path);
    const fd = withDataDir(this.#dataDir, `creating the result buffer of job ${jobId}`, () => {
      const fd = openSync(path, existed ? "r+" : "w+");
      try {
        if (!existed) ftruncateSync(fd, sizeBytes);
      } catch (e) {
        closeSync(fd);
        rmSync(path, { force: true });
        throw e;
      }
      return fd;
    });
    let mirror: Buffer | undefined;
    if (sizeBytes <= MIRROR_MAX_BYTES) {
      mirror = Buffer.alloc(sizeBytes);
      // After a restart the file holds the tiles accepted before it.
      if (existed) readAll(fd, mirror, jobId);
    }
    this.#open.set(jobId, { path, fd, cols, sizeBytes, mirror, dirtyFrom: 0, dirtyTo: 0 });
  }

  /**
   * Writes one tile (row-major m × n float64 bytes) at its bounds: into the file, or for
   * a small C into memory until {@link flush}. Durable after {@link syncDirty}.
   * @throws DataDirError when the disk refuses the write.
   */
  writeTile(jobId: string, b: TileBounds, data: Uint8Array): void {
    const r = this.#open.get(jobId);
    if (!r) throw new Error(`no result buffer for job ${jobId}`);
    this.#dirty.add(jobId);
    const n = b.colEnd - b.colStart;
    const rowBytes = n * 8;
    if (r.mirror !== undefined) {
      for (let i = b.rowStart; i < b.rowEnd; i++) {
        const from = (i - b.rowStart) * rowBytes;
        r.mirror.set(data.subarray(from, from + rowBytes), (i * r.cols + b.colStart) * 8);
      }
      if (r.dirtyTo <= r.dirtyFrom) {
        r.dirtyFrom = b.rowStart;
        r.dirtyTo = b.rowEnd;
      } else {
        r.dirtyFrom = Math.min(r.dirtyFrom, b.rowStart);
        r.dirtyTo = Math.max(r.dirtyTo, b.rowEnd);
      }
      return;
    }
    withDataDir(this.#dataDir, `writing a tile of job ${jobId}`, () => {
      if (n === r.cols) {
        // Full-width tile: one contiguous write.
        writeAll(r.fd, data, 0, data.byteLength, b.rowStart * r.cols * 8);
      } else {
        for (let i = b.rowStart; i < b.rowEnd; i++) {
          writeAll(r.fd, data, (i - b.rowStart) * rowBytes, rowBytes, (i * r.cols + b.colStart) * 8);
        }
      }
    });
  }

  /**
   * Writes the tiles of a job still only in memory to its file (one write for all of
   * them), so a full disk shows now rather than at the next journal commit.
   * @throws DataDirError when the disk refuses; those rows stay to be written again.
   */
  flush(jobId: string): void {
    const r = this.#open.get(jobId);
    if (r) withDataDir(this.#dataDir, `writing tiles of job ${jobId}`, () => flushMirror(r));
  }

  /** Bytes of open result buffers not allocated on disk yet: what running jobs will still write. */
  unwrittenBytes(): number {
    let n = 0;
    for (const r of this.#open.values()) {
      try {
        n += Math.max(0, r.sizeBytes - fstatSync(r.fd).blocks * 512);
      } catch {
        n += r.sizeBytes;
      }
    }
    return n;
  }

  /**
   * Flushes every buffer written since the last call (run before the journal records them).
   * @throws DataDirError when the disk refuses; the buffers stay marked for the next call.
   */
  async syncDirty(): Promise<void> {
    const ids = [...this.#dirty];
    this.#dirty.clear();
    await withDataDirAsync(
      this.#dataDir,
      "syncing result tiles",
      () =>
        Promise.all(
          ids.map((id) => {
            const r = this.#open.get(id);
            if (!r) return Promise.resolve();
            flushMirror(r);
            return fdatasyncAsync(r.fd);
          }),
        ),
      () => {
        for (const id of ids) if (this.#open.has(id)) this.#dirty.add(id);
      },
    );
  }

  /**
   * Seals a job's C: hashes it and links it into the blob store; it is durable once the
   * journal's next commit ends (before that commit writes the success record). A C
   * larger than the in-memory mirror is hashed from its file on a digest thread, so the
   * event loop keeps serving meanwhile. The buffer itself stays until {@link release},
   * so a crash before the job's success is journaled can seal it again.
   * @throws ResultReleasedError when the buffer was released (the job ended) during the seal.
   */
  finalize(jobId: string): string | Promise<string> {
    const r = this.#open.get(jobId);
    if (!r) throw new Error(`no result buffer for job ${jobId}`);
    const doing = `storing the result of job ${jobId}`;
    const link = (blobId: string): string => {
      // Durable with the job's success record, not here on the event loop: the journal's
      // next commit first fdatasyncs this buffer (syncDirty), then syncs the blob's folder
      // (BlobStore.syncPending), then writes the record (disk-storage.ts).
      this.#dirty.add(jobId);
      this.#store.adopt(r.path, blobId, r.sizeBytes, { keepSource: true, deferSync: true });
      return blobId;
    };
    if (r.mirror !== undefined) {
      const mirror = r.mirror;
      return withDataDir(this.#dataDir, doing, () => {
        flushMirror(r);
        const blobId = createHash("sha256").update(mirror).digest("hex");
        // A small C rides in the journal's commit of the success record (journal-blobs.ts):
        // no fsync of its own, nor of its folder. Its tiles are durable in the buffer already.
        if (this.#store.storeViaJournal(blobId, mirror)) return blobId;
        return link(blobId);
      });
    }
    return withDataDirAsync(this.#dataDir, doing, async () => {
      const blobId = await digestFile(r.path, r.sizeBytes);
      if (this.#open.get(jobId) !== r) throw new ResultReleasedError(jobId);
      return link(blobId);
    });
  }

  /** Closes and deletes a job's buffer (after its success is durable, or when it is discarded). */
  release(jobId: string): void {
    const r = this.#open.get(jobId);
    this.#dirty.delete(jobId);
    if (r) {
      closeSync(r.fd);
      this.#open.delete(jobId);
    }
    rmSync(join(this.#dir, `${jobId}.f64`), { force: true });
  }

  /** Closes every open buffer, keeping the files. */
  close(): void {
    for (const r of this.#open.values()) closeSync(r.fd);
    this.#open.clear();
  }
}

/** Writes the mirror's dirty rows to the file, in one write. */
function flushMirror(r: OpenResult): void {
  if (r.mirror === undefined || r.dirtyTo <= r.dirtyFrom) return;
  const from = r.dirtyFrom * r.cols * 8;
  writeAll(r.fd, r.mirror, from, r.dirtyTo * r.cols * 8 - from, from);
  r.dirtyFrom = 0;
  r.dirtyTo = 0;
}

function readAll(fd: number, into: Buffer, jobId: string): void {
  for (let pos = 0; pos < into.byteLength; ) {
    const n = readSync(fd, into, pos, into.byteLength - pos, pos);
    if (n === 0) throw new Error(`result file of job ${jobId} is short`);
    pos += n;
  }
}

function writeAll(fd: number, data: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0;
  while (done < length) done += writeSync(fd, data, offset + done, length - done, position + done);
}
