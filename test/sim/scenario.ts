// The scenario of one simulated run: everything random about it, drawn up front from the
// seed (README "One run"). Shared by the simulation's drivers.
import type { CoreConfig, MatMulSpecInput } from "@dce/core";
import type { ChaosPart } from "./chaos-modes.js";
import { FINGERPRINTS, type Fingerprint, type Matrix, randomBlobId, randomMatrix } from "./matrix.js";
import type { Rng } from "./prng.js";
import type { Corrupter } from "./quarantine-watch.js";
export interface JobPlan {
  readonly key: string;
  readonly submitAtMs: number;
  readonly spec: MatMulSpecInput;
  /** The submitting client's token name and weight (fair-share mode); absent: the anonymous client. */
  readonly client?: { readonly name: string; readonly weight: number };
}

export type Fault =
  | { kind: "coord-crash"; downMs: number; torn: boolean }
  | { kind: "worker-crash"; slot: number; comebackMs: number | undefined }
  | { kind: "worker-pause"; slot: number; pauseMs: number };

export interface Scenario {
  readonly config: Partial<CoreConfig>;
  readonly ttlMs: number;
  readonly heartbeatMs: number;
  readonly tickMs: number;
  readonly longPollMs: number;
  readonly rpcTimeoutMs: number;
  readonly workers: readonly { build: Fingerprint; threads: number }[];
  readonly jobs: readonly JobPlan[];
  readonly dropP: number;
  readonly dupP: number;
  readonly slowP: number;
  readonly maxDelayMs: number;
  /** "step": records are durable at the end of the step that made them; "group": at a later fsync. */
  readonly fsync: "step" | "group";
  readonly fsyncMaxMs: number;
  /** Extra epochs per reservation (the real shell reserves 100 000; small values test the boundary). */
  readonly epochHeadroom: number;
  readonly computeMs: readonly [number, number];
  readonly slowComputeP: number;
  readonly shardFailP: number;
  readonly releaseP: number;
  /** A buggy worker also reports a tile under a garbled key (one run's epoch, another run's shard). */
  readonly garbledP: number;
  readonly faultEndMs: number;
  readonly faults: readonly { atMs: number; fault: Fault }[];
  /**
   * A named coordinator crash point, hit the `nth` time the run reaches it: "accept" right
   * after a tile is accepted (before the fsync), "fsync" after a group commit is durable
   * but before its replies leave, "finalize" once the last tile is durable but before the
   * result is sealed (the restart must finalise it).
   */
  readonly crashPoint: { at: "accept" | "fsync" | "finalize"; nth: number; downMs: number } | undefined;
  /** Largest clock offset of a restarted coordinator (its clock need not agree with the old one). */
  readonly clockSkewMs: number;
  /** Chance that a restart reads a snapshot of a journal prefix plus the rest of the journal. */
  readonly snapshotP: number;
  /**
   * One worker slot that corrupts a fraction of its results (only when every worker runs
   * one build); with three workers or more, it sometimes presents an honest slot's identity.
   */
  readonly corrupter: Corrupter | undefined;
  /** Workers that die on their own (chaos modes only). */
  readonly chaos?: ChaosPart["chaos"];
  readonly maxEvents?: number;
  readonly invariantEvery?: number;
}

/**
 * Adds the corrupting-worker part of a scenario from its own stream (`vrng`), so the
 * draws of every other part, and so the runs of existing seeds, stay as they were.
 */
export function withCorruption(sc: Omit<Scenario, "corrupter">, vrng: Rng): Scenario {
  const oneBuild = sc.workers.every((w) => w.build === sc.workers[0]?.build);
  const n = sc.workers.length;
  const drawn = oneBuild && n >= 2 && vrng.chance(0.35) ? { slot: vrng.int(0, n - 1), p: vrng.pick([0.2, 0.5, 1]) } : undefined;
  const config = { ...sc.config, quarantineAfterRejections: vrng.pick([0, 1, 2, 3]) };
  // A twin leaves at least one worker of another identity to finish the jobs should the shared one go.
  const twin = drawn && n >= 3 && vrng.chance(0.5) ? (drawn.slot + vrng.int(1, n - 1)) % n : undefined;
  return { ...sc, config, corrupter: drawn && { ...drawn, twin } };
}

export function drawScenario(rng: Rng, inputs: Map<string, Matrix>): Omit<Scenario, "corrupter"> {
  const ttlMs = rng.pick([150, 300, 600]);
  const nWorkers = rng.int(2, 8);
  const mixedBuilds = rng.chance(0.3);
  const firstBuild = rng.pick(FINGERPRINTS);
  const workers = Array.from({ length: nWorkers }, () => ({
    build: mixedBuilds ? rng.pick(FINGERPRINTS) : firstBuild,
    threads: rng.chance(0.3) ? 2 : 1,
  }));
  const faultEndMs = rng.int(800, 2000);
  const nJobs = rng.chance(0.15) ? 4 : rng.int(1, 3);
  const jobs: JobPlan[] = [];
  for (let j = 0; j < nJobs; j++) {
    const m = rng.int(1, 9);
    const k = rng.int(1, 6);
    const n = rng.int(1, 9);
    const a = randomMatrix(rng, m, k);
    const b = randomMatrix(rng, k, n);
    const blobA = randomBlobId(rng);
    const blobB = randomBlobId(rng);
    inputs.set(blobA, a);
    inputs.set(blobB, b);
    jobs.push({
      key: `key-${j}`,
      submitAtMs: rng.int(0, Math.floor(faultEndMs * 0.6)),
      spec: {
        a: { rows: m, cols: k, blobId: blobA },
        b: { rows: k, cols: n, blobId: blobB },
        tileRows: rng.int(1, 4),
        tileCols: rng.int(1, 4),
        kernel: rng.chance(0.5) ? "auto" : "reference",
      },
    });
  }
  const faults: { atMs: number; fault: Fault }[] = [];
  const at = () => rng.int(0, faultEndMs);
  const nCoord = rng.pick([0, 0, 1, 1, 1, 2, 3]);
  for (let i = 0; i < nCoord; i++) {
    faults.push({ atMs: at(), fault: { kind: "coord-crash", downMs: rng.int(10, 400), torn: rng.chance(0.4) } });
  }
  const nCrash = rng.int(0, 3);
  for (let i = 0; i < nCrash; i++) {
    const comebackMs = rng.chance(0.7) ? rng.int(20, 800) : undefined;
    faults.push({ atMs: at(), fault: { kind: "worker-crash", slot: rng.int(0, nWorkers - 1), comebackMs } });
  }
  const nPause = rng.int(0, 3);
  for (let i = 0; i < nPause; i++) {
    const pauseMs = rng.int(Math.floor(ttlMs * 1.1), ttlMs * 3);
    faults.push({ atMs: at(), fault: { kind: "worker-pause", slot: rng.int(0, nWorkers - 1), pauseMs } });
  }
  const quietNet = rng.chance(0.2);
  return {
    config: {
      leaseTtlMs: ttlMs,
      // Restarts reset attempt counters; a huge budget keeps "every job succeeds" a fair demand.
      maxAttempts: 10_000,
      retryBaseMs: rng.pick([5, 20, 50]),
      retryMaxMs: 200,
      workerTtlMs: rng.pick([ttlMs * 2, ttlMs * 5, 60_000]),
      throttleAfterFailures: rng.pick([2, 3]),
      throttleBaseMs: rng.pick([20, 100]),
      throttleMaxMs: 400,
      stragglerFactor: rng.pick([0, 1.5, 1.5, 3]),
      stragglerMinDoneFraction: rng.pick([0.5, 0.75]),
    },
    ttlMs,
    heartbeatMs: Math.floor(ttlMs / 3),
    tickMs: rng.pick([10, 25, 50]),
    longPollMs: rng.int(ttlMs, ttlMs * 3),
    rpcTimeoutMs: rng.int(Math.floor(ttlMs / 2), ttlMs * 2),
    workers,
    jobs,
    dropP: quietNet ? 0 : rng.pick([0.01, 0.03, 0.08]),
    dupP: quietNet ? 0 : rng.pick([0.01, 0.03, 0.08]),
    slowP: quietNet ? 0 : rng.pick([0.01, 0.05]),
    maxDelayMs: rng.pick([2, 10, 30]),
    fsync: rng.chance(0.3) ? "step" : "group",
    fsyncMaxMs: rng.pick([0, 3, 15]),
    epochHeadroom: rng.pick([0, 1, 7, 100_000]),
    computeMs: rng.pick([
      [2, 20],
      [5, 60],
      [20, 120],
    ] as const),
    slowComputeP: rng.pick([0, 0.05, 0.15]),
    shardFailP: rng.pick([0, 0.02, 0.06]),
    releaseP: rng.pick([0, 0.02]),
    garbledP: rng.pick([0, 0.05]),
    faultEndMs,
    faults: faults.sort((x, y) => x.atMs - y.atMs),
    crashPoint: rng.chance(0.35)
      ? { at: rng.pick(["accept", "fsync", "finalize"] as const), nth: rng.int(1, 8), downMs: rng.int(5, 300) }
      : undefined,
    clockSkewMs: rng.pick([0, 0, 50, 500]),
    snapshotP: rng.pick([0, 0.5]),
  };
}
