import { type CoreState, checkCompletion, type LeaseKey, tileBounds, tileSizeBytes, type WorkerId } from "@dce/core";
import type { Logger } from "pino";
import type { CoordinatorConfig } from "../config.js";
import type { VerificationEvent, VerificationObserver } from "../observability/events.js";
import type { Clock } from "../ports/clock.js";
import type { BlobStorePort } from "../ports/storage.js";
import { type Verdict, type VerifiableJob, Verifier } from "../verify/verifier.js";

/** What checking one result came to: a verdict, or the check could not run now. */
export type CheckOutcome = Verdict | { ok: false; unavailable: true; reason: string };

/**
 * The hand-off of workers' results to the {@link Verifier} (Freivalds' test; see
 * docs/verification.md) before the core sees them, and the observers of its verdicts.
 * Without verification (`config.verify.enabled` false) every check is skipped.
 */
export class ResultVerification {
  readonly #config: CoordinatorConfig;
  readonly #log: Logger;
  readonly #state: Readonly<CoreState>;
  readonly #blobs: BlobStorePort;
  readonly #clock: Clock;
  readonly #verifier: Verifier | undefined;
  readonly #observers = new Set<VerificationObserver>();
  /**
   * Each job's inputs as the verifier reads them, made once per job: working out blob
   * paths for every tile cost more than checking a tiny tile. Results arrive only after
   * the job's creation (and its inputs' names) are durable, so the paths are final.
   */
  readonly #targets = new Map<string, VerifiableJob>();

  constructor(deps: {
    config: CoordinatorConfig;
    log: Logger;
    state: Readonly<CoreState>;
    blobs: BlobStorePort;
    clock: Clock;
    /** The verifier's source of random words (default: the CSPRNG). */
    randomWords?: ((count: number) => Uint32Array) | undefined;
  }) {
    this.#config = deps.config;
    this.#log = deps.log;
    this.#state = deps.state;
    this.#blobs = deps.blobs;
    this.#clock = deps.clock;
    const random = deps.randomWords === undefined ? {} : { randomWords: deps.randomWords };
    this.#verifier = deps.config.verify.enabled ? new Verifier({ threads: deps.config.verify.threads, ...random }) : undefined;
  }

  /** True when results are checked before they are accepted. */
  get enabled(): boolean {
    return this.#verifier !== undefined;
  }

  /** Registers an observer of every verdict; returns a function that removes it. */
  observe(observer: VerificationObserver): () => void {
    this.#observers.add(observer);
    return () => this.#observers.delete(observer);
  }

  /** Drops what the verifier keeps of a finished job. */
  forget(jobId: string): void {
    this.#targets.delete(jobId);
    this.#verifier?.forget(jobId);
  }

  /** Stops the verification threads; a failure to stop is logged, not thrown. */
  async close(): Promise<void> {
    await this.#verifier?.close().catch((e: unknown) => this.#log.warn({ err: e }, "verifier did not close cleanly"));
  }

  /**
   * Checks a result before the core sees it: the verdict, at once for tiny tiles or as a
   * promise for big ones. Undefined when there is nothing to check: verification is off,
   * or the core will refuse the report anyway (stale, duplicate, revoked, wrong size), so
   * checking it would only cost time. A check that cannot run answers `unavailable`: the
   * worker retries, and nothing unchecked is accepted.
   */
  check(workerId: WorkerId, lease: LeaseKey, data: Uint8Array): CheckOutcome | undefined | Promise<CheckOutcome | undefined> {
    if (!this.#verifier) return undefined;
    const pre = checkCompletion(this.#state, workerId, lease, this.#clock.nowMs());
    if (!pre.ok) return undefined;
    const { job } = pre.value;
    if (data.byteLength !== tileSizeBytes(job.plan, lease.shardIndex)) return undefined;
    const bounds = tileBounds(job.plan, lease.shardIndex);
    let target = this.#targets.get(job.id);
    if (target === undefined || target.plan !== job.plan) {
      target = {
        id: job.id,
        plan: job.plan,
        aPath: this.#blobs.pathOf(job.spec.a.blobId),
        bPath: this.#blobs.pathOf(job.spec.b.blobId),
      };
      this.#targets.set(job.id, target);
    }
    const failed = (e: unknown): CheckOutcome => {
      this.#log.error(
        { jobId: lease.jobId, shard: lease.shardIndex, epoch: lease.epoch, workerId, err: e },
        "result could not be verified; the worker will retry",
      );
      this.#notify({ jobId: job.id, shardIndex: lease.shardIndex, workerId, outcome: "error", ms: 0 });
      return { ok: false, unavailable: true, reason: "the result could not be verified right now; retry" };
    };
    try {
      const now = this.#verifier.checkNow(target, bounds, data);
      if (now !== undefined) return this.#checked(workerId, lease, now);
    } catch (e) {
      return failed(e);
    }
    if (this.#verifier.backlogBytes > this.#config.verify.maxBacklogBytes) {
      // Back-pressure: the worker retries later (its heartbeats keep the lease alive meanwhile).
      return { ok: false, unavailable: true, reason: "the coordinator is busy verifying results; retry" };
    }
    return this.#verifier.check(target, bounds, data).then((v) => this.#checked(workerId, lease, v), failed);
  }

  /** Reports a verdict to the log and the observers. */
  #checked(workerId: WorkerId, lease: LeaseKey, verdict: Verdict): Verdict {
    const outcome = !verdict.ok ? "rejected" : verdict.rowsUnverifiable > 0 ? "unverifiable" : "passed";
    if (verdict.ok && verdict.rowsUnverifiable > 0) {
      this.#log.warn(
        { jobId: lease.jobId, shard: lease.shardIndex, epoch: lease.epoch, workerId, rowsUnverifiable: verdict.rowsUnverifiable },
        "result accepted with rows that cannot be verified (inputs with NaN, Inf or near-overflow values)",
      );
    }
    this.#notify({ jobId: lease.jobId, shardIndex: lease.shardIndex, workerId, outcome, ms: verdict.ms });
    return verdict;
  }

  #notify(v: VerificationEvent): void {
    for (const observer of this.#observers) {
      try {
        observer(v);
      } catch (e) {
        this.#log.error({ err: e }, "verification observer failed");
      }
    }
  }
}
