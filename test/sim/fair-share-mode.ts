// The simulation's "fair-share" mode (issue 16): three clients whose tokens weigh 1, 2
// and 4 submit jobs continuously (one every ~150 ms each, more work than the four
// workers can do), through the real job service with their principal set as the auth
// layer would. While all three are backlogged (each has a shard no worker holds), the
// granted work (tile rows × cols × k, the core's shard cost) must split 1:2:4 within ±10%
// of each share; every job must still succeed with a byte-exact C, under message delay,
// drops and duplicates, straggler backups and coordinator crashes.

import type { Result } from "@dce/core";
import { type CoreEvent, type CoreState, type Grant, type JobId, type MatMulSpecInput, ShardStatus, shardCost } from "@dce/core";
import { FINGERPRINTS, type Matrix, randomBlobId, randomMatrix } from "./matrix.js";
import type { Rng } from "./prng.js";
import type { JobPlan } from "./scenario.js";

/** The mode's clients: token name and weight. */
export const FAIR_SHARE_CLIENTS = [
  { name: "light", weight: 1 },
  { name: "mid", weight: 2 },
  { name: "heavy", weight: 4 },
] as const;

/** Largest allowed deviation of a client's share of granted work from its weight share, relative to that share. */
export const MAX_SHARE_DEVIATION = 0.1;
/** Granted work counted while all clients were backlogged below which a run proves nothing (in shard-cost units). */
const MIN_WINDOW_COST = 1_500;

/** Jobs each client submits. */
const JOBS_PER_CLIENT = 6;

/** Draws the mode's scenario: the fields of the simulator's `Scenario` (scenario.ts). */
export function drawFairShareScenario(rng: Rng, inputs: Map<string, Matrix>) {
  const ttlMs = rng.pick([150, 300]);
  const jobs: JobPlan[] = [];
  for (let i = 0; i < JOBS_PER_CLIENT; i++) {
    FAIR_SHARE_CLIENTS.forEach((client, c) => {
      // m×n one-element tiles (64 to 144 shards) of cost k (1 to 4): shares are of cost, not of shards.
      const [m, n, k] = [rng.int(8, 12), rng.int(8, 12), rng.int(1, 4)];
      const blobA = randomBlobId(rng);
      const blobB = randomBlobId(rng);
      inputs.set(blobA, randomMatrix(rng, m, k));
      inputs.set(blobB, randomMatrix(rng, k, n));
      const spec: MatMulSpecInput = {
        a: { rows: m, cols: k, blobId: blobA },
        b: { rows: k, cols: n, blobId: blobB },
        tileRows: 1,
        tileCols: 1,
        kernel: "reference",
      };
      jobs.push({ key: `key-${client.name}-${i}`, submitAtMs: i * 150 + rng.int(0, 50) + c, spec, client });
    });
  }
  const faultEndMs = rng.int(1_000, 2_000);
  const faults: { atMs: number; fault: { kind: "coord-crash"; downMs: number; torn: boolean } }[] = [];
  for (let i = rng.pick([0, 0, 1]); i > 0; i--) {
    faults.push({ atMs: rng.int(0, faultEndMs), fault: { kind: "coord-crash", downMs: rng.int(10, 100), torn: false } });
  }
  const build = rng.pick(FINGERPRINTS);
  return {
    config: {
      leaseTtlMs: ttlMs,
      maxAttempts: 5,
      retryBaseMs: 20,
      retryMaxMs: 200,
      workerTtlMs: 60_000,
      throttleAfterFailures: 3,
      throttleBaseMs: 20,
      throttleMaxMs: 400,
      stragglerFactor: rng.pick([0, 1.5]),
      stragglerMinDoneFraction: 0.75,
      quarantineAfterRejections: 3,
    },
    ttlMs,
    heartbeatMs: Math.floor(ttlMs / 3),
    tickMs: 25,
    longPollMs: rng.int(ttlMs, ttlMs * 3),
    rpcTimeoutMs: rng.int(Math.floor(ttlMs / 2), ttlMs * 2),
    workers: Array.from({ length: 4 }, () => ({ build, threads: rng.chance(0.3) ? 2 : 1 })),
    jobs,
    dropP: rng.pick([0, 0.01]),
    dupP: rng.pick([0, 0.01]),
    slowP: 0,
    maxDelayMs: rng.pick([2, 10]),
    fsync: rng.chance(0.3) ? ("step" as const) : ("group" as const),
    fsyncMaxMs: rng.pick([0, 3]),
    epochHeadroom: 100_000,
    computeMs: [2, 20] as const,
    slowComputeP: 0,
    shardFailP: rng.pick([0, 0.02]),
    releaseP: 0,
    garbledP: 0,
    faultEndMs,
    faults: faults.sort((x, y) => x.atMs - y.atMs),
    crashPoint: undefined,
    clockSkewMs: 0,
    snapshotP: 0,
    corrupter: undefined,
    maxEvents: 1_000_000,
    invariantEvery: 8,
  };
}

/** True when a job of `clientId` has a shard no worker holds (pending, or waiting to be retried). */
function backlogged(state: CoreState, clientId: string): boolean {
  for (const id of state.activeJobs) {
    const job = state.jobs.get(id);
    if (job?.clientId !== clientId || job.finalizing) continue;
    if (job.retryQueue.length > 0 || job.shardStatus.includes(ShardStatus.pending)) return true;
  }
  return false;
}

/**
 * Counts the work granted to each client while every client is backlogged, from the
 * coordinator's own steps (so what is counted is what the core decided).
 */
export class FairShareWatch {
  /** Cost granted per client (FAIR_SHARE_CLIENTS order) while all were backlogged. */
  readonly cost: number[] = FAIR_SHARE_CLIENTS.map(() => 0);

  /** Observes one core step; `state` is the state after it. */
  onStep(event: CoreEvent, outcome: Result<unknown>, state: CoreState): void {
    if (event.type !== "shards-requested" || !outcome.ok) return;
    // Backlogged after the step means backlogged before it too (a grant only takes work away).
    if (!FAIR_SHARE_CLIENTS.every((c) => backlogged(state, c.name))) return;
    for (const g of outcome.value as Grant[]) {
      const job = state.jobs.get(g.lease.jobId as JobId);
      if (!job) continue;
      const c = FAIR_SHARE_CLIENTS.findIndex((x) => x.name === job.clientId);
      if (c >= 0) this.cost[c] = (this.cost[c] ?? 0) + shardCost(job, g.lease.shardIndex);
    }
  }

  /** What is wrong with the shares (undefined when each is within the bound). */
  check(): string | undefined {
    return checkShares(this.cost);
  }
}

/** What is wrong with `cost` (granted work per client, FAIR_SHARE_CLIENTS order), or undefined. */
export function checkShares(cost: readonly number[]): string | undefined {
  const total = cost.reduce((n, x) => n + x, 0);
  if (total < MIN_WINDOW_COST) return `only ${total} units of work were granted while all clients were backlogged`;
  const weights = FAIR_SHARE_CLIENTS.reduce((n, c) => n + c.weight, 0);
  for (const [i, c] of FAIR_SHARE_CLIENTS.entries()) {
    const share = (cost[i] ?? 0) / total;
    const want = c.weight / weights;
    if (Math.abs(share - want) / want > MAX_SHARE_DEVIATION) {
      return `client ${c.name} (weight ${c.weight}) got ${(share * 100).toFixed(1)}% of the work granted while all were backlogged, want ${(want * 100).toFixed(1)}% ± ${MAX_SHARE_DEVIATION * 100}% (${cost.join(":")})`;
    }
  }
  return undefined;
}
