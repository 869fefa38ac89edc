import type { DurableDeath } from "./durable.js";
import { addShardDeath, type LeaseEnds, restoredShardDeath, type ShardDeaths } from "./poison.js";
import type { CoreState, JobRecord, LeaseRecord } from "./state.js";
import type { Effect } from "./step.js";

/**
 * Records that the holder of `lease` died while it held its shard (the lease expired,
 * seen by a tick that found the fleet's counters at `before`): the death joins the
 * shard's deaths and is made durable, so a restart neither forgets it nor counts it twice
 * (the record names the lease's epoch). Leases lost with a coordinator restart are never
 * expired, so a restart adds no deaths. The shard's retry goes to another identity when
 * one can take it: a machine that keeps dying cannot pile its deaths on one shard, and a
 * poison shard meets more machines. Returns the shard's deaths.
 */
export function noteShardDeath(
  s: CoreState,
  job: JobRecord,
  lease: LeaseRecord,
  before: Readonly<LeaseEnds>,
  fx: Effect[],
): ShardDeaths {
  const shard = lease.shardIndex;
  const deaths = addShardDeath(job.shardDeaths.get(shard), lease.workerId, before);
  job.shardDeaths.set(shard, deaths);
  const identity = s.workers.get(lease.workerId)?.identity ?? lease.workerId;
  const avoid = job.shardAvoid.get(shard) ?? [];
  if (!avoid.includes(identity)) job.shardAvoid.set(shard, [...avoid, identity]);
  fx.push({
    type: "persist",
    record: { type: "shard-died", jobId: job.id, shardIndex: shard, epoch: lease.epoch, workerId: lease.workerId },
  });
  return deaths;
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
