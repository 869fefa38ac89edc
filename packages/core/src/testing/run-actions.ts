// The property runs' world: configuration, the jobs and worker builds they draw from,
// and the abstract actions a run is made of (see run-model.ts).
import { fc } from "@fast-check/vitest";
import type { ClientId } from "../ids.js";
import type { MatMulSpecInput } from "../spec.js";
import type { CoreConfig, KernelOffer } from "../state.js";
import { C1, C2, FOREIGN, matmulInput, REF_A, REF_B } from "./model.js";

export const CFG: Partial<CoreConfig> = {
  leaseTtlMs: 300,
  maxAttempts: 3,
  retryBaseMs: 20,
  retryMaxMs: 100,
  workerTtlMs: 2_000,
  maxActiveJobs: 4,
  // Short enough that ticks delete finished jobs within a run (job-deletion.ts).
  retentionMs: 500,
  maxRetentionMs: 2_000,
};

/** Small jobs: 4, 1, 8 and 1 shards; one names its kernel. */
export const SPECS: readonly MatMulSpecInput[] = [
  matmulInput(3, 2, 3, { tileRows: 2, tileCols: 2 }),
  matmulInput(1, 1, 1),
  matmulInput(4, 1, 5, { tileRows: 1, tileCols: 3, kernel: "reference" }),
  matmulInput(2, 3, 2),
];
export const CLIENTS: readonly ClientId[] = [C1, C2];
export const KEYS = ["", "k1", "k2"] as const;
/**
 * Worker builds: two fingerprints of the reference kernel, one listing a foreign kernel first,
 * one with nothing usable, and one with an empty fingerprint (proto3's default; the shell passes it through).
 */
export const OFFERS: readonly (readonly KernelOffer[])[] = [
  [REF_A],
  [REF_B],
  [FOREIGN, REF_A],
  [FOREIGN],
  [{ name: "reference", fingerprint: "" }],
];
export const SLOTS = 3;

// ---------------------------------------------------------------------------
// Actions: abstract moves, turned into concrete events against the run's state.
// ---------------------------------------------------------------------------

export type Action =
  | { t: "submit"; dt: number; spec: number; client: number; key: number; retention?: number }
  | { t: "register"; dt: number; slot: number; offer: number }
  | { t: "acquire"; dt: number; slot: number; max: number }
  | { t: "heartbeat"; dt: number; slot: number; mask: number; stale: boolean }
  | { t: "complete"; dt: number; pick: number; mode: "holder" | "wrong-size" | "wrong-worker" | "stale" }
  | { t: "fail"; dt: number; pick: number; release: boolean; jitter: number; stale: boolean }
  | { t: "cancel"; dt: number; job: number; owner: boolean }
  | { t: "delete"; dt: number; job: number; owner: boolean }
  | { t: "tick"; dt: number; jitter: number }
  | { t: "shell"; dt: number; ok: boolean }
  | { t: "drain"; dt: number };

const dtArb = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 400 }));
const jitterArb = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

function actionArb(opts: { faults: boolean }): fc.Arbitrary<Action> {
  const slot = fc.nat(SLOTS - 1);
  const base: fc.WeightedArbitrary<Action>[] = [
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant("submit" as const),
        dt: dtArb,
        spec: fc.nat(SPECS.length - 1),
        client: fc.nat(1),
        key: fc.nat(2),
        // 0: the default; 3_000 is above maxRetentionMs and refused.
        retention: fc.constantFrom(0, 0, 100, 3_000),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ t: fc.constant("register" as const), dt: dtArb, slot, offer: fc.nat(OFFERS.length - 1) }),
    },
    {
      weight: 6,
      arbitrary: fc.record({ t: fc.constant("acquire" as const), dt: dtArb, slot, max: fc.integer({ min: 0, max: 4 }) }),
    },
    {
      weight: 3,
      arbitrary: fc.record({ t: fc.constant("heartbeat" as const), dt: dtArb, slot, mask: fc.nat(), stale: fc.boolean() }),
    },
    {
      weight: 8,
      arbitrary: fc.record({
        t: fc.constant("complete" as const),
        dt: dtArb,
        pick: fc.nat(),
        mode: fc.constantFrom(
          "holder" as const,
          "holder" as const,
          "wrong-size" as const,
          "wrong-worker" as const,
          "stale" as const,
        ),
      }),
    },
    { weight: 3, arbitrary: fc.record({ t: fc.constant("tick" as const), dt: dtArb, jitter: jitterArb }) },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant("shell" as const),
        dt: dtArb,
        ok: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      }),
    },
  ];
  if (opts.faults) {
    base.push(
      {
        weight: 3,
        arbitrary: fc.record({
          t: fc.constant("fail" as const),
          dt: dtArb,
          pick: fc.nat(),
          release: fc.boolean(),
          jitter: jitterArb,
          stale: fc.boolean(),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          t: fc.constant("cancel" as const),
          dt: dtArb,
          job: fc.nat(),
          owner: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          t: fc.constant("delete" as const),
          dt: dtArb,
          job: fc.nat(),
          owner: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
        }),
      },
    );
  }
  return fc.oneof(...base);
}

export const runArb = fc.record({
  /** Builds registered in slots 0..2 before the run (more can register later). */
  builds: fc.array(fc.nat(OFFERS.length - 1), { minLength: 1, maxLength: SLOTS }),
  /** Jobs submitted before the run. */
  jobs: fc.array(fc.nat(SPECS.length - 1), { minLength: 1, maxLength: 3 }),
  actions: fc.array(actionArb({ faults: true }), { minLength: 1, maxLength: 100, size: "max" }),
  /** Index of the action before which the coordinator starts draining (rarely: grants stop for good). */
  drainAt: fc.oneof({ weight: 7, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat(100) }),
});
export type RunInput = typeof runArb extends fc.Arbitrary<infer T> ? T : never;
