import { Code } from "@connectrpc/connect";
import { DataDirError, diskSpaceOf, formatBytes } from "./storage-errors.js";

/**
 * Space under the data dir that uploads and new jobs may not use: it keeps the journal
 * writable when the disk is nearly full (a record is well under 1 KiB; new blob folders
 * and a snapshot need a little more), so jobs already acknowledged can still finish.
 */
export const DATA_DIR_RESERVE_BYTES = 4 * 1024 * 1024;

/**
 * Admission by free space: before the coordinator writes something big under its data
 * dir (an upload, an inline matrix, a new job's C), it checks the bytes fit next to
 * everything already promised (uploads in progress, C buffers of running jobs not yet
 * written) and the {@link DATA_DIR_RESERVE_BYTES} kept for the journal. A request that
 * does not fit is refused up front with RESOURCE_EXHAUSTED instead of filling the disk
 * half way. It is an estimate (other processes share the disk), so every write still
 * handles ENOSPC itself (see storage-errors.ts).
 */
export class DataDirSpace {
  readonly dir: string;
  readonly reserveBytes: number;
  readonly #promised: (() => number)[] = [];
  readonly #statfs: typeof diskSpaceOf;

  constructor(dir: string, opts: { reserveBytes?: number; statfs?: typeof diskSpaceOf } = {}) {
    this.dir = dir;
    this.reserveBytes = opts.reserveBytes ?? DATA_DIR_RESERVE_BYTES;
    this.#statfs = opts.statfs ?? diskSpaceOf;
  }

  /** Adds a source of bytes promised to writes in progress, counted against free space. */
  promise(bytes: () => number): void {
    this.#promised.push(bytes);
  }

  /**
   * Checks that `needBytes` more fit.
   * @param what the write, for the message, e.g. `an upload of 8388608 bytes`.
   * @throws DataDirError RESOURCE_EXHAUSTED when they do not; nothing is written then.
   */
  require(needBytes: number, what: string): void {
    const space = this.#statfs(this.dir);
    if (space === undefined) return; // cannot tell: the write itself reports ENOSPC
    let promised = 0;
    for (const p of this.#promised) promised += p();
    if (space.freeBytes - promised - needBytes >= this.reserveBytes) return;
    throw new DataDirError(
      `data dir ${this.dir} is full: ${what} needs ${formatBytes(needBytes)}, and ` +
        `${formatBytes(space.freeBytes)} of ${formatBytes(space.totalBytes)} is free, ` +
        `${formatBytes(promised)} of it promised to running jobs and uploads and ${formatBytes(this.reserveBytes)} kept for the journal; ` +
        "free space there (or restart the coordinator with a bigger --data-dir), then retry",
      Code.ResourceExhausted,
      undefined,
      "full",
      undefined,
      this.dir,
    );
  }
}
