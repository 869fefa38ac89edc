import { statfsSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema, ErrorReason } from "@dce/proto";
import { errorInfo } from "./errors.js";

/**
 * What went wrong with the data dir's disk, by `errno` code: it ran out of space or
 * quota (the caller may retry once space is freed), or it failed (an I/O error, or the
 * file system was remounted read-only after one).
 */
export type DataDirFault = "full" | "failed";

const FAULTS: Readonly<Record<string, { fault: DataDirFault; code: Code; what: string }>> = {
  ENOSPC: { fault: "full", code: Code.ResourceExhausted, what: "is full" },
  EDQUOT: { fault: "full", code: Code.ResourceExhausted, what: "is over its disk quota" },
  EIO: { fault: "failed", code: Code.Unavailable, what: "had an I/O error" },
  EROFS: { fault: "failed", code: Code.Unavailable, what: "is read-only" },
};

/**
 * A write under the data dir failed because of the disk, not the request. It is a
 * ConnectError with its final code, so whatever catches it on the way to the client
 * passes it on unchanged: `RESOURCE_EXHAUSTED` when the disk is full or over quota
 * (ENOSPC, EDQUOT), `UNAVAILABLE` when it failed (EIO, EROFS). The message names the
 * data dir, what was being written, the errno and the space left; `cause` is the
 * original Node.js error.
 */
export class DataDirError extends ConnectError {
  // The name stays "ConnectError": ConnectError's `instanceof` accepts a subclass by that
  // name only, and the server's error interceptor must pass this error on unchanged.
  /** Matches instances of this class (ConnectError's own check would accept any ConnectError). */
  static override [Symbol.hasInstance](v: unknown): boolean {
    return typeof v === "object" && v !== null && Object.prototype.isPrototypeOf.call(DataDirError.prototype, v);
  }
  /** The errno code, e.g. `ENOSPC`; undefined when the write was refused before it was tried. */
  readonly errno: string | undefined;
  /** Whether the disk is full (retry once space is freed) or failed. */
  readonly fault: DataDirFault;

  /**
   * @param dataDir the data dir, sent as `data_dir` in the error's ErrorInfo (reason
   *   `DATA_DIR_FULL` or `DATA_DIR_FAILED` by `fault`, with `errno` when known).
   */
  constructor(message: string, code: Code, errno: string | undefined, fault: DataDirFault, cause?: unknown, dataDir?: string) {
    const reason = fault === "full" ? ErrorReason.DATA_DIR_FULL : ErrorReason.DATA_DIR_FAILED;
    const info = errorInfo(reason, { data_dir: dataDir, errno });
    super(message, code, undefined, [{ desc: ErrorInfoSchema, value: info }], cause);
    this.errno = errno;
    this.fault = fault;
  }
}

/** The errno code of a Node.js system error, if `e` is one. */
function errnoOf(e: unknown): string | undefined {
  const code = typeof e === "object" && e !== null ? (e as { code?: unknown }).code : undefined;
  return typeof code === "string" ? code : undefined;
}

/** Bytes free for this process under `dir` and the size of its file system; undefined if unknown. */
export function diskSpaceOf(dir: string): { freeBytes: number; totalBytes: number } | undefined {
  try {
    const s = statfsSync(dir);
    return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
  } catch {
    return undefined;
  }
}

/** Bytes as people read them: `512 B`, `3.2 KiB`, `48.0 MiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** The part of a message saying how much space is left, e.g. `12.0 KiB of 48.0 MiB free`. */
export function describeSpace(dataDir: string): string {
  const s = diskSpaceOf(dataDir);
  return s === undefined ? "free space unknown" : `${formatBytes(s.freeBytes)} of ${formatBytes(s.totalBytes)} free`;
}

/**
 * The {@link DataDirError} for a failed write, or undefined when `e` is not a disk
 * fault (a bug or a bad request, to be handled as before). An error that already is a
 * DataDirError is returned as it is.
 * @param dataDir the coordinator's data dir, named in the message.
 * @param doing what was being done, e.g. `writing upload 3f2a…` or `writing the journal`.
 */
export function dataDirError(e: unknown, dataDir: string, doing: string): DataDirError | undefined {
  if (e instanceof DataDirError) return e;
  const errno = errnoOf(e);
  const f = errno === undefined ? undefined : FAULTS[errno];
  if (errno === undefined || f === undefined) return undefined;
  const advice =
    f.fault === "full"
      ? `free space there (or restart the coordinator with a bigger --data-dir), then retry`
      : "check the disk; the coordinator keeps serving what it can read";
  return new DataDirError(
    `data dir ${dataDir} ${f.what} (${errno}) while ${doing}; ${describeSpace(dataDir)}; ${advice}`,
    f.code,
    errno,
    f.fault,
    e,
    dataDir,
  );
}

/**
 * Runs a write (or read) under the data dir; a disk fault comes out as a
 * {@link DataDirError}, anything else unchanged. `cleanup` runs first on any failure (removing what was half
 * written); its own failure is ignored, since the first error is the one to report.
 */
export function withDataDir<T>(dataDir: string, doing: string, fn: () => T, cleanup?: () => void): T {
  try {
    return fn();
  } catch (e) {
    try {
      cleanup?.();
    } catch {
      // The original error says what happened; a failed cleanup is left for the next start.
    }
    throw dataDirError(e, dataDir, doing) ?? e;
  }
}

/** {@link withDataDir} for an async write. */
export async function withDataDirAsync<T>(
  dataDir: string,
  doing: string,
  fn: () => Promise<T>,
  cleanup?: () => void | Promise<void>,
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    try {
      await cleanup?.();
    } catch {
      // As above: the first error is reported.
    }
    throw dataDirError(e, dataDir, doing) ?? e;
  }
}

/** A seal found its job's buffer released (the job was cancelled or deleted meanwhile). */
export class ResultReleasedError extends Error {
  constructor(jobId: string) {
    super(`the result buffer of job ${jobId} was released during its seal`);
    this.name = "ResultReleasedError";
  }
}
