import type { Client } from "@connectrpc/connect";
import type { LeaseRef, WorkerService } from "@dce/proto";
import { errorMessage } from "../errors.js";
import type { WorkerLogger } from "../log-scope.js";
import { leaseFields } from "../pull/shard.js";
import { isWorkerNotFound } from "../session/is-worker-not-found.js";
import type { Session } from "../session/session.js";

/** Deadline of each FailShard call that hands a lease back while draining. */
const releaseTimeoutMs = 5_000;

/**
 * Tells the coordinator about shards this worker will not complete: a failure (the
 * coordinator counts an attempt and retries elsewhere) or a hand-back (drain: the
 * lease goes back unstarted). Best effort: what does not get through is logged, and
 * the lease then runs out.
 */
export class ShardFailures {
  readonly #rpc: Client<typeof WorkerService>;
  readonly #session: Session;
  readonly #log: WorkerLogger;

  constructor(rpc: Client<typeof WorkerService>, session: Session, log: WorkerLogger) {
    this.#rpc = rpc;
    this.#session = session;
    this.#log = log;
  }

  /** Reports a failure (`release: false`) or hands a lease back (`release: true`); never rejects. */
  async failShard(lease: LeaseRef, error: string, release: boolean, signal: AbortSignal, timeoutMs: number): Promise<void> {
    try {
      await this.#session.retry(
        "FailShard",
        (workerId) => this.#rpc.failShard({ workerId, lease, error, release }, { signal, timeoutMs }),
        {
          signal,
          workerScoped: true,
          // FailShard also names a job, which may be unknown; only a NOT_FOUND about the worker means re-register.
          notFoundIsWorker: isWorkerNotFound,
          maxAttempts: 3,
        },
      );
      this.#log.debug({ ...leaseFields(lease), release }, release ? "lease released" : "shard failure reported");
    } catch (e) {
      this.#log.warn({ ...leaseFields(lease), release, err: errorMessage(e) }, "FailShard did not get through");
    }
  }

  /** Hands a lease back unstarted (drain, shutdown); never rejects. */
  handBack(lease: LeaseRef | undefined, why: string): Promise<void> {
    if (lease === undefined) return Promise.resolve();
    return this.failShard(lease, why, true, AbortSignal.timeout(releaseTimeoutMs), releaseTimeoutMs);
  }
}
