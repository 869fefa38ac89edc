import type { Client } from "@connectrpc/connect";
import type { LeaseRef, WorkerService } from "@dce/proto";
import { errorMessage } from "../errors.js";
import type { WorkerLogger } from "../log-scope.js";
import { leaseFields } from "../pull/shard.js";
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
  /** Leases handed back, and hand-backs that did not get through (their leases run out). */
  readonly handBacks = { done: 0, lost: 0 };

  constructor(rpc: Client<typeof WorkerService>, session: Session, log: WorkerLogger) {
    this.#rpc = rpc;
    this.#session = session;
    this.#log = log;
  }

  /**
   * Reports a failure (`release: false`) or hands a lease back (`release: true`); never rejects.
   * @returns whether the coordinator got it.
   */
  async failShard(lease: LeaseRef, error: string, release: boolean, signal: AbortSignal, timeoutMs: number): Promise<boolean> {
    try {
      await this.#session.retry(
        "FailShard",
        (workerId) => this.#rpc.failShard({ workerId, lease, error, release }, { signal, timeoutMs }),
        {
          signal,
          // FailShard also names a job, which may be unknown: only WORKER_NOT_FOUND means register again.
          workerScoped: true,
          maxAttempts: 3,
        },
      );
      this.#log.debug({ ...leaseFields(lease), release }, release ? "lease released" : "shard failure reported");
      return true;
    } catch (e) {
      this.#log.warn({ ...leaseFields(lease), release, err: errorMessage(e) }, "FailShard did not get through");
      return false;
    }
  }

  /** Hands a lease back unstarted (drain, shutdown); never rejects. */
  async handBack(lease: LeaseRef | undefined, why: string): Promise<void> {
    if (lease === undefined) return;
    if (await this.failShard(lease, why, true, AbortSignal.timeout(releaseTimeoutMs), releaseTimeoutMs)) this.handBacks.done++;
    else this.handBacks.lost++;
  }
}
