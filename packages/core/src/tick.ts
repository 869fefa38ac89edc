import { ok } from "./errors.js";
import type { Effect, OutcomeMap, Ticked } from "./events.js";
import { expireRetention } from "./job-deletion.js";
import { endJob } from "./job-lifecycle.js";
import { endLease } from "./leases.js";
import { judgeShardDeaths } from "./poison.js";
import { requeue } from "./retries.js";
import { findStragglers } from "./scheduling.js";
import { recordDeaths } from "./shard-deaths.js";
import type { CoreState, LeaseRecord } from "./state.js";
import { chargeExpiry, forgetSilentWorkers } from "./workers.js";

/**
 * Time passed (`ticked`): expired leases end (their shards run again, or a poison shard
 * fails its job), silent workers are forgotten, stragglers get backups queued and
 * finished jobs whose retention ran out are deleted (job-deletion.ts).
 */
export function tick(s: CoreState, e: Ticked, fx: Effect[]): OutcomeMap["ticked"] {
  let expired = 0;
  // Collect first: requeue may end a job, which removes that job's leases from the map.
  const due: LeaseRecord[] = [];
  for (const lease of s.leases.values()) if (lease.expiresAtMs <= e.nowMs) due.push(lease);
  // Every death of the tick is recorded before any is judged: a mass expiry is the fleet's.
  const charged = recordDeaths(s, due, e.nowMs, fx);
  for (const lease of due) {
    expired++; // also one that its job's failure earlier in this tick already ended
    if (!s.leases.has(lease.epoch)) continue;
    const job = s.jobs.get(lease.jobId);
    if (!job) continue;
    chargeExpiry(s, lease.workerId, e.nowMs, fx);
    fx.push({
      type: "log",
      level: "warn",
      msg: "lease expired",
      // charged: counted as a death of the shard (a lease its worker was running, shard-deaths.ts)
      fields: {
        jobId: job.id,
        shard: lease.shardIndex,
        epoch: lease.epoch,
        workerId: lease.workerId,
        charged: charged.has(lease.epoch) ? 1 : 0,
      },
    });
    const shard = lease.shardIndex;
    const why = `lease epoch ${lease.epoch} held by worker ${lease.workerId} expired`;
    // A death is not a failed attempt: only the death rule (poison.ts) can fail the job for it,
    // even while a straggler twin still runs the shard (a poison shard's twins die too).
    const deaths = charged.has(lease.epoch) ? job.shardDeaths.get(shard) : undefined;
    const verdict = deaths ? judgeShardDeaths(deaths, s.leaseEnds, s.config) : ({ poison: false } as const);
    if (verdict.poison) {
      job.shardLastError.set(shard, why);
      endJob(s, job, "failed", `shard ${shard}: ${verdict.reason}; last error: ${why}`, e.nowMs, fx);
      continue;
    }
    if (endLease(s, job, lease)) continue; // its straggler twin goes on
    job.shardLastError.set(shard, why);
    job.shardAttempts[shard] = Math.max(0, (job.shardAttempts[shard] ?? 1) - 1);
    requeue(s, job, shard, e.nowMs, e.jitter, why, fx);
  }
  forgetSilentWorkers(s, e.nowMs, fx);
  if (s.config.stragglerFactor > 0) findStragglers(s, e.nowMs, fx);
  expireRetention(s, e.nowMs, fx);
  // Retry backoffs that ran out make shards grantable again.
  if (s.activeJobs.some((id) => (s.jobs.get(id)?.retryQueue.length ?? 0) > 0)) fx.push({ type: "shards-available" });
  return ok({ expired });
}
