import type { CoreState, JobId } from "@dce/core";
import type { Logger } from "pino";
import type { Clock } from "../ports/clock.js";
import type { ResultSinkPort } from "../ports/storage.js";
import { DataDirError, ResultReleasedError } from "../storage-errors.js";
import type { ShellContext } from "./context.js";

/** First delay before sealing a result again after the disk refused it, in ms (doubled each time). */
const SEAL_RETRY_FIRST_MS = 1_000;
/** Longest delay between tries to seal a result, in ms. */
const SEAL_RETRY_MAX_MS = 30_000;
/** Default largest C sealed in the step that accepts its last tile (hashing 1 MiB takes a few ms). */
const SEAL_AT_ONCE_MAX_BYTES = 1024 * 1024;

/**
 * Seals each finished job's C into the blob store and records its success. A seal the
 * disk refuses leaves the job running with its tiles and is tried again later; covered
 * by coordinator-disk.test.ts.
 */
export class ResultFinalizer {
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #sink: ResultSinkPort;
  readonly #state: Readonly<CoreState>;
  readonly #apply: ShellContext["apply"];
  readonly #isClosed: () => boolean;
  /** Delay before the next try of each result that could not be sealed (disk full), in ms. */
  readonly #retryMs = new Map<string, number>();
  /** Jobs whose C is being hashed now: a second finalize of one meanwhile is dropped (the first one's outcome stands). */
  readonly #sealing = new Set<string>();
  readonly #sealAtOnceMaxBytes: number;

  constructor(deps: {
    log: Logger;
    clock: Clock;
    sink: ResultSinkPort;
    state: Readonly<CoreState>;
    apply: ShellContext["apply"];
    isClosed: () => boolean;
    sealAtOnceMaxBytes?: number;
  }) {
    this.#sealAtOnceMaxBytes = deps.sealAtOnceMaxBytes ?? SEAL_AT_ONCE_MAX_BYTES;
    this.#log = deps.log;
    this.#clock = deps.clock;
    this.#sink = deps.sink;
    this.#state = deps.state;
    this.#apply = deps.apply;
    this.#isClosed = deps.isClosed;
  }

  /**
   * Seals a job's result: a small one at once after the current step, so its success
   * record joins the group commit that makes its last tile's acceptance durable (one
   * journal fsync less at the end of each small job; the reply to that CompleteShards
   * waits for the same commit either way); a larger one after the current reply is sent
   * (it reads the whole buffer).
   */
  finalize(jobId: JobId): void {
    const plan = this.#state.jobs.get(jobId)?.plan;
    // A microtask runs before the journal's commit of the current step starts its write
    // (a small C is sealed without an await, so its success joins that commit).
    if (plan !== undefined && plan.rows * plan.cols * 8 <= this.#sealAtOnceMaxBytes) queueMicrotask(() => void this.#seal(jobId));
    else this.#clock.setTimer(0, () => void this.#seal(jobId));
  }

  async #seal(jobId: JobId): Promise<void> {
    // Cancelled or deleted while the seal waited: nothing to seal, and its buffer is gone.
    if (!this.#state.jobs.get(jobId)?.finalizing || this.#sealing.has(jobId)) return;
    this.#sealing.add(jobId);
    let blobId: string;
    try {
      // A small C is sealed at once (no await: its success is applied in this same turn).
      const sealed = this.#sink.finalize(jobId);
      blobId = typeof sealed === "string" ? sealed : await sealed;
    } catch (e) {
      this.#failed(jobId, e);
      return;
    } finally {
      this.#sealing.delete(jobId);
    }
    // The job may have been cancelled or deleted, or the coordinator closed, while C was hashed.
    if (this.#isClosed() || !this.#state.jobs.get(jobId)?.finalizing) return;
    this.#retryMs.delete(jobId);
    const out = this.#apply({ type: "result-finalized", nowMs: this.#clock.nowMs(), jobId, resultBlobId: blobId });
    this.#logSuccess(jobId, blobId);
    // The buffer goes only once the success is durable: a crash before that reseals it.
    out.durable.then(
      () => this.#sink.release(jobId),
      () => {},
    );
  }

  #failed(jobId: JobId, e: unknown): void {
    if (e instanceof ResultReleasedError || this.#isClosed() || !this.#state.jobs.get(jobId)?.finalizing) return;
    if (e instanceof DataDirError) {
      // Not the job's fault: it stays running, its tiles kept, and sealing is tried again.
      const ms = Math.min(2 * (this.#retryMs.get(jobId) ?? SEAL_RETRY_FIRST_MS / 2), SEAL_RETRY_MAX_MS);
      this.#retryMs.set(jobId, ms);
      this.#log.error({ jobId, err: e.rawMessage, retryInMs: ms }, "result could not be sealed; trying again");
      this.#clock.setTimer(ms, () => {
        if (!this.#isClosed() && this.#state.jobs.get(jobId)?.finalizing) this.finalize(jobId);
      });
      return;
    }
    this.#log.error({ jobId, err: e }, "result could not be sealed");
    this.#apply({ type: "result-failed", nowMs: this.#clock.nowMs(), jobId, message: String(e) });
  }

  /** The job's summary: with "job submitted" and "job started" it tells the story at info level. */
  #logSuccess(jobId: JobId, resultBlobId: string): void {
    const job = this.#state.jobs.get(jobId);
    this.#log.info(
      {
        jobId,
        resultBlobId,
        ...(job
          ? {
              shards: job.plan.shardCount,
              retried: job.retriedCount,
              kernel: job.kernel,
              runMs: job.finishedAtMs - job.startedAtMs,
              totalMs: job.finishedAtMs - job.createdAtMs,
            }
          : {}),
      },
      "job succeeded",
    );
  }
}
