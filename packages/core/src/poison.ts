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
 * A death is charged only to the leases its worker was running, one per compute thread
 * (shard-deaths.ts): the spares it had prefetched never ran. The rule here calls a shard
 * poison from deaths only when they follow the shard:
 *
 * - at least {@link PoisonRule.poisonMinWorkers} distinct worker processes died holding
 *   it (one process that keeps losing its leases is not enough);
 * - and its `d` deaths would have had a chance `q^d` of at most
 *   {@link PoisonRule.poisonMaxChance} were it like the rest of the fleet, `q` being the
 *   share of the fleet's other leases that ended with a death: those of the recent past
 *   (about the last {@link RECENT_LEASE_ENDS} before the shard's first death) and all of
 *   them since, leaving out the shard's own deaths and the leases that died with its
 *   holders. A fleet that loses one lease in five needs 13 deaths of one shard before
 *   10⁻⁹; a fleet that otherwise survives needs 4 once it has ended a few hundred leases,
 *   5 after a hundred;
 * - or, whatever the fleet does, {@link PoisonRule.maxShardDeaths} deaths: a last bound
 *   for a fleet that loses more than half its leases (the rule above then needs over 30).
 *
 * `q` is Laplace's estimate, (deaths + 1) / (ends + 2): 1/2 with no lease to compare (30
 * deaths), never 0. An innocent shard whose deaths are independent draws at the fleet's
 * rate meets the chance limit with probability about that limit. The estimate lags when a
 * calm fleet suddenly starts dying and little else runs meanwhile. Reported failures
 * still count against `maxAttempts`.
 *
 * Pure: the counters are plain numbers moved by accepted results and expired leases, the
 * two lease ends the journal records, so a restart rebuilds them from the journal exactly
 * (durable.ts); only a shard's window starts again at its next death.
 */

/** Leases the recent counts remember: each ended lease decays the older ones by 1/256. */
export const RECENT_LEASE_ENDS = 256;

/**
 * Ended leases: accepted results and expirations (hand-backs and reported failures are
 * not counted). `ends`/`deaths` count all of them; `recentEnds`/`recentDeaths` decay
 * by 1/{@link RECENT_LEASE_ENDS} per ended lease.
 */
export interface LeaseEnds {
  ends: number;
  deaths: number;
  recentEnds: number;
  recentDeaths: number;
}

/** No lease ended yet. */
export function createLeaseEnds(): LeaseEnds {
  return { ends: 0, deaths: 0, recentEnds: 0, recentDeaths: 0 };
}

/** Counts one ended lease: an accepted result (`died` false) or an expired lease (`died` true). */
export function observeLeaseEnd(fleet: LeaseEnds, died: boolean): void {
  const keep = 1 - 1 / RECENT_LEASE_ENDS;
  fleet.ends++;
  fleet.recentEnds = fleet.recentEnds * keep + 1;
  if (died) fleet.deaths++;
  fleet.recentDeaths = fleet.recentDeaths * keep + (died ? 1 : 0);
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
   * the leases that died in the window with the shard's deaths: its own, and the others its
   * dying holders held (one worker death, whichever lease caused it).
   */
  readonly window: { readonly from: Readonly<LeaseEnds>; readonly own: number } | undefined;
}

/**
 * The shard's deaths after one more: its holder `workerId` died, and with it `diedWith`
 * other leases it held; `before` is the fleet's counters before the tick that saw the
 * death (the first death of a window opens it there, so other workers' leases that died in
 * the same tick count as the fleet's). Pure.
 */
export function addShardDeath(
  d: ShardDeaths | undefined,
  workerId: string,
  before: Readonly<LeaseEnds>,
  diedWith = 0,
): ShardDeaths {
  const workers = d?.workers ?? [];
  return {
    deaths: (d?.deaths ?? 0) + 1,
    workers: workers.includes(workerId) ? workers : [...workers, workerId],
    window: { from: d?.window?.from ?? { ...before }, own: (d?.window?.own ?? 0) + 1 + Math.max(0, diedWith) },
  };
}

/** A death restored from the journal: counted, with no window (it opens at the next death). */
export function restoredShardDeath(d: ShardDeaths | undefined, workerId: string): ShardDeaths {
  const workers = d?.workers ?? [];
  return {
    deaths: (d?.deaths ?? 0) + 1,
    workers: workers.includes(workerId) ? workers : [...workers, workerId],
    window: undefined,
  };
}

/**
 * The share of the fleet's other leases that ended with a death, recent past and window
 * together (see the module comment): (deaths + 1) / (ends + 2), in (0, 1).
 */
export function fleetDeathRate(d: ShardDeaths, fleet: Readonly<LeaseEnds>): number {
  const w = d.window;
  if (!w) return 0.5;
  const ends = Math.max(0, fleet.ends - w.from.ends - w.own);
  const deaths = Math.min(ends, Math.max(0, fleet.deaths - w.from.deaths - w.own));
  return (w.from.recentDeaths + deaths + 1) / (w.from.recentEnds + ends + 2);
}

/**
 * The tunables of the rule: the fields of the same names in `CoreConfig` (state.ts), which
 * satisfies this type. Declared here, not picked from it, because state.ts imports this module.
 */
export interface PoisonRule {
  /** Deaths of one shard's workers after which it is poison whatever the fleet does; 0 never. */
  readonly maxShardDeaths: number;
  /** Distinct worker processes that must have died holding the shard before the death-rate rule may call it poison. */
  readonly poisonMinWorkers: number;
  /** The death-rate rule calls a shard poison once its deaths had at most this chance at the fleet's death rate. */
  readonly poisonMaxChance: number;
}

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
    reason: `${head}; the fleet's other leases died at a rate of ${rate}, so ${d.deaths} deaths had a chance of 10^${log10Chance.toFixed(1)}, limit ${rule.poisonMaxChance})`,
  };
}
