import { open, unlink } from "node:fs/promises";
import type { LeaseRef } from "@dce/proto";
import { stagedTilePath } from "@dce/runtime/blob-layout";
import { errorMessage } from "../errors.js";
import type { WorkerLogger } from "../log-scope.js";
import type { Session } from "../session/session.js";

/**
 * After a staging write failed, tiles go inline for this long before staging is tried
 * again: a full or read-only disk does not cost every tile a failed write.
 */
export const STAGING_PAUSE_MS = 30_000;

/**
 * Tiles smaller than this go inline even when staging is on: a staged tile costs a few
 * file-system calls on each side (open, write, close; open, unlink, read, close), more
 * than encoding a small tile into the report it rides in (tiny shards are batched many
 * to one CompleteShards).
 */
export const STAGE_MIN_BYTES = 64 * 1024;

/** What a {@link TileStager} needs of the worker around it. */
export interface TileStagerDeps {
  readonly session: Session;
  readonly log: WorkerLogger;
  /** Wall-clock now in ms (tests pass a fake); default `Date.now`. */
  readonly nowMs?: () => number;
}

/**
 * Writes result tiles into the staging folder of the coordinator's local store, when the
 * coordinator takes staged tiles and the store is reachable from here: the tile then
 * crosses as one page-cache write here and one read there, instead of being encoded,
 * sent and decoded. The file is the one the lease names
 * (`<store>/staging/<job>.<shard>.<epoch>.f64`, see `@dce/runtime/blob-layout`), written
 * straight from the kernel's output with no copy and no fsync (the coordinator makes the
 * bytes durable when it writes them into C).
 *
 * A write that fails (ENOSPC, EACCES, EROFS, …) loses nothing: the caller sends the tile
 * inline, the partial file is removed, staging pauses for {@link STAGING_PAUSE_MS}, and
 * only the first failure of a session is logged at info (later ones at debug).
 */
export class TileStager {
  readonly #d: TileStagerDeps;
  readonly #nowMs: () => number;
  #pausedUntilMs = 0;
  #failures = 0;

  constructor(deps: TileStagerDeps) {
    this.#d = deps;
    this.#nowMs = deps.nowMs ?? Date.now;
  }

  /**
   * Writes `bytes` (the tile of `lease`) into its staging file.
   * @returns true when the whole tile is in the file: report it as staged. False when
   *   staging is off or paused, the tile is under {@link STAGE_MIN_BYTES}, or the write
   *   failed: send the tile another way.
   */
  async stage(lease: LeaseRef, bytes: Uint8Array): Promise<boolean> {
    const { session } = this.#d;
    const store = session.localStore;
    if (store === undefined || !session.acceptsStagedTiles || bytes.byteLength < STAGE_MIN_BYTES) return false;
    if (this.#nowMs() < this.#pausedUntilMs) return false;
    const path = stagedTilePath(store.dir, lease);
    if (path === undefined) return false;
    try {
      const fh = await open(path, "w");
      try {
        for (let pos = 0; pos < bytes.byteLength; ) {
          const { bytesWritten } = await fh.write(bytes, pos, bytes.byteLength - pos, pos);
          pos += bytesWritten;
        }
      } finally {
        await fh.close();
      }
      return true;
    } catch (e) {
      // A partial file must not wait for the sweep; the tile goes another way.
      await unlink(path).catch(() => {});
      this.#pausedUntilMs = this.#nowMs() + STAGING_PAUSE_MS;
      const fields = { dir: store.dir, err: errorMessage(e), pauseMs: STAGING_PAUSE_MS };
      const msg = "could not stage a result tile in the local store; sending tiles inline for a while";
      if (this.#failures++ === 0) this.#d.log.info(fields, msg);
      else this.#d.log.debug(fields, msg);
      return false;
    }
  }
}
