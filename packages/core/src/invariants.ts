import { type CoreState, isTerminal, ShardStatus } from "./state.js";

/**
 * Checks the invariants every coordinator decision must keep, returning one
 * message per violation (empty when all hold). Used by the property tests, the
 * simulator and, at run time, by the coordinator, which logs any violation loudly.
 *
 * - at most one live lease per shard, at its current epoch — plus, for a straggler,
 *   one backup lease at its backup epoch (the first valid result of the two wins);
 * - every lease belongs to a registered-or-expiring worker's set and to a live job;
 * - every active job and every idempotency entry names a job in the state (a deleted
 *   job leaves nothing behind);
 * - done/leased counters match the per-shard statuses;
 * - a job is succeeded only when every tile was accepted;
 * - epochs are below `nextEpoch` (they never go backwards).
 */
export function checkInvariants(s: CoreState): string[] {
  const out: string[] = [];
  const perShard = new Map<string, number>();
  for (const lease of s.leases.values()) {
    const key = `${lease.jobId}/${lease.shardIndex}`;
    perShard.set(key, (perShard.get(key) ?? 0) + 1);
    const job = s.jobs.get(lease.jobId);
    if (!job) {
      out.push(`lease ${lease.epoch} refers to unknown job ${lease.jobId}`);
      continue;
    }
    if (isTerminal(job.state)) out.push(`lease ${lease.epoch} is live on ${job.state} job ${job.id}`);
    if (job.shardStatus[lease.shardIndex] !== ShardStatus.leased) {
      out.push(
        `lease ${lease.epoch} on job ${job.id} shard ${lease.shardIndex} whose status is ${job.shardStatus[lease.shardIndex]}`,
      );
    }
    if (job.shardEpoch[lease.shardIndex] !== lease.epoch && job.shardBackupEpoch[lease.shardIndex] !== lease.epoch) {
      out.push(
        `lease ${lease.epoch} is neither the current epoch ${job.shardEpoch[lease.shardIndex]} nor the backup epoch of job ${job.id} shard ${lease.shardIndex}`,
      );
    }
    if (lease.epoch >= s.nextEpoch) out.push(`lease epoch ${lease.epoch} >= nextEpoch ${s.nextEpoch}`);
  }
  for (const id of s.activeJobs) if (!s.jobs.has(id)) out.push(`active job ${id} is not in the state`);
  for (const id of s.idempotency.values()) if (!s.jobs.has(id)) out.push(`idempotency entry names missing job ${id}`);
  for (const [key, n] of perShard) if (n > 2) out.push(`shard ${key} has ${n} live leases`);
  for (const job of s.jobs.values()) {
    let done = 0;
    let leased = 0;
    for (let i = 0; i < job.plan.shardCount; i++) {
      const st = job.shardStatus[i];
      if (st === ShardStatus.done) done++;
      else if (st === ShardStatus.leased) {
        leased++;
        if (!s.leases.has(job.shardEpoch[i] ?? 0)) out.push(`job ${job.id} shard ${i} is leased without a live lease`);
        const backup = job.shardBackupEpoch[i] ?? 0;
        if (backup !== 0 && !s.leases.has(backup)) out.push(`job ${job.id} shard ${i} has a backup epoch without a live lease`);
      } else if ((job.shardBackupEpoch[i] ?? 0) !== 0) {
        out.push(`job ${job.id} shard ${i} has a backup epoch but is not leased`);
      }
    }
    if (done !== job.doneCount) out.push(`job ${job.id} doneCount ${job.doneCount} but ${done} shards are done`);
    if (leased !== job.leasedCount) out.push(`job ${job.id} leasedCount ${job.leasedCount} but ${leased} shards are leased`);
    if (job.state === "succeeded" && done !== job.plan.shardCount) {
      out.push(`job ${job.id} succeeded with ${done}/${job.plan.shardCount} tiles accepted`);
    }
  }
  return out;
}
