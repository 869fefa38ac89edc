// What one simulated run did, and its outcome: the same counters for every driver, so
// coverage.ts judges them alike.

/** What one run did; the counters show which faults a run of many seeds actually exercised. */
export interface SimStats {
  events: number;
  simMs: number;
  jobs: number;
  shards: number;
  workers: number;
  grants: number;
  backups: number;
  accepted: number;
  rejectedCompletions: number;
  staleCompletionsRejected: number;
  heartbeatsLost: number;
  shardFailures: number;
  releases: number;
  garbledReports: number;
  expired: number;
  coordinatorCrashes: number;
  tornCrashes: number;
  crashPoints: number;
  snapshotRestores: number;
  finalizedAfterRestart: number;
  workerCrashes: number;
  workerPauses: number;
  reregistrations: number;
  dropped: number;
  duplicated: number;
  /** Results a corrupting worker changed on purpose, those the verification rejected, and quarantines. */
  corruptedResults: number;
  corruptRejected: number;
  quarantines: number;
  /** Quarantines of the corrupter alone while it shared its identity with an honest worker. */
  sharedIdentityWorkerQuarantines: number;
  /** Deaths of shards' workers the coordinator noted (lease expiries), and those of the poison shard. */
  shardDeaths: number;
  poisonDeaths: number;
  /** Fair-share mode: work granted to the clients of weight 1, 2 and 4 while all three were backlogged (shard-cost units). */
  shareCostLight: number;
  shareCostMid: number;
  shareCostHeavy: number;
}

/** The outcome of one seed: its stats, or the first violated guarantee. */
export type SimResult = { ok: true; stats: SimStats } | { ok: false; seed: number; error: string; stats: SimStats };

/** Counters of a run of `jobs` jobs on `workers` worker slots, all zero. */
export function emptyStats(jobs: number, workers: number): SimStats {
  return {
    events: 0,
    simMs: 0,
    jobs,
    shards: 0,
    workers,
    grants: 0,
    backups: 0,
    accepted: 0,
    rejectedCompletions: 0,
    staleCompletionsRejected: 0,
    heartbeatsLost: 0,
    shardFailures: 0,
    releases: 0,
    garbledReports: 0,
    expired: 0,
    coordinatorCrashes: 0,
    tornCrashes: 0,
    crashPoints: 0,
    snapshotRestores: 0,
    finalizedAfterRestart: 0,
    workerCrashes: 0,
    workerPauses: 0,
    reregistrations: 0,
    dropped: 0,
    duplicated: 0,
    corruptedResults: 0,
    corruptRejected: 0,
    quarantines: 0,
    sharedIdentityWorkerQuarantines: 0,
    shardDeaths: 0,
    poisonDeaths: 0,
    shareCostLight: 0,
    shareCostMid: 0,
    shareCostHeavy: 0,
  };
}
