import type { DurableDeath } from "./durable.js";
import { addShardDeath, observeLeaseEnd, restoredShardDeath, type ShardDeaths } from "./poison.js";
import type { CoreState, JobRecord, LeaseRecord } from "./state.js";
import type { Effect } from "./step.js";

/**
 * Records that the holders of the `due` leases (all expired in one tick) died while they
 * held their shards: each death counts in the fleet's counters and joins its shard's
 * deaths, and is made durable, so a restart neither forgets it nor counts it twice (the
 * record names the lease's epoch) and rebuilds the counters (durable.ts). Leases lost with
 * a coordinator restart are never expired, so a restart adds no deaths. All of the tick's
 * deaths are recorded before any shard is judged; a shard's window opens before the tick,
 * and the leases its holder held count as dying with it (see poison.ts).
 *
 * A dead holder's shard is retried on another identity when one can take it: a machine
 * that keeps dying cannot pile its deaths on one shard, and a poison shard meets more machines.
 */
export function recordDeaths(s: CoreState, due: readonly LeaseRecord[], fx: Effect[]): void {
  const before = { ...s.leaseEnds };
  const perHolder = new Map<string, number>();
  for (const lease of due) perHolder.set(lease.workerId, (perHolder.get(lease.workerId) ?? 0) + 1);
  for (const lease of due) {
    const job = s.jobs.get(lease.jobId);
    if (!job) continue;
    observeLeaseEnd(s.leaseEnds, true);
    const shard = lease.shardIndex;
    const diedWith = (perHolder.get(lease.workerId) ?? 1) - 1;
    job.shardDeaths.set(shard, addShardDeath(job.shardDeaths.get(shard), lease.workerId, before, diedWith));
    const identity = s.workers.get(lease.workerId)?.identity ?? lease.workerId;
    const avoid = job.shardAvoid.get(shard) ?? [];
    if (!avoid.includes(identity)) job.shardAvoid.set(shard, [...avoid, identity]);
    fx.push({
      type: "persist",
      record: { type: "shard-died", jobId: job.id, shardIndex: shard, epoch: lease.epoch, workerId: lease.workerId },
    });
  }
}

/** Gives a restored job its durable deaths, in journal order. */
export function restoreShardDeaths(job: JobRecord, deaths: ReadonlyMap<number, readonly DurableDeath[]>): void {
  for (const [shard, list] of deaths) {
    if (!Number.isInteger(shard) || shard < 0 || shard >= job.plan.shardCount) continue;
    let d: ShardDeaths | undefined;
    for (const x of list) d = restoredShardDeath(d, x.workerId);
    if (d) job.shardDeaths.set(shard, d);
  }
}
