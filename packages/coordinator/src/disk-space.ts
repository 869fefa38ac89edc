import { Code } from "@connectrpc/connect";
import type { FreeSpacePort } from "./ports/storage.js";
import { DataDirError, diskSpaceOf, formatBytes } from "./storage-errors.js";

/**
 * Space under the data dir that uploads and new jobs may not use: it keeps the journal
 * writable when the disk is nearly full (a record is well under 1 KiB; new blob folders
 * and a snapshot need a little more), so jobs already acknowledged can still finish.
 */
export const DATA_DIR_RESERVE_BYTES = 4 * 1024 * 1024;

/** Floor of the default watermark (`--min-free-bytes auto`): 1 GiB. */
export const MIN_FREE_FLOOR_BYTES = 1024 ** 3;
/** Share of the file system the default watermark keeps free, when more than the floor: 5%. */
export const MIN_FREE_FRACTION = 0.05;

/** The default watermark for a file system of `totalBytes`: the larger of 1 GiB and 5% of it. */
export function defaultMinFreeBytes(totalBytes: number): number {
  return Math.max(MIN_FREE_FLOOR_BYTES, Math.ceil(totalBytes * MIN_FREE_FRACTION));
}

/**
 * Admission by free space: before the coordinator writes something big under its data
 * dir (an upload, an inline matrix, a new job's C), it checks the bytes fit next to
 * everything already promised (uploads in progress, C buffers of running jobs not yet
 * written) and the {@link DATA_DIR_RESERVE_BYTES} kept for the journal. A request that
 * does not fit is refused up front with RESOURCE_EXHAUSTED instead of filling the disk
 * half way. It is an estimate (other processes share the disk), so every write still
 * handles ENOSPC itself (see storage-errors.ts).
 *
 * Two thresholds: work already accepted (running jobs' tiles and C, workers' tile uploads,
 * the journal) only has to leave {@link DATA_DIR_RESERVE_BYTES}; new work from clients
 * (uploads, submits: {@link admit}) has to leave the watermark, `--min-free-bytes`. The
 * space between the two is what lets running jobs finish on a disk that clients filled.
 */
export class DataDirSpace implements FreeSpacePort {
  readonly dir: string;
  readonly reserveBytes: number;
  readonly #promised: (() => number)[] = [];
  readonly #statfs: typeof diskSpaceOf;
  readonly #minFreeBytes: number | undefined;

  /**
   * @param opts.statfs where free space is read (tests pass a fake); default `statfs(2)`.
   * @param opts.minFreeBytes the watermark; default {@link defaultMinFreeBytes} of the file system.
   */
  constructor(dir: string, opts: { reserveBytes?: number; statfs?: typeof diskSpaceOf; minFreeBytes?: number } = {}) {
    this.dir = dir;
    this.reserveBytes = opts.reserveBytes ?? DATA_DIR_RESERVE_BYTES;
    this.#statfs = opts.statfs ?? diskSpaceOf;
    this.#minFreeBytes = opts.minFreeBytes;
  }

  /** Free and total bytes of the data dir's file system; undefined when they cannot be read. */
  stat(): { freeBytes: number; totalBytes: number } | undefined {
    return this.#statfs(this.dir);
  }

  /** The watermark new client work must leave free, in bytes (never below the journal's reserve). */
  minFreeBytes(totalBytes = this.stat()?.totalBytes ?? 0): number {
    return Math.max(this.reserveBytes, this.#minFreeBytes ?? defaultMinFreeBytes(totalBytes));
  }

  /**
   * Checks that new work from a client (an upload, an inline matrix, a new job's C) of
   * `needBytes` leaves the watermark free, next to what is promised already.
   * @throws DataDirError RESOURCE_EXHAUSTED (`DATA_DIR_FULL`), naming the data dir and its free bytes.
   */
  admit(needBytes: number, what: string): void {
    const space = this.#statfs(this.dir);
    if (space === undefined) return;
    const promised = this.#promisedBytes();
    const min = this.minFreeBytes(space.totalBytes);
    if (space.freeBytes - promised - needBytes >= min) return;
    throw new DataDirError(
      `data dir ${this.dir} has ${formatBytes(space.freeBytes)} free (of ${formatBytes(space.totalBytes)}), ` +
        `${formatBytes(promised)} of it promised to running jobs and uploads: ${what} (${formatBytes(needBytes)}) ` +
        `would leave less than --min-free-bytes ${formatBytes(min)}; running jobs still finish. ` +
        "Free space there (delete jobs, or wait for the garbage collector), then retry",
      Code.ResourceExhausted,
      undefined,
      "full",
      undefined,
      this.dir,
    );
  }

  #promisedBytes(): number {
    let promised = 0;
    for (const p of this.#promised) promised += p();
    return promised;
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
    const promised = this.#promisedBytes();
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
