import type { Effect } from "./events.js";
import { addShardDeath, observeLeaseEnd, restoredShardDeath, type ShardDeaths } from "./poison.js";
import type { CoreState, JobRecord, LeaseRecord } from "./state.js";

/**
 * Records that the holders of the `due` leases (all expired in one tick) died while they
 * ran their shards, and returns the epochs charged with a death.
 *
 * A worker runs its leases in the order it got them, at most one per compute thread, and
 * fetches the inputs of the rest (prefetched spares, up to hundreds for tiny shards)
 * meanwhile. So a death is charged only to the holder's oldest live leases, one per
 * thread: the shards it was most likely running (the holder's leases that expire in later
 * ticks, within a lease TTL, belong to the same death). Its spares go back uncharged, like
 * a hand-back, since they never ran; counting them would make every shard that tends to
 * sit in a spare's place (a retry granted to a worker that just started) look like poison.
 *
 * Each charged death counts in the fleet's counters, joins its shard's deaths and is made
 * durable, so a restart neither forgets it nor counts it twice (the record names the
 * lease's epoch) and rebuilds the counters (durable.ts). Leases lost with a coordinator
 * restart are never expired, so a restart adds no deaths. All of the tick's deaths are
 * recorded before any shard is judged; a shard's window opens before the tick, and the
 * holder's other charged leases count as dying with it (see poison.ts). A dead holder's
 * shard is retried on another identity when one can take it: a machine that keeps dying
 * cannot pile its deaths on one shard, and a poison shard meets more machines.
 */
export function recordDeaths(s: CoreState, due: readonly LeaseRecord[], nowMs: number, fx: Effect[]): Set<number> {
  const before = { ...s.leaseEnds };
  const dueEpochs = new Set(due.map((l) => l.epoch));
  const charged = new Set<number>();
  const perHolder = new Map<string, number>();
  for (const lease of due) {
    if (perHolder.has(lease.workerId)) continue;
    const w = s.workers.get(lease.workerId);
    // Leases granted after the holder's last heartbeat expire a little later: the same death.
    const sameDeath = w?.diedAtMs !== undefined && nowMs - w.diedAtMs < s.config.leaseTtlMs;
    const oldest = sameDeath
      ? []
      : [...(w?.leases ?? [lease.epoch])].sort((x, y) => x - y).slice(0, Math.max(1, w?.threads ?? 1));
    const dying = oldest.filter((epoch) => dueEpochs.has(epoch));
    for (const epoch of dying) charged.add(epoch);
    perHolder.set(lease.workerId, dying.length);
    if (w && !sameDeath) w.diedAtMs = nowMs;
  }
  for (const lease of due) {
    const job = s.jobs.get(lease.jobId);
    if (!job || !charged.has(lease.epoch)) continue;
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
  return charged;
}

/**
 * Gives a restored job its durable deaths (`DurableDeath`s of durable.ts, which calls this;
 * only their `workerId` matters here), in journal order.
 */
export function restoreShardDeaths(job: JobRecord, deaths: ReadonlyMap<number, readonly { readonly workerId: string }[]>): void {
  for (const [shard, list] of deaths) {
    if (!Number.isInteger(shard) || shard < 0 || shard >= job.plan.shardCount) continue;
    let d: ShardDeaths | undefined;
    for (const x of list) d = restoredShardDeath(d, x.workerId);
    if (d) job.shardDeaths.set(shard, d);
  }
}
