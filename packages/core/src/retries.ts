import type { Effect } from "./events.js";
import { endJob } from "./job-lifecycle.js";
import { type CoreState, type JobRecord, ShardStatus } from "./state.js";

/** Puts a shard back for another execution, or fails its job when attempts are exhausted. */
export function requeue(
  s: CoreState,
  job: JobRecord,
  shard: number,
  nowMs: number,
  jitter: number,
  why: string,
  fx: Effect[],
): void {
  job.shardStatus[shard] = ShardStatus.pending;
  const attempts = job.shardAttempts[shard] ?? 0;
  if (attempts >= s.config.maxAttempts) {
    const message = `shard ${shard} failed ${attempts} times (maxAttempts=${s.config.maxAttempts}); last error: ${why}`;
    endJob(s, job, "failed", message, nowMs, fx);
    return;
  }
  const backoff = Math.min(s.config.retryMaxMs, s.config.retryBaseMs * 2 ** Math.max(0, attempts - 1));
  job.shardNotBeforeMs[shard] = nowMs + Math.floor(backoff * (0.5 + jitter));
  job.retryQueue.push(shard);
  job.retriedCount++;
  job.version++;
  fx.push({ type: "job-changed", jobId: job.id });
  fx.push({ type: "shards-available" });
}
