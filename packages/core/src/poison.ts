/**
 * Telling a poison shard from a dying fleet.
 *
 * A lease that expires means its holder died (crashed, was killed, paused or cut off)
 * while it held the shard. Unlike a failure the worker reports (the kernel threw), a
 * death says little about the shard: in a fleet where one lease in five ends with its
 * worker's death, every shard has a 0.2⁵ ≈ 3·10⁻⁴ chance of five deaths in a row, so
 * counting deaths as failed attempts fails about one job per 3 000 shards. MapReduce
 * re-executes work lost with a worker without counting it; Spark counts an executor loss
 * against a task only when the task caused it.
 *
 * The rule here calls a shard poison from deaths only when they follow the shard:
 *
 * - at least {@link PoisonRule.poisonMinWorkers} distinct worker processes died holding
 *   it (one process that keeps losing its leases is not enough);
 * - and its deaths would have had a chance of at most {@link PoisonRule.poisonMaxChance}
 *   were it like the rest of the fleet over the same time: with `q` the share of the
 *   other leases that ended with a death since the shard's first death, and `d` its
 *   deaths, `q^d ≤ poisonMaxChance`. A fleet that loses one lease in five needs 13 deaths
 *   of one shard before 10⁻⁹; a fleet that otherwise survives needs 3 when a thousand
 *   other leases end meanwhile, 5 when a hundred do;
 * - or, whatever the fleet does, {@link PoisonRule.maxShardDeaths} deaths: a bound on how
 *   long a poison shard can keep killing workers, also when there is no other work to
 *   compare it with.
 *
 * `q` is Laplace's estimate, (deaths + 1) / (ends + 2): 1/2 before the window holds any
 * other lease, and never 0. An innocent shard whose deaths are independent draws at the
 * fleet's rate meets the chance limit with probability at most about that limit (when the
 * window holds few leases the estimate is rough, and `maxShardDeaths` is what bounds the
 * risk: 0.2¹⁶ ≈ 7·10⁻¹²). Reported failures still count against `maxAttempts` as before.
 *
 * Pure: the counters are plain numbers moved by the events that end leases, so every
 * decision replays from the same events. They are not durable: after a restart the window
 * starts again, while the deaths themselves are restored from the journal.
 */
import type { CoreConfig } from "./state.js";

/** Leases that ended since the coordinator started: all of them, and those that ended with their holder's death. */
export interface LeaseEnds {
  ends: number;
  deaths: number;
}

/** No lease ended yet. */
export function createLeaseEnds(): LeaseEnds {
  return { ends: 0, deaths: 0 };
}

/**
 * Counts one ended lease: completed or reported failed (`died` false), or expired
 * (`died` true). Hand-backs are not executions and are not counted.
 */
export function observeLeaseEnd(fleet: LeaseEnds, died: boolean): void {
  fleet.ends++;
  if (died) fleet.deaths++;
}

/** What the rule knows about one shard's deaths. */
export interface ShardDeaths {
  /** Leases of the shard that expired, restored ones included. */
  readonly deaths: number;
  /** Distinct worker registrations (processes) among their holders, in order of death. */
  readonly workers: readonly string[];
  /**
   * The fleet's counters when the shard's window began (just before the tick of its first
   * death in this coordinator's life; undefined for deaths restored from the journal), and
   * the shard's deaths in the window.
   */
  readonly window: { readonly from: Readonly<LeaseEnds>; readonly deaths: number } | undefined;
}

/**
 * The shard's deaths after one more: its holder `workerId` died; `before` is the fleet's
 * counters before the tick that saw the death (the first death of a window opens it there,
 * so the leases that died in the same tick count as the fleet's). Pure.
 */
export function addShardDeath(d: ShardDeaths | undefined, workerId: string, before: Readonly<LeaseEnds>): ShardDeaths {
  const workers = d?.workers ?? [];
  return {
    deaths: (d?.deaths ?? 0) + 1,
    workers: workers.includes(workerId) ? workers : [...workers, workerId],
    window: { from: d?.window?.from ?? { ...before }, deaths: (d?.window?.deaths ?? 0) + 1 },
  };
}

/** A death restored from the journal: counted, with no window (the fleet's counters restart with the coordinator). */
export function restoredShardDeath(d: ShardDeaths | undefined, workerId: string): ShardDeaths {
  const workers = d?.workers ?? [];
  return {
    deaths: (d?.deaths ?? 0) + 1,
    workers: workers.includes(workerId) ? workers : [...workers, workerId],
    window: undefined,
  };
}

/**
 * The share of the fleet's other leases that ended with a death during the shard's window,
 * (deaths + 1) / (ends + 2): in (0, 1), 1/2 with no other lease.
 */
export function fleetDeathRate(d: ShardDeaths, fleet: Readonly<LeaseEnds>): number {
  const w = d.window;
  if (!w) return 0.5;
  const ends = Math.max(0, fleet.ends - w.from.ends - w.deaths);
  const deaths = Math.min(ends, Math.max(0, fleet.deaths - w.from.deaths - w.deaths));
  return (deaths + 1) / (ends + 2);
}

/** The tunables of the rule (fields of {@link CoreConfig}). */
export type PoisonRule = Pick<CoreConfig, "maxShardDeaths" | "poisonMinWorkers" | "poisonMaxChance">;

/** Whether a shard's deaths make it poison, and if so, why (for the job's error). */
export type DeathVerdict = { readonly poison: false } | { readonly poison: true; readonly reason: string };

/**
 * Judges a shard by its deaths and the fleet's counters now (see the module comment).
 * Pure. `maxShardDeaths` 0 never calls a shard poison from deaths; `poisonMaxChance` 0
 * leaves only that bound.
 */
export function judgeShardDeaths(d: ShardDeaths, fleet: Readonly<LeaseEnds>, rule: PoisonRule): DeathVerdict {
  if (rule.maxShardDeaths <= 0) return { poison: false };
  const head = `${d.deaths} workers died running it (${d.workers.length} distinct processes`;
  if (d.deaths >= rule.maxShardDeaths) {
    return { poison: true, reason: `${head}; maxShardDeaths=${rule.maxShardDeaths})` };
  }
  if (d.workers.length < rule.poisonMinWorkers || rule.poisonMaxChance <= 0) return { poison: false };
  const q = fleetDeathRate(d, fleet);
  const log10Chance = d.deaths * Math.log10(q);
  if (log10Chance > Math.log10(rule.poisonMaxChance)) return { poison: false };
  const rate = q < 0.01 ? q.toExponential(1) : q.toFixed(2);
  return {
    poison: true,
    reason: `${head}; the other leases died at a rate of ${rate} meanwhile, so ${d.deaths} deaths had a chance of 10^${log10Chance.toFixed(1)}, limit ${rule.poisonMaxChance})`,
  };
}
