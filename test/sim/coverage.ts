// Which kinds of fault a batch of simulation runs must have exercised (sim.test.ts).
//
// Two checks use this. Over the seeds a run of the suite covers, a kind must show up once
// there are enough seeds that its absence would be a change, not bad luck (`seedsNeeded`).
// And a fixed set of seeds must show every kind whatever the seed count (`COVERAGE_SEEDS`),
// so a kind that stops being generated fails the suite at 200 seeds as well as at 10 000.
import type { SimStats } from "./stats.js";

/**
 * The fault counters of {@link SimStats} a batch must show, each with the share of the
 * default-mode seeds 1..10 000 in which it was non-zero (measured with the harness around
 * the real coordinator, `harness/`, when this table was written).
 */
export const FAULT_RATES = {
  backups: 0.3512,
  staleCompletionsRejected: 0.4704,
  heartbeatsLost: 0.8223,
  shardFailures: 0.2048,
  garbledReports: 0.063,
  expired: 0.4297,
  coordinatorCrashes: 0.7763,
  tornCrashes: 0.0153,
  crashPoints: 0.2068,
  snapshotRestores: 0.2379,
  finalizedAfterRestart: 0.0239,
  workerCrashes: 0.7511,
  workerPauses: 0.7013,
  reregistrations: 0.7411,
  dropped: 0.724,
  duplicated: 0.71,
  corruptedResults: 0.1745,
  corruptRejected: 0.1686,
  quarantines: 0.0918,
  sharedIdentityWorkerQuarantines: 0.0353,
} as const satisfies Partial<Record<keyof SimStats, number>>;

/** A counter of {@link SimStats} that names a kind of fault or of fault handling. */
export type FaultKind = keyof typeof FAULT_RATES;

/** Every kind in {@link FAULT_RATES}, in table order. */
export const FAULT_KINDS = Object.keys(FAULT_RATES) as FaultKind[];

/** The chance, per kind, that a batch of {@link seedsNeeded} seeds misses a kind that is still drawn. */
export const MISS_PROBABILITY = 1e-9;

/**
 * How many seeds a batch needs before `kind` must appear in it. Each seed is one
 * independent draw, so a kind with per-seed chance p misses n seeds with probability
 * (1 - p)^n. p is taken as half the measured rate: over 10 000 seeds even the rarest kind
 * (tornCrashes, 1.53%) is measured to about ±0.12%, so its true rate is above that floor
 * by more than five standard errors. The result is the least n with (1 - p)^n ≤ 1e-9,
 * from 40 seeds (heartbeatsLost) to 2 699 (tornCrashes): the CI run of 10 000 seeds must
 * show every kind.
 */
export function seedsNeeded(kind: FaultKind): number {
  const p = FAULT_RATES[kind] / 2;
  return Math.ceil(Math.log(MISS_PROBABILITY) / Math.log(1 - p));
}

/**
 * Seeds that together exercise every kind at least three times (a greedy cover of the
 * seeds 1..10 000), so one seed whose run drifts does not hide a kind. A change to the
 * scenario draw changes what each seed does: when a kind is missing here, the test names
 * seeds that show it now (pick new ones) or says no seed does (the kind is gone).
 */
export const COVERAGE_SEEDS: readonly number[] = [66, 185, 378, 415, 455, 2495, 3054, 6815];

/** The kinds whose total over a batch is zero. */
export function missingKinds(totals: Partial<Record<keyof SimStats, number>>, kinds: readonly FaultKind[]): FaultKind[] {
  return kinds.filter((k) => (totals[k] ?? 0) === 0);
}
