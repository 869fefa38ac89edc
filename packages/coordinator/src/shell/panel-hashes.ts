/**
 * SHA-256 of the input panels a lease names peers for (`a_panel_sha256`,
 * `b_panel_sha256`), so a worker can check the bytes a peer serves it: an A row panel is
 * a byte range of A; a B column panel is the k × w panel gathered from B's rows, as
 * PeerService.ReadPanel serves it. Computed only for leases that name peers (a
 * single-host cluster pays nothing), from the blob file in 1 MiB reads (the event loop is
 * never held for a whole panel), once per job and panel; a job's hashes go when the job
 * ends.
 *
 * @packageDocumentation
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { isTerminal } from "@dce/core";
import type { MatrixRef, ShardLease } from "@dce/proto";
import type { BlobStorePort } from "../ports/storage.js";

/** Bytes read at a time while hashing. */
const READ_BYTES = 1024 * 1024;

/** Reads `length` bytes at `offset` of one blob. */
type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

/** What {@link PanelHashes} needs: the blob store, and each job's state (to drop ended jobs). */
export interface PanelHashesDeps {
  readonly blobs: BlobStorePort;
  /** The state of a job, or undefined when the core no longer has it. */
  readonly jobState: (jobId: string) => Parameters<typeof isTerminal>[0] | undefined;
}

/** The panel hashes of running jobs, computed on demand. */
export class PanelHashes {
  readonly #d: PanelHashesDeps;
  /** Job id → panel key → its SHA-256 (a promise, so concurrent grants share one computation). */
  readonly #jobs = new Map<string, Map<string, Promise<Uint8Array>>>();

  constructor(deps: PanelHashesDeps) {
    this.#d = deps;
  }

  /** Jobs with hashes held (for tests and metrics). */
  get jobCount(): number {
    return this.#jobs.size;
  }

  /**
   * Sets `aPanelSha256` on every lease that names A peers, and `bPanelSha256` on every one
   * that names B peers. Leases without peers are left alone.
   *
   * @throws the blob store's error when an input blob cannot be read (the caller's RPC fails).
   */
  async fill(leases: readonly ShardLease[]): Promise<void> {
    this.#dropEnded();
    await Promise.all(
      leases.map(async (lease) => {
        const t = lease.matmul;
        const jobId = lease.lease?.jobId;
        if (t?.a === undefined || t.b === undefined || jobId === undefined) return;
        if (t.aPeers.length > 0) t.aPanelSha256 = await this.#hash(jobId, t.a, "rows", t.rowStart, t.rowEnd);
        if (t.bPeers.length > 0) t.bPanelSha256 = await this.#hash(jobId, t.b, "cols", t.colStart, t.colEnd);
      }),
    );
  }

  #hash(jobId: string, ref: MatrixRef, axis: "rows" | "cols", start: number, end: number): Promise<Uint8Array> {
    let panels = this.#jobs.get(jobId);
    if (panels === undefined) {
      panels = new Map();
      this.#jobs.set(jobId, panels);
    }
    const key = `${ref.blobId}:${axis}:${start}-${end}`;
    let hash = panels.get(key);
    if (hash === undefined) {
      const read = this.#reader(ref.blobId);
      hash =
        axis === "rows"
          ? hashRange(read, start * ref.cols * 8, (end - start) * ref.cols * 8)
          : hashColumns(read, ref, start, end);
      const held = panels;
      hash.catch(() => held.delete(key)); // a failed read is tried again by the next grant
      panels.set(key, hash);
    }
    return hash;
  }

  /** Reads of a blob: from its file when the store has files, else from the store itself (memory storage). */
  #reader(blobId: string): ReadAt {
    const { blobs } = this.#d;
    let path: string | undefined;
    try {
      path = blobs.pathOf(blobId);
    } catch {
      path = undefined;
    }
    if (path === undefined) return async (offset, length) => blobs.read(blobId, offset, length).data;
    const file = path;
    return async (offset, length) => {
      const handle = await open(file, "r");
      try {
        const out = new Uint8Array(length);
        let got = 0;
        while (got < length) {
          const { bytesRead } = await handle.read(out, got, length - got, offset + got);
          if (bytesRead === 0) throw new Error(`blob ${blobId} ends before byte ${offset + length}`);
          got += bytesRead;
        }
        return out;
      } finally {
        await handle.close();
      }
    };
  }

  /** Drops the hashes of jobs that ended or are gone. */
  #dropEnded(): void {
    for (const jobId of this.#jobs.keys()) {
      const state = this.#d.jobState(jobId);
      if (state === undefined || isTerminal(state)) this.#jobs.delete(jobId);
    }
  }
}

/** SHA-256 of `length` bytes at `offset`. */
async function hashRange(read: ReadAt, offset: number, length: number): Promise<Uint8Array> {
  const hash = createHash("sha256");
  for (let at = 0; at < length; at += READ_BYTES) hash.update(await read(offset + at, Math.min(READ_BYTES, length - at)));
  return new Uint8Array(hash.digest());
}

/** SHA-256 of columns `[c0, c1)` of a row-major float64 matrix, gathered row by row (whole rows read, about 1 MiB at a time). */
async function hashColumns(read: ReadAt, ref: MatrixRef, c0: number, c1: number): Promise<Uint8Array> {
  const hash = createHash("sha256");
  const rowBytes = ref.cols * 8;
  const rowsPerRead = Math.max(1, Math.floor(READ_BYTES / rowBytes));
  for (let r0 = 0; r0 < ref.rows; r0 += rowsPerRead) {
    const rows = Math.min(rowsPerRead, ref.rows - r0);
    const block = await read(r0 * rowBytes, rows * rowBytes);
    for (let i = 0; i < rows; i++) hash.update(block.subarray(i * rowBytes + c0 * 8, i * rowBytes + c1 * 8));
  }
  return new Uint8Array(hash.digest());
}
