import type { TileBounds } from "@dce/core";
import type { BlobStorePort, ResultSinkPort } from "../ports/storage.js";

interface MemoryResult {
  readonly rows: number;
  readonly cols: number;
  bytes: Uint8Array;
}

/** Settings of a {@link MemoryResultSink}. */
export interface MemoryResultSinkOptions {
  /**
   * Model a page cache: tile writes reach the durable copy only at {@link MemoryResultSink.sync},
   * and {@link MemoryResultSink.crash} drops those not synced yet. Default false: every
   * write is durable at once.
   */
  readonly explicitSync?: boolean;
}

/**
 * Result buffers held in memory, for tests and the simulation: each job's C assembled
 * tile by tile at the place its bounds fix, sealed into the given blob store. Buffers
 * survive {@link close}, so a coordinator restarted on the same sink keeps the tiles it
 * accepted, like the disk `ResultSink`'s files. Admits every job (no disk to fill).
 */
export class MemoryResultSink implements ResultSinkPort {
  readonly #blobs: BlobStorePort;
  readonly #buffers = new Map<string, MemoryResult>();
  /** With `explicitSync`: the durable copy of each buffer, and the writes not synced yet. */
  readonly #disk: Map<string, MemoryResult> | undefined;
  #unsynced: { jobId: string; bounds: TileBounds; data: Uint8Array }[] = [];

  /** @param blobs where sealed results go (normally the coordinator's `MemoryBlobStore`). */
  constructor(blobs: BlobStorePort, options: MemoryResultSinkOptions = {}) {
    this.#blobs = blobs;
    this.#disk = options.explicitSync ? new Map() : undefined;
  }

  retain(activeJobIds: ReadonlySet<string>): void {
    for (const id of [...this.#buffers.keys()]) if (!activeJobIds.has(id)) this.#buffers.delete(id);
    for (const id of [...(this.#disk?.keys() ?? [])]) if (!activeJobIds.has(id)) this.#disk?.delete(id);
  }

  has(jobId: string): boolean {
    return this.#buffers.has(jobId);
  }

  admit(_rows: number, _cols: number): void {}

  prepare(jobId: string, rows: number, cols: number): void {
    if (this.#buffers.has(jobId)) return;
    this.#buffers.set(jobId, { rows, cols, bytes: new Uint8Array(rows * cols * 8) });
    // Creating the file is durable at once; its contents are not.
    if (this.#disk && !this.#disk.has(jobId)) this.#disk.set(jobId, { rows, cols, bytes: new Uint8Array(rows * cols * 8) });
  }

  writeTile(jobId: string, b: TileBounds, data: Uint8Array): void {
    const r = this.#buffers.get(jobId);
    if (!r) throw new Error(`no result buffer for job ${jobId}`);
    place(r, b, data);
    if (this.#disk) this.#unsynced.push({ jobId, bounds: b, data: data.slice() });
  }

  flush(_jobId: string): void {}

  finalize(jobId: string): string {
    const r = this.#buffers.get(jobId);
    if (!r) throw new Error(`no result buffer for job ${jobId}`);
    return this.#blobs.put(r.bytes);
  }

  release(jobId: string): void {
    this.#buffers.delete(jobId);
    this.#disk?.delete(jobId);
  }

  close(): void {}

  /** With `explicitSync`: makes every tile written so far durable (an fsync of the result files). */
  sync(): void {
    const disk = this.#disk;
    if (!disk) return;
    for (const w of this.#unsynced) {
      const r = disk.get(w.jobId);
      if (r) place(r, w.bounds, w.data);
    }
    this.#unsynced = [];
  }

  /** With `explicitSync`: drops the writes not synced, as a killed process loses its page cache. */
  crash(): void {
    const disk = this.#disk;
    if (!disk) return;
    this.#unsynced = [];
    this.#buffers.clear();
    for (const [id, r] of disk) this.#buffers.set(id, { rows: r.rows, cols: r.cols, bytes: r.bytes.slice() });
  }

  /** The durable bytes of a job's buffer (the synced copy with `explicitSync`), or undefined without one. Do not mutate. */
  durableBytesOf(jobId: string): Uint8Array | undefined {
    return (this.#disk ?? this.#buffers).get(jobId)?.bytes;
  }
}

/** Writes a tile's row-major bytes at its bounds. */
function place(r: MemoryResult, b: TileBounds, data: Uint8Array): void {
  const rowBytes = (b.colEnd - b.colStart) * 8;
  for (let i = b.rowStart; i < b.rowEnd; i++) {
    const from = (i - b.rowStart) * rowBytes;
    r.bytes.set(data.subarray(from, from + rowBytes), (i * r.cols + b.colStart) * 8);
  }
}
