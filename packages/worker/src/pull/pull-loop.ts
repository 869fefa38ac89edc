import type { Client } from "@connectrpc/connect";
import type { ShardLease, WorkerService } from "@dce/proto";
import { errorMessage, toError } from "../errors.js";
import type { InputFetcher } from "../inputs/input-fetcher.js";
import { listKernels } from "../kernels/kernel.js";
import { shardScope, type WorkerLogger } from "../log-scope.js";
import type { ComputePool } from "../pool.js";
import type { ShardFailures } from "../report/shard-failures.js";
import type { ShardReporter } from "../report/shard-reporter.js";
import type { Session } from "../session/session.js";
import type { WorkerConfig } from "../worker-options.js";
import { leaseFields, leaseKey, planShard, type ShardRun } from "./shard.js";

/** Extra time an AcquireShards call gets beyond its long-poll wait before it times out. */
const acquireSlackMs = 10_000;
/** Most leases held beyond one per thread (tiny shards). */
const maxSpareLeases = 256;

/** Running average for the pipeline figures: the first sample, then 80% old, 20% new. */
function ewma(old: number, x: number): number {
  return old === 0 ? x : old * 0.8 + x * 0.2;
}

/** What a {@link PullLoop} needs of the worker around it. */
export interface PullLoopDeps {
  readonly config: WorkerConfig;
  readonly log: WorkerLogger;
  readonly rpc: Client<typeof WorkerService>;
  readonly session: Session;
  readonly pool: ComputePool;
  readonly inputs: InputFetcher;
  readonly reporter: ShardReporter;
  readonly failures: ShardFailures;
  /** Aborted by close(): stop acquiring, abort a pending long-poll. */
  readonly drainSignal: AbortSignal;
  /** Aborted when everything must stop now. */
  readonly stopSignal: AbortSignal;
  readonly isFatal: () => boolean;
  readonly fail: (error: Error) => void;
}

/**
 * Pulls work: long-polls AcquireShards while fewer leases are held than the hold limit,
 * and runs each granted shard (fetch its inputs, compute in the pool, report) in its own
 * async flow and log scope. It owns the table of held leases, which the heartbeat renews
 * and the drain hands back.
 */
export class PullLoop {
  readonly #d: PullLoopDeps;
  /** Shards held right now, by {@link leaseKey}. */
  readonly runs = new Map<string, ShardRun>();
  /** Running averages (ms, 0 until a shard is timed): time a shard holds a thread, and time it spends outside one (inputs, report, grant). */
  #shardWorkMs = 0;
  #shardLatencyMs = 0;
  /** Running average of how long AcquireShards takes when it returns work at once (ms). */
  #grantMs = 0;
  #slotWaiters: (() => void)[] = [];

  constructor(deps: PullLoopDeps) {
    this.#d = deps;
  }

  /** Acquires and starts shards until the drain; a failure it cannot retry stops the worker. */
  async run(): Promise<void> {
    const { config, rpc, session, failures } = this.#d;
    const signal = this.#d.drainSignal;
    try {
      while (!signal.aborted) {
        await this.#idleSlot();
        if (signal.aborted) break;
        // The limit moves with the measured shard time, so it can have dropped meanwhile.
        const maxShards = this.#holdLimit() - this.runs.size;
        if (maxShards < 1) continue;
        const waitMs = config.acquireWaitMs;
        const askedAt = performance.now();
        const res = await session.retry(
          "AcquireShards",
          (workerId) => rpc.acquireShards({ workerId, maxShards, waitMs }, { signal, timeoutMs: waitMs + acquireSlackMs }),
          { signal, workerScoped: true },
        );
        const grantMs = performance.now() - askedAt;
        // Only a grant that came back at once measures latency; a long-poll that waited for work measures idleness.
        if (res.leases.length > 0 && grantMs < 50) this.#grantMs = ewma(this.#grantMs, grantMs);
        for (const shard of res.leases) {
          // A grant that raced with close() goes straight back.
          if (signal.aborted) void failures.handBack(shard.lease, "worker is draining");
          else this.#startShard(shard);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      this.#d.fail(toError(e, "AcquireShards failed"));
    }
  }

  /** Wakes a loop waiting for a free slot (a shard ended, or the drain began). */
  wake(): void {
    for (const wake of this.#slotWaiters.splice(0)) wake();
  }

  /**
   * How many leases to hold: one per thread, plus spares whose inputs are fetched and
   * whose reports travel while the threads compute (pipelining). Little's law: to keep
   * `threads` busy while each shard also spends `latency` ms outside its thread (reading
   * inputs, reporting, being granted), hold `threads × latency / work` spares, where
   * `work` is the time a shard holds a thread. Large shards get one or two; tiny ones up
   * to {@link maxSpareLeases}.
   */
  #holdLimit(): number {
    const threads = this.#d.pool.size;
    const { prefetch } = this.#d.config;
    if (prefetch !== undefined) return threads + prefetch;
    // Until a shard has been timed, one spare: a job's first shards may be large.
    if (this.#shardWorkMs === 0) return threads + 1;
    const spare = Math.ceil((threads * this.#shardLatencyMs) / Math.max(this.#shardWorkMs, 0.01));
    return threads + Math.max(1, Math.min(maxSpareLeases, spare));
  }

  /** Folds one shard's timings into the running averages {@link PullLoop.#holdLimit} uses. */
  #observeShard(workMs: number, latencyMs: number): void {
    this.#shardWorkMs = ewma(this.#shardWorkMs, Math.max(workMs, 0.001));
    this.#shardLatencyMs = ewma(this.#shardLatencyMs, latencyMs);
  }

  /** Resolves when fewer shards are held than {@link PullLoop.#holdLimit}, or on drain. */
  #idleSlot(): Promise<void> {
    if (this.runs.size < this.#holdLimit() || this.#d.drainSignal.aborted) return Promise.resolve();
    return new Promise((resolve) => this.#slotWaiters.push(resolve));
  }

  #startShard(shard: ShardLease): void {
    const { log, session } = this.#d;
    const lease = shard.lease;
    if (lease === undefined) {
      log.warn({}, "coordinator sent a shard without a lease; ignoring it");
      return;
    }
    const key = leaseKey(lease);
    if (this.runs.has(key)) return; // the same grant twice: already working on it
    const run: ShardRun = {
      key,
      lease,
      shard,
      abort: new AbortController(),
      phase: "fetching",
      expiresAtMs: Date.now() + (shard.ttlMs || session.leaseTtlMs),
      done: Promise.resolve(),
    };
    this.runs.set(key, run);
    log.debug({ ...leaseFields(lease), attempt: shard.attempt }, "shard leased");
    run.done = shardScope
      .run(leaseFields(lease), () => this.#runShard(run))
      .catch((e: unknown) => {
        log.error({ ...leaseFields(lease), err: errorMessage(e) }, "unexpected error in shard");
      })
      .finally(() => {
        this.runs.delete(key);
        this.wake();
      });
  }

  async #runShard(run: ShardRun): Promise<void> {
    const { log, config } = this.#d;
    const { lease, shard } = run;
    const signal = run.abort.signal;
    try {
      const startedAt = performance.now();
      const plan = planShard(shard, listKernels()[0]?.name ?? "reference");
      const { a, b, bColStart, ldb } = await this.#d.inputs.load(plan, signal);
      const fetchMs = performance.now() - startedAt;
      run.phase = "computing";
      const { c, computeMs, threadMs } = await this.#d.pool.run(
        { kernel: plan.kernel, m: plan.m, n: plan.n, k: plan.k, a, b, bColStart, ldb },
        signal,
      );
      run.phase = "completing";
      const reportStart = performance.now();
      // For `pnpm bench --trace`: where the shard's time went before its report left.
      log.debug(
        {
          ...leaseFields(lease),
          fetchMs: Math.round(fetchMs),
          waitMs: Math.round(reportStart - startedAt - fetchMs - computeMs),
          computeMs: Math.round(computeMs),
        },
        "shard computed",
      );
      await this.#d.reporter.complete(run, c, plan.n, computeMs);
      // Queueing behind other shards counts in neither figure: it is the effect, not the cause.
      this.#observeShard(threadMs, fetchMs + (performance.now() - reportStart) + this.#grantMs);
    } catch (e) {
      if (signal.aborted) {
        log.debug({ ...leaseFields(lease), reason: errorMessage(signal.reason) }, "shard stopped; result dropped");
        return;
      }
      if (this.#d.isFatal()) return;
      // Kernel errors, dead threads, bad inputs, refused reads: the coordinator decides
      // whether to retry elsewhere, so report without releasing (counts an attempt).
      const message = errorMessage(e);
      log.warn({ ...leaseFields(lease), err: message }, "shard failed");
      await this.#d.failures.failShard(lease, message, false, this.#d.stopSignal, config.rpcTimeoutMs);
    }
  }
}
