// Scenarios of the simulation's chaos modes (issue 12: healthy jobs failed by worker deaths).
//
// "crash-storm": four respawning workers, each of which dies with probability 0.2 every
// time it finishes computing a shard (like `worker --chaos-crash-rate 0.2`), run 8 jobs of
// 380 to 462 one-element shards (3 040 to 3 696 shards) with the core's default
// maxAttempts (5). Coordinator crashes and a little network loss come on top. Every job
// must succeed: a death is not a failed attempt.
//
// "poison": one shard of one job kills every worker that runs it (like
// `worker --chaos-crash-on-shard`), among 1 to 3 jobs of 60 to 240 shards, with or without
// a background crash rate of 0.02. Its job must fail naming that shard and its last error
// after at most 10 deaths of it; the other jobs must succeed.
import type { MatMulSpecInput } from "@dce/core";
import { FINGERPRINTS, type Matrix, randomBlobId, randomMatrix } from "./matrix.js";
import type { Rng } from "./prng.js";

/** Which kind of run the simulation draws. */
export type SimMode = "default" | "crash-storm" | "poison" | "fair-share";

/** How the simulated workers die on their own in a chaos mode. */
export interface WorkerChaos {
  /** Probability of dying after computing a shard, before reporting it. */
  readonly crashRate: number;
  /** A shard that kills every worker that computes it: shard `shard` of job `job` (index of its client). */
  readonly poison: { readonly job: number; readonly shard: number } | undefined;
  /** A dead worker comes back as a new process after this long, in ms (a respawn loop). */
  readonly respawnMs: readonly [number, number];
}

/** Deaths of the poison shard the rule may take before its job fails (the brief: "within 10 deaths"). */
export const MAX_POISON_DEATHS = 10;

/** What a chaos mode adds to a scenario; the rest is drawn by {@link drawChaosBase}. */
export interface ChaosPart {
  readonly chaos: WorkerChaos;
  /** Simulated events before the run counts as a livelock (big runs need more). */
  readonly maxEvents: number;
  /** checkInvariants after every n-th core step (it reads every shard of every job). */
  readonly invariantEvery: number;
}

interface JobDraw {
  readonly key: string;
  readonly submitAtMs: number;
  readonly spec: MatMulSpecInput;
}

/** A job of m×n one-element tiles (m·n shards) on fresh seeded inputs. */
function job(rng: Rng, inputs: Map<string, Matrix>, j: number, m: number, n: number, submitAtMs: number): JobDraw {
  const k = rng.int(1, 4);
  const blobA = randomBlobId(rng);
  const blobB = randomBlobId(rng);
  inputs.set(blobA, randomMatrix(rng, m, k));
  inputs.set(blobB, randomMatrix(rng, k, n));
  return {
    key: `key-${j}`,
    submitAtMs,
    spec: {
      a: { rows: m, cols: k, blobId: blobA },
      b: { rows: k, cols: n, blobId: blobB },
      tileRows: 1,
      tileCols: 1,
      kernel: "reference",
    },
  };
}

/**
 * Draws the scenario of a chaos mode: the fields of the simulator's `Scenario` (see
 * sim.ts) plus its {@link ChaosPart}. Faults besides the workers' own deaths: 0–2
 * coordinator crashes (a restart must not count as deaths) and light network loss.
 */
export function drawChaosScenario(mode: "crash-storm" | "poison", rng: Rng, inputs: Map<string, Matrix>) {
  const ttlMs = rng.pick([150, 300, 600]);
  const faultEndMs = rng.int(1_000, 2_000);
  const storm = mode === "crash-storm";
  const nJobs = storm ? 8 : rng.int(1, 3);
  const jobs: JobDraw[] = [];
  for (let j = 0; j < nJobs; j++) {
    // 8 × 380 to 8 × 462 = 3 040 to 3 696 shards in a storm
    const [m, n] = storm ? [rng.int(20, 22), rng.int(19, 21)] : [rng.int(6, 16), rng.int(6, 16)];
    jobs.push(job(rng, inputs, j, m, n, rng.int(0, Math.floor(faultEndMs * 0.6))));
  }
  const target = rng.int(0, nJobs - 1);
  const spec = jobs[target]?.spec;
  const shards = (spec?.a?.rows ?? 1) * (spec?.b?.cols ?? 1);
  const poison = storm ? undefined : { job: target, shard: rng.int(0, shards - 1) };
  const faults: { atMs: number; fault: { kind: "coord-crash"; downMs: number; torn: boolean } }[] = [];
  for (let i = rng.pick([0, 1, 1, 2]); i > 0; i--) {
    faults.push({
      atMs: rng.int(0, faultEndMs),
      fault: { kind: "coord-crash", downMs: rng.int(10, 300), torn: rng.chance(0.4) },
    });
  }
  const build = rng.pick(FINGERPRINTS);
  const chaos: ChaosPart = {
    chaos: { crashRate: storm ? 0.2 : rng.pick([0, 0.02]), poison, respawnMs: [20, 200] },
    maxEvents: storm ? 3_000_000 : 600_000,
    invariantEvery: storm ? 16 : 1,
  };
  return {
    config: {
      leaseTtlMs: ttlMs,
      // The core's default: a death must not count against it.
      maxAttempts: 5,
      retryBaseMs: rng.pick([5, 20, 50]),
      retryMaxMs: 200,
      workerTtlMs: rng.pick([ttlMs * 5, 60_000]),
      throttleAfterFailures: 3,
      throttleBaseMs: rng.pick([20, 100]),
      throttleMaxMs: 400,
      stragglerFactor: rng.pick([0, 1.5]),
      stragglerMinDoneFraction: 0.75,
      quarantineAfterRejections: 3,
    },
    ttlMs,
    heartbeatMs: Math.floor(ttlMs / 3),
    tickMs: rng.pick([10, 25, 50]),
    longPollMs: rng.int(ttlMs, ttlMs * 3),
    rpcTimeoutMs: rng.int(Math.floor(ttlMs / 2), ttlMs * 2),
    workers: Array.from({ length: 4 }, () => ({ build, threads: rng.chance(0.3) ? 2 : 1 })),
    jobs,
    dropP: rng.pick([0, 0.01]),
    dupP: rng.pick([0, 0.01]),
    slowP: 0,
    maxDelayMs: rng.pick([2, 10]),
    fsync: rng.chance(0.3) ? ("step" as const) : ("group" as const),
    fsyncMaxMs: rng.pick([0, 3, 15]),
    epochHeadroom: rng.pick([1, 100_000]),
    computeMs: [2, 20] as const,
    slowComputeP: 0,
    shardFailP: 0,
    releaseP: 0,
    garbledP: 0,
    faultEndMs,
    faults: faults.sort((x, y) => x.atMs - y.atMs),
    crashPoint: undefined,
    clockSkewMs: rng.pick([0, 50]),
    snapshotP: rng.pick([0, 0.5]),
    corrupter: undefined,
    ...chaos,
  };
}

/** The error a job failed by the death rule carries for `shard`. */
export function poisonError(shard: number): RegExp {
  return new RegExp(
    `^shard ${shard}: \\d+ workers died running it \\(.*\\); last error: lease epoch \\d+ held by worker \\S+ expired$`,
  );
}

/**
 * What is wrong with the end of the poison shard's job (undefined if nothing): it must
 * have failed, naming the shard and its last error, after at most {@link MAX_POISON_DEATHS}
 * deaths of the shard (`deaths` counts every death the coordinator noted, lost ones included).
 */
export function checkPoisonEnd(state: string | undefined, error: string, shard: number, deaths: number): string | undefined {
  if (state !== "failed") return `the job of poison shard ${shard} is ${state ?? "missing"} at the end`;
  if (!poisonError(shard).test(error)) return `the job of poison shard ${shard} failed with "${error}"`;
  if (deaths > MAX_POISON_DEATHS) return `poison shard ${shard} took ${deaths} deaths (at most ${MAX_POISON_DEATHS})`;
  return undefined;
}
