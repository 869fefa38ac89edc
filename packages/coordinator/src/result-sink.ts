import { createHash } from "node:crypto";
import { closeSync, ftruncateSync, mkdirSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { TileBounds } from "@dce/core";
import type { BlobStore } from "./blob-store.js";

interface OpenResult {
  readonly path: string;
  readonly fd: number;
  readonly cols: number;
  readonly sizeBytes: number;
}

/**
 * Assembles each job's C in a file-backed buffer: every accepted tile is written at
 * the place its shard index fixes, so the final bytes cannot depend on the order in
 * which tiles arrive. Finalising hashes the file and moves it into the blob store.
 */
export class ResultSink {
  readonly #dir: string;
  readonly #open = new Map<string, OpenResult>();
  readonly #store: BlobStore;

  constructor(dataDir: string, store: BlobStore) {
    this.#dir = join(dataDir, "results");
    this.#store = store;
    // Partial results of a previous run belong to jobs this process does not know.
    rmSync(this.#dir, { recursive: true, force: true });
    mkdirSync(this.#dir, { recursive: true });
  }

  /** Creates the (sparse) result file of a job. */
  prepare(jobId: string, rows: number, cols: number): void {
    if (this.#open.has(jobId)) return;
    const path = join(this.#dir, `${jobId}.f64`);
    const fd = openSync(path, "w+");
    const sizeBytes = rows * cols * 8;
    ftruncateSync(fd, sizeBytes);
    this.#open.set(jobId, { path, fd, cols, sizeBytes });
  }

  /** Writes one tile (row-major m × n float64 bytes) at its bounds. */
  writeTile(jobId: string, b: TileBounds, data: Uint8Array): void {
    const r = this.#open.get(jobId);
    if (!r) throw new Error(`no result buffer for job ${jobId}`);
    const n = b.colEnd - b.colStart;
    const rowBytes = n * 8;
    if (n === r.cols) {
      // Full-width tile: one contiguous write.
      writeAll(r.fd, data, 0, data.byteLength, b.rowStart * r.cols * 8);
      return;
    }
    for (let i = b.rowStart; i < b.rowEnd; i++) {
      writeAll(r.fd, data, (i - b.rowStart) * rowBytes, rowBytes, (i * r.cols + b.colStart) * 8);
    }
  }

  /** Seals a job's C into the blob store and returns its blob id. */
  finalize(jobId: string): string {
    const r = this.#open.get(jobId);
    if (!r) throw new Error(`no result buffer for job ${jobId}`);
    const hash = createHash("sha256");
    const buf = Buffer.allocUnsafe(Math.min(r.sizeBytes, 8 << 20));
    for (let pos = 0; pos < r.sizeBytes; ) {
      const n = readSync(r.fd, buf, 0, Math.min(buf.byteLength, r.sizeBytes - pos), pos);
      if (n === 0) throw new Error(`result file of job ${jobId} is short`);
      hash.update(buf.subarray(0, n));
      pos += n;
    }
    closeSync(r.fd);
    this.#open.delete(jobId);
    const blobId = hash.digest("hex");
    this.#store.adopt(r.path, blobId, r.sizeBytes);
    return blobId;
  }

  /** Drops a job's partial result. */
  discard(jobId: string): void {
    const r = this.#open.get(jobId);
    if (!r) return;
    closeSync(r.fd);
    rmSync(r.path, { force: true });
    this.#open.delete(jobId);
  }

  /** Closes every open buffer. */
  close(): void {
    for (const id of [...this.#open.keys()]) this.discard(id);
  }
}

function writeAll(fd: number, data: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0;
  while (done < length) done += writeSync(fd, data, offset + done, length - done, position + done);
}
