import { mkdirSync, rmSync } from "node:fs";
import { type FileHandle, open, readdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { Code, type ConnectError } from "@connectrpc/connect";
import { asJobId, type CoreState, checkCompletion, type LeaseKey, tileSizeBytes, type WorkerId } from "@dce/core";
import { ErrorReason } from "@dce/proto";
import { parseStagedTileName, stagedTileName } from "@dce/runtime/blob-layout";
import type { Logger } from "pino";
import { dceError } from "./errors.js";
import { type Clock, every } from "./ports/clock.js";
import { toConnectError } from "./wire.js";

/** What a {@link StagedTiles} needs of the coordinator. */
export interface StagedTilesDeps {
  /** The staging folder, `<data dir>/staging` (`stagingDir` of the blob layout). */
  readonly dir: string;
  readonly state: Readonly<CoreState>;
  readonly clock: Clock;
  readonly log: Logger;
  /** The lease TTL, in ms: a staging file older than twice this is swept. */
  readonly leaseTtlMs: number;
  /** Wall-clock now in ms, to compare with file times (tests pass a fake); default `Date.now`. */
  readonly wallNowMs?: () => number;
}

/** What {@link StagedTiles.sweep} removed. */
export interface SweepResult {
  readonly removed: number;
  readonly kept: number;
}

/**
 * Result tiles that workers on this host wrote into the staging folder of the local
 * store (`ShardResult.staged`) instead of sending their bytes. Fencing covers these bytes
 * as it covers inline ones:
 *
 * - a file is read only when the core would accept a completion of its lease now (the
 *   same `checkCompletion` that `stageTiles` applies again before writing C), so a zombie
 *   whose lease expired gets ABORTED and its bytes are never read;
 * - the file is unlinked as soon as it is opened, and read once into memory: whatever
 *   the worker writes after that is a new file that nothing reads (the sweep removes it);
 * - the file's name carries the lease's epoch, so a zombie's late write can never land
 *   in the file of the lease that replaced it.
 *
 * The folder is emptied when the coordinator starts (no lease survives a restart), and
 * swept every lease TTL: files of jobs that ended or are gone, files whose names are not
 * a lease's, and files older than twice the lease TTL (a worker that crashed between
 * writing and reporting) are deleted. Covered by staged-tiles.test.ts.
 */
export class StagedTiles {
  readonly #d: StagedTilesDeps;
  readonly #wallNowMs: () => number;
  #stopSweeps: (() => void) | undefined;
  #sweeping: Promise<SweepResult> | undefined;

  /**
   * Empties (or creates) the staging folder and starts the periodic sweep. Undefined, with
   * a warning, when the folder cannot be made (a full or read-only data dir): the
   * coordinator then does not offer staging, and workers send their tiles as before.
   */
  static open(deps: StagedTilesDeps): StagedTiles | undefined {
    try {
      // No lease outlives a restart, so no staged tile can be reported to this process.
      rmSync(deps.dir, { recursive: true, force: true });
      mkdirSync(deps.dir, { recursive: true });
    } catch (e) {
      deps.log.warn({ dir: deps.dir, err: e }, "staging folder unusable; workers send result tiles in their reports");
      return undefined;
    }
    return new StagedTiles(deps);
  }

  private constructor(deps: StagedTilesDeps) {
    this.#d = deps;
    this.#wallNowMs = deps.wallNowMs ?? Date.now;
    this.#stopSweeps = every(deps.clock, Math.max(1_000, deps.leaseTtlMs), () => {
      this.sweep().catch((e: unknown) => deps.log.warn({ err: e }, "staging sweep failed"));
    });
  }

  /**
   * Takes the staged tile of `lease` reported by `workerId` with `sizeBytes`: its bytes,
   * read once, or the error its outcome answers. The file is deleted whatever the
   * outcome. Checks the lease before touching the file: a report the core would refuse
   * now (stale epoch, expired lease, job ended, accepted before) gets the core's error.
   * A size other than the tile's is INVALID_ARGUMENT (`INVALID_RESULT`); a file missing
   * or unreadable is NOT_FOUND (`STAGED_TILE_NOT_FOUND`: the worker sends the tile inline).
   */
  async take(workerId: WorkerId, lease: LeaseKey, sizeBytes: bigint): Promise<Uint8Array | ConnectError> {
    const name = stagedTileName(lease);
    const path = name === undefined ? undefined : join(this.#d.dir, name);
    const pre = checkCompletion(this.#d.state, workerId, lease, this.#d.clock.nowMs());
    if (!pre.ok) {
      if (path !== undefined) this.#remove(path);
      return toConnectError(pre.error);
    }
    const meta = { job_id: lease.jobId, shard_index: lease.shardIndex, epoch: String(lease.epoch) };
    // A job the core knows has a well-formed id, so this holds; refused all the same rather than joined.
    if (path === undefined)
      return dceError(Code.InvalidArgument, ErrorReason.MALFORMED_REQUEST, "job id not fit for a file name");
    const expected = tileSizeBytes(pre.value.job.plan, lease.shardIndex);
    if (sizeBytes !== BigInt(expected)) {
      this.#remove(path);
      return sizeError(lease, `staged tile of ${sizeBytes} bytes, expected ${expected}`);
    }
    let fh: FileHandle;
    try {
      fh = await open(path, "r");
    } catch (e) {
      this.#remove(path); // when it exists but cannot be opened here
      return dceError(Code.NotFound, ErrorReason.STAGED_TILE_NOT_FOUND, `staged tile not found (${errnoOf(e)})`, meta, e);
    }
    try {
      // Unlinked before the read: a file opened by that name from now on is a new one,
      // and nothing written into it reaches the bytes read below.
      const [{ size }] = await Promise.all([fh.stat(), unlink(path).catch(() => {})]);
      if (size !== expected) return sizeError(lease, `staged tile file holds ${size} bytes, expected ${expected}`);
      // Not zeroed: every byte is read into it, or it is dropped.
      const data = Buffer.allocUnsafeSlow(expected);
      for (let pos = 0; pos < expected; ) {
        const { bytesRead } = await fh.read(data, pos, expected - pos, pos);
        if (bytesRead === 0) return sizeError(lease, `staged tile file ends at ${pos} bytes, expected ${expected}`);
        pos += bytesRead;
      }
      return data;
    } catch (e) {
      return dceError(Code.NotFound, ErrorReason.STAGED_TILE_NOT_FOUND, `staged tile unreadable (${errnoOf(e)})`, meta, e);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /**
   * Deletes staging files that no report will take: names that are not a lease's, files
   * of jobs that ended or are gone, and files older than twice the lease TTL. Passes do
   * not overlap (a call during one shares it).
   */
  sweep(): Promise<SweepResult> {
    this.#sweeping ??= this.#sweepOnce().finally(() => {
      this.#sweeping = undefined;
    });
    return this.#sweeping;
  }

  /** Stops the periodic sweep. Idempotent. */
  close(): void {
    this.#stopSweeps?.();
    this.#stopSweeps = undefined;
  }

  async #sweepOnce(): Promise<SweepResult> {
    const { dir, state, leaseTtlMs, log } = this.#d;
    let removed = 0;
    let kept = 0;
    for (const name of await readdir(dir)) {
      const path = join(dir, name);
      const lease = parseStagedTileName(name);
      const job = lease === undefined ? undefined : state.jobs.get(asJobId(lease.jobId));
      let stale = job === undefined || (job.state !== "queued" && job.state !== "running");
      if (!stale) {
        const mtimeMs = await stat(path).then(
          (s) => s.mtimeMs,
          () => undefined,
        );
        if (mtimeMs === undefined) continue; // taken meanwhile
        stale = this.#wallNowMs() - mtimeMs > 2 * leaseTtlMs;
      }
      if (!stale) {
        kept++;
        continue;
      }
      if (
        await unlink(path).then(
          () => true,
          () => false,
        )
      ) {
        removed++;
      }
    }
    if (removed > 0) log.debug({ removed, kept }, "staging files swept");
    return { removed, kept };
  }

  #remove(path: string): void {
    unlink(path).catch(() => {});
  }
}

function sizeError(lease: LeaseKey, message: string): ConnectError {
  return toConnectError({ kind: "invalid-result", jobId: lease.jobId, shardIndex: lease.shardIndex, message });
}

function errnoOf(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "error";
}
