import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { type CoreState, referencedBlobs } from "@dce/core";
import type { Logger } from "pino";
import { type Clock, every } from "../ports/clock.js";
import type { BlobStorePort, FreeSpacePort } from "../ports/storage.js";

/** The steps of a collection pass a crash-point test may kill the process at. */
export const GC_CRASH_POINTS = ["gc-after-tombstone", "gc-after-commit", "gc-mid-delete"] as const;
/** One of {@link GC_CRASH_POINTS}. */
export type GcCrashPoint = (typeof GC_CRASH_POINTS)[number];

/** Parses a {@link GcCrashPoint}; undefined for an empty or unknown value. */
export function parseGcCrashPoint(text: string | undefined): GcCrashPoint | undefined {
  return GC_CRASH_POINTS.find((p) => p === text);
}

/** Settings of the blob garbage collector. */
export interface BlobGcConfig {
  /**
   * An unreferenced blob is kept at least this long after the collector first saw it
   * unreferenced, and again after its bytes were last stored (an upload not yet named by
   * a submit survives), in ms.
   */
  readonly graceMs: number;
  /** A pass runs this often, in ms; 0 runs passes only on request. */
  readonly intervalMs: number;
  /** Fault injection for crash-point tests only: the step to call `kill` at. */
  readonly crashAt?: GcCrashPoint;
  /** Kills the process at once (SIGKILL), for crash-point tests only (the bin's cli.ts passes it). */
  readonly kill?: () => void;
}

/**
 * Deletions between two yields to the event loop. An unlink on a busy disk can take a
 * millisecond (measured: 20,000 blobs took 23 s with the disk shared), so a long pass
 * must not hold the event loop for all of them.
 */
const DELETE_BATCH = 32;

/** Defaults of {@link BlobGcConfig}: a grace of 1 h, a pass every 60 s. */
export const DEFAULT_BLOB_GC: BlobGcConfig = { graceMs: 3_600_000, intervalMs: 60_000 };

/** What one pass did. */
export interface GcPassResult {
  readonly blobsDeleted: number;
  readonly bytesDeleted: number;
  /** Unreferenced blobs still within their grace period. */
  readonly blobsKept: number;
}

/** Counters since the coordinator started, for metrics. */
export interface GcCounters {
  passes: number;
  blobsDeleted: number;
  bytesDeleted: number;
  /** Deletions the disk refused (the blob is tried again by a later pass). */
  failures: number;
}

/**
 * What the blob store holds (blobs, bytes), the data dir's free and total bytes and its
 * watermark (absent when unknown: memory storage), and the collector's counts since the
 * start. See `BlobCollector.stats`.
 */
export interface StorageStats {
  readonly blobs: number;
  readonly bytes: number;
  readonly freeBytes?: number;
  readonly totalBytes?: number;
  readonly minFreeBytes?: number;
  readonly gc: Readonly<GcCounters>;
}

/** What the collector needs of the coordinator. */
export interface BlobGcDeps {
  readonly blobs: BlobStorePort;
  readonly state: Readonly<CoreState>;
  readonly clock: Clock;
  readonly log: Logger;
  /** Resolves once every journal record appended so far is durable (`JournalPort.commit`). */
  readonly commit: () => Promise<void>;
  /** Called at each named step of a pass (tests); default: `config.kill` at `config.crashAt`. */
  readonly crash?: (point: GcCrashPoint) => void;
  readonly config: BlobGcConfig;
  /** Free space of the data dir, for {@link BlobCollector.stats}; absent on memory storage. */
  readonly space?: FreeSpacePort | undefined;
}

/**
 * The coordinator's collector: `config` (default {@link DEFAULT_BLOB_GC}) over the
 * coordinator's parts, killing the process at `config.crashAt` when a test asks.
 */
export function createBlobCollector(config: BlobGcConfig | undefined, deps: Omit<BlobGcDeps, "config" | "crash">): BlobCollector {
  return new BlobCollector({ ...deps, config: config ?? DEFAULT_BLOB_GC });
}

/**
 * Deletes the blobs no job in core state references (`referencedBlobs`: A, B and C of
 * every job), once they have been unreferenced for the grace period, every
 * `intervalMs` and on {@link requestPass}.
 *
 * Why it is safe (docs/operations.md, "Blob garbage collection"):
 * - The decision is taken in one synchronous step against the in-memory state, and each
 *   doomed blob is tombstoned in that same step: from then on the store answers as if it
 *   were gone, so a submit naming it gets BLOB_NOT_FOUND and an upload of the same bytes
 *   is received in full (not deduplicated); storing it revives the blob, and the
 *   deletion, which checks the tombstone in the same synchronous step as it unlinks,
 *   leaves it. A submit never sees a blob that is about to disappear.
 * - Files are deleted only after the journal has committed every record appended before
 *   the decision. The durable state is then no richer than the state the decision saw
 *   (memory is only ever ahead of the journal), so no record a restart replays names a
 *   deleted blob, even when a job's deletion was the last record before the crash.
 * - Deletions are idempotent and tombstones live in memory only: a crash at any step
 *   leaves files that are either still there (the next pass, after a restart's fresh
 *   grace period, finds them unreferenced again) or gone (and unreferenced).
 *
 * The grace period restarts when the collector runs for the first time after a restart,
 * so a restart only ever keeps blobs longer.
 */
export class BlobCollector {
  readonly #deps: BlobGcDeps;
  /** Unreferenced blobs: when first seen so, at which generation. */
  readonly #unreferenced = new Map<string, { sinceMs: number; generation: number }>();
  /**
   * Blobs a deleted job named, at the generation they had when it was deleted: garbage at
   * once when nothing references them and their bytes were not stored again since.
   */
  readonly #released = new Map<string, number>();
  /** Tombstoned blobs whose deletion the disk refused: tried again by the next pass. */
  readonly #retry = new Set<string>();
  readonly counters: GcCounters = { passes: 0, blobsDeleted: 0, bytesDeleted: 0, failures: 0 };
  #running: Promise<GcPassResult> | undefined;
  #again: Promise<GcPassResult> | undefined;
  #stopTimer: (() => void) | undefined;
  #closed = false;

  constructor(deps: BlobGcDeps) {
    this.#deps = deps;
    if (deps.config.intervalMs > 0) {
      this.#stopTimer = every(deps.clock, deps.config.intervalMs, () => {
        this.requestPass().catch((e: unknown) => deps.log.error({ err: e }, "blob collection failed"));
      });
    }
  }

  /**
   * Runs a pass as soon as possible: now, or right after the pass in progress (calls
   * made meanwhile share that one). Resolves with what it deleted.
   */
  requestPass(): Promise<GcPassResult> {
    if (this.#running === undefined) {
      this.#running = this.#pass().finally(() => {
        this.#running = undefined;
      });
      return this.#running;
    }
    this.#again ??= this.#running
      .catch(() => undefined)
      .then(() => {
        this.#again = undefined;
        return this.requestPass();
      });
    return this.#again;
  }

  /**
   * A job naming `blobIds` left core state (deleted): call in the same step. The next pass
   * deletes those blobs without the grace period (which protects uploads not yet named by
   * a submit), unless a job still references them or their bytes are stored again after
   * this call (an upload of the same bytes gets the whole grace period). Files still go
   * only after the journal commit, as for every pass.
   */
  release(blobIds: Iterable<string>): void {
    for (const id of blobIds) {
      const generation = this.#deps.blobs.generationOf(id);
      if (generation !== undefined) this.#released.set(id, generation);
    }
  }

  /**
   * What the blob store holds, the data dir's free space and watermark (absent on memory
   * storage, or when they cannot be read), and what passes did since the start.
   */
  stats(): StorageStats {
    const space = this.#deps.space;
    const fs = space?.stat();
    return {
      ...this.#deps.blobs.usage(),
      ...(fs && space ? { freeBytes: fs.freeBytes, totalBytes: fs.totalBytes, minFreeBytes: space.minFreeBytes() } : {}),
      gc: { ...this.counters },
    };
  }

  /** Stops the timer; a pass in progress deletes nothing more. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#stopTimer?.();
    this.#stopTimer = undefined;
  }

  async #pass(): Promise<GcPassResult> {
    const { blobs, clock, config, log } = this.#deps;
    const crash =
      this.#deps.crash ??
      ((point: GcCrashPoint) => {
        if (point === config.crashAt) config.kill?.();
      });
    const nowMs = clock.nowMs();
    // One synchronous step: what is referenced, what is doomed, and the tombstones.
    const referenced = referencedBlobs(this.#deps.state);
    const doomed: string[] = [...this.#retry];
    this.#retry.clear();
    const listed = new Set<string>();
    let kept = 0;
    for (const b of blobs.list()) {
      listed.add(b.blobId);
      const released = this.#released.get(b.blobId);
      this.#released.delete(b.blobId);
      if (referenced.has(b.blobId)) {
        this.#unreferenced.delete(b.blobId);
        continue;
      }
      if (released === b.generation) {
        if (blobs.tombstone(b.blobId)) doomed.push(b.blobId);
        continue;
      }
      let seen = this.#unreferenced.get(b.blobId);
      if (seen === undefined || seen.generation !== b.generation) {
        seen = { sinceMs: nowMs, generation: b.generation };
        this.#unreferenced.set(b.blobId, seen);
      }
      if (nowMs - seen.sinceMs < config.graceMs) kept++;
      else if (blobs.tombstone(b.blobId)) doomed.push(b.blobId);
    }
    for (const id of this.#unreferenced.keys()) if (!listed.has(id)) this.#unreferenced.delete(id);
    this.#released.clear();
    this.counters.passes++;
    if (doomed.length === 0) return { blobsDeleted: 0, bytesDeleted: 0, blobsKept: kept };
    crash("gc-after-tombstone");
    // Every record appended before the decision (a job's deletion above all) is durable
    // before a file goes: a restart can never bring back a job naming a deleted blob.
    await this.#deps.commit();
    crash("gc-after-commit");
    let blobsDeleted = 0;
    let bytesDeleted = 0;
    for (const [i, id] of doomed.entries()) {
      // Unlinks are synchronous (each checks its tombstone in the same step); a long list
      // lets requests in between. Covered by blob-gc.test.ts "yields to the event loop".
      if (i > 0 && i % DELETE_BATCH === 0) await yieldToEventLoop();
      if (this.#closed) break;
      this.#unreferenced.delete(id);
      let bytes: number;
      try {
        bytes = blobs.remove(id);
      } catch (e) {
        this.counters.failures++;
        this.#retry.add(id);
        log.error({ err: e, blobId: id }, "blob could not be deleted; a later pass tries again");
        continue;
      }
      if (bytes > 0) {
        blobsDeleted++;
        bytesDeleted += bytes;
      }
      crash("gc-mid-delete");
    }
    this.counters.blobsDeleted += blobsDeleted;
    this.counters.bytesDeleted += bytesDeleted;
    if (blobsDeleted > 0) log.info({ blobsDeleted, bytesDeleted, blobsKept: kept }, "unreferenced blobs deleted");
    return { blobsDeleted, bytesDeleted, blobsKept: kept };
  }
}
