import type { TileBounds } from "@dce/core";
import type { BlobStorePort, ResultSinkPort } from "../ports/storage.js";

interface MemoryResult {
  readonly cols: number;
  readonly bytes: Uint8Array;
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

  /** @param blobs where sealed results go (normally the coordinator's `MemoryBlobStore`). */
  constructor(blobs: BlobStorePort) {
    this.#blobs = blobs;
  }

  retain(activeJobIds: ReadonlySet<string>): void {
    for (const id of [...this.#buffers.keys()]) if (!activeJobIds.has(id)) this.#buffers.delete(id);
  }

  has(jobId: string): boolean {
    return this.#buffers.has(jobId);
  }

  admit(_rows: number, _cols: number): void {}

  prepare(jobId: string, rows: number, cols: number): void {
    if (!this.#buffers.has(jobId)) this.#buffers.set(jobId, { cols, bytes: new Uint8Array(rows * cols * 8) });
  }

  writeTile(jobId: string, b: TileBounds, data: Uint8Array): void {
    const r = this.#buffers.get(jobId);
    if (!r) throw new Error(`no result buffer for job ${jobId}`);
    const rowBytes = (b.colEnd - b.colStart) * 8;
    for (let i = b.rowStart; i < b.rowEnd; i++) {
      const from = (i - b.rowStart) * rowBytes;
      r.bytes.set(data.subarray(from, from + rowBytes), (i * r.cols + b.colStart) * 8);
    }
  }

  flush(_jobId: string): void {}

  finalize(jobId: string): string {
    const r = this.#buffers.get(jobId);
    if (!r) throw new Error(`no result buffer for job ${jobId}`);
    return this.#blobs.put(r.bytes);
  }

  release(jobId: string): void {
    this.#buffers.delete(jobId);
  }

  close(): void {}
}
