import type { Client } from "@connectrpc/connect";
import type { ShardOutcome, WorkerService } from "@dce/proto";
import { shardScope } from "../log-scope.js";
import { batchFields, leaseKey, type ShardResultInit, type ShardRun } from "../pull/shard.js";
import type { Session } from "../session/session.js";

/** Most results in one CompleteShards. */
const maxReportBatch = 512;
/**
 * Most CompleteShards calls in flight at once. One at a time made every result that
 * finished during a call wait for its reply: at n=1024 the kernels were done at 77 ms and
 * the job at 160 ms. A few in flight let results leave as they finish; beyond that the
 * rest still go out together.
 */
const maxReportsInFlight = 3;

/** A result waiting to be reported, with the promise of its outcome. */
interface PendingReport {
  readonly run: ShardRun;
  readonly result: ShardResultInit;
  resolve(outcome: ShardOutcome | undefined): void;
  reject(e: unknown): void;
}

/** What a {@link ReportBatcher} needs of the worker around it. */
export interface ReportBatcherDeps {
  readonly rpc: Client<typeof WorkerService>;
  readonly session: Session;
  readonly rpcTimeoutMs: number;
  /** Aborted when everything must stop now: no more retries of a batch. */
  readonly stopSignal: AbortSignal;
}

/**
 * Sends shard results to the coordinator, with up to {@link maxReportsInFlight}
 * CompleteShards calls in flight. Results that finish while all of them are out go
 * together in the next one (at most {@link maxReportBatch}, and one message of data), so
 * tiny shards cost one RPC per batch rather than one each.
 */
export class ReportBatcher {
  readonly #d: ReportBatcherDeps;
  /** Results waiting for the next CompleteShards, and whether one is in flight. */
  readonly #reports: PendingReport[] = [];
  /** CompleteShards calls in flight. */
  #inFlight = 0;

  constructor(deps: ReportBatcherDeps) {
    this.#d = deps;
  }

  /**
   * Queues one result; resolves with its outcome (undefined when the coordinator sent
   * none for it). Rejects with the RPC's error, or the run's abort reason if it was
   * stopped before its batch left.
   */
  report(run: ShardRun, result: ShardResultInit): Promise<ShardOutcome | undefined> {
    return new Promise((resolve, reject) => {
      this.#reports.push({ run, result, resolve, reject });
      // A flush serves every shard's report, not only this one's: it runs outside this shard's scope.
      if (this.#inFlight < maxReportsInFlight) void shardScope.exit(() => this.#flush());
    });
  }

  async #flush(): Promise<void> {
    const { session, rpc } = this.#d;
    this.#inFlight++;
    try {
      while (this.#reports.length > 0) {
        const batch = this.#nextBatch();
        if (batch.length === 0) continue;
        // The coordinator treats a repeated CompleteShards as ALREADY_EXISTS, so retrying is
        // safe; it is pointless once every lease in the batch has certainly run out.
        const giveUp = () => batch.every((b) => b.run.abort.signal.aborted || Date.now() >= b.run.expiresAtMs);
        const signal = this.#d.stopSignal;
        try {
          // A retry of this call is logged with the shards it reports.
          const res = await shardScope.run(batchFields(batch.map((b) => b.run.lease)), () =>
            session.retry(
              "CompleteShards",
              (workerId) =>
                rpc.completeShards(
                  { workerId, results: batch.map((b) => b.result) },
                  { signal, timeoutMs: this.#d.rpcTimeoutMs },
                ),
              { signal, workerScoped: true, giveUp },
            ),
          );
          const byKey = new Map<string, ShardOutcome>();
          for (const o of res.outcomes) if (o.lease !== undefined) byKey.set(leaseKey(o.lease), o);
          for (const b of batch) b.resolve(byKey.get(b.run.key) ?? (batch.length === 1 ? res.outcomes[0] : undefined));
        } catch (e) {
          for (const b of batch) b.reject(e);
        }
      }
    } finally {
      this.#inFlight--;
    }
  }

  /** Takes the next batch off the queue: up to one message of data; stopped runs are rejected, not sent. */
  #nextBatch(): PendingReport[] {
    const batch: PendingReport[] = [];
    const limitBytes = this.#d.session.chunkLimitBytes();
    let bytes = 0;
    while (this.#reports.length > 0 && batch.length < maxReportBatch) {
      const next = this.#reports[0] as PendingReport;
      const size = next.result.payload.case === "data" ? next.result.payload.value.byteLength : 128;
      if (batch.length > 0 && bytes + size > limitBytes) break;
      this.#reports.shift();
      if (next.run.abort.signal.aborted) {
        next.reject(next.run.abort.signal.reason);
        continue;
      }
      batch.push(next);
      bytes += size;
    }
    return batch;
  }
}
