// Property tests of the death rule (poison.ts) and of how the core keeps deaths (shard-deaths.ts).
// A failing property prints its seed and shrunk counterexample; replay with { seed, path }.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { applyRecord, createDurableModel, type DurableRecord, fromSnapshot, restoreCoreState, toSnapshot } from "./durable.js";
import type { Effect, LeaseKey } from "./events.js";
import type { JobId } from "./ids.js";
import { checkInvariants } from "./invariants.js";
import {
  addShardDeath,
  createLeaseEnds,
  fleetDeathRate,
  judgeShardDeaths,
  observeLeaseEnd,
  type PoisonRule,
  type ShardDeaths,
} from "./poison.js";
import { type CoreConfig, DEFAULT_CORE_CONFIG, isTerminal } from "./state.js";
import { step } from "./step.js";
import { Driver, effectsOf, matmulInput, unwrap } from "./testing/model.js";

const RULE: PoisonRule = DEFAULT_CORE_CONFIG;

/** mulberry32 from a fast-check seed: the draws of one simulated fleet. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A fleet of `shards` shards run round after round, one lease per unfinished shard per
 * round; each lease dies with probability `q` (the poison shard's always), else it
 * completes. A death is judged at the end of its round, after the round's other leases
 * ended (as a tick sees a worker's leases expire together). Returns the rounds and the
 * deaths at which shards were judged poison.
 */
function runFleet(shards: number, q: number, seed: number, poison = -1) {
  const random = rng(seed);
  const fleet = createLeaseEnds();
  const deaths = new Map<number, ShardDeaths>();
  const open = new Set(Array.from({ length: shards }, (_, i) => i));
  const judged = new Map<number, number>();
  let proc = 0;
  for (let round = 0; open.size > 0 && round < 10_000; round++) {
    const before = { ...fleet };
    const died: number[] = [];
    for (const i of open) {
      const dies = i === poison || random() < q;
      observeLeaseEnd(fleet, dies);
      if (dies) died.push(i);
      else open.delete(i);
    }
    for (const i of died) {
      const d = addShardDeath(deaths.get(i), `p${++proc}`, before);
      deaths.set(i, d);
      if (judgeShardDeaths(d, fleet, RULE).poison) {
        judged.set(i, d.deaths);
        open.delete(i);
      }
    }
  }
  return { judged, deaths };
}

describe("the death rule", () => {
  test.prop([fc.integer({ min: 1, max: 300 }), fc.double({ min: 0, max: 0.4, noNaN: true }), fc.integer()], {
    numRuns: 300,
  })("a fleet whose leases die independently at any rate up to 0.4 gets no shard called poison", (shards, q, seed) => {
    // per shard at most 1e-9 + 0.4^16 ≈ 4e-7: over these runs, about 1 in 50 000 would fail
    expect([...runFleet(shards, q, seed).judged]).toEqual([]);
  });

  test.prop([fc.integer({ min: 0, max: 300 }), fc.double({ min: 0, max: 0.4, noNaN: true }), fc.integer()], {
    numRuns: 300,
  })("a shard that kills every worker that runs it is called poison within maxShardDeaths deaths", (others, q, seed) => {
    const { judged } = runFleet(others + 1, q, seed, others);
    expect(judged.get(others)).toBeLessThanOrEqual(RULE.maxShardDeaths);
  });

  test.prop([fc.integer({ min: 100, max: 1_000 }), fc.integer()], { numRuns: 100 })(
    "...within 5 deaths when a hundred other leases complete between its deaths",
    (others, seed) => {
      const { judged } = runFleet(others + 1, 0, seed, others);
      expect(judged.get(others)).toBeLessThanOrEqual(5);
      expect(judged.get(others)).toBeGreaterThanOrEqual(RULE.poisonMinWorkers);
      expect(judged.size).toBe(1);
    },
  );

  const historyArb = fc.record({
    before: fc.record({ ends: fc.nat(1_000), deaths: fc.nat(1_000) }),
    deaths: fc.array(fc.record({ worker: fc.nat(5), ends: fc.nat(400), died: fc.nat(400) }), { minLength: 1, maxLength: 30 }),
    rule: fc.record({
      maxShardDeaths: fc.nat(20),
      poisonMinWorkers: fc.integer({ min: 1, max: 5 }),
      poisonMaxChance: fc.constantFrom(0, 1e-12, 1e-9, 1e-3),
    }),
  });

  test.prop([historyArb], { numRuns: 500 })(
    "poison exactly when deaths reach maxShardDeaths, or enough processes died and q^deaths is within the limit",
    ({ before, deaths, rule }) => {
      const fleet = createLeaseEnds();
      const end = (n: number, died: boolean) => {
        for (let i = 0; i < n; i++) observeLeaseEnd(fleet, died);
      };
      end(before.ends, false);
      end(before.deaths, true);
      let d: ShardDeaths | undefined;
      for (const x of deaths) {
        const at = { ...fleet };
        end(1, true);
        d = addShardDeath(d, `p${x.worker}`, at);
        end(x.ends, false);
        end(x.died, true);
      }
      if (!d) return;
      const q = fleetDeathRate(d, fleet);
      expect(q).toBeGreaterThan(0);
      expect(q).toBeLessThan(1);
      const byRate =
        d.workers.length >= rule.poisonMinWorkers && rule.poisonMaxChance > 0 && q ** d.deaths <= rule.poisonMaxChance;
      const expected = rule.maxShardDeaths > 0 && (d.deaths >= rule.maxShardDeaths || byRate);
      // q ** d and d·log10(q) may round differently at the boundary; skip exact ties
      const tie = Math.abs(d.deaths * Math.log10(q) - Math.log10(rule.poisonMaxChance || 1)) < 1e-9;
      if (!tie) expect(judgeShardDeaths(d, fleet, rule).poison).toBe(expected);
      expect(d.workers).toEqual([...new Set(deaths.map((x) => `p${x.worker}`))]);
    },
  );
});

// ---------------------------------------------------------------------------
// The core: deaths never count as attempts, and the journal keeps them.
// ---------------------------------------------------------------------------

// No straggler backups: a failed twin does not count as an attempt, which the model below would have to follow.
const CFG: Partial<CoreConfig> = {
  leaseTtlMs: 300,
  maxAttempts: 3,
  retryBaseMs: 10,
  retryMaxMs: 50,
  workerTtlMs: 2_000,
  stragglerFactor: 0,
};

type Action =
  | { t: "acquire"; slot: number; max: number }
  | { t: "complete"; pick: number }
  | { t: "fail"; pick: number }
  | { t: "die"; slot: number; max: number }
  | { t: "wait"; ms: number };

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ t: fc.constant("acquire" as const), slot: fc.nat(2), max: fc.integer({ min: 1, max: 3 }) }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("complete" as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("fail" as const), pick: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant("die" as const), slot: fc.nat(2), max: fc.integer({ min: 0, max: 2 }) }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("wait" as const), ms: fc.integer({ min: 1, max: 400 }) }) },
);

/**
 * Runs `actions` on three worker slots and two jobs of 6 shards; a slot that dies (after
 * taking `max` more shards) comes back as a new process, and its leases expire.
 */
function runActions(actions: readonly Action[], config: Partial<CoreConfig> = CFG) {
  const d = new Driver(config);
  const records: DurableRecord[] = [];
  const keep = (fx: readonly Effect[]) => {
    for (const f of effectsOf(fx, "persist")) records.push(f.record);
  };
  const jobs: JobId[] = [];
  for (let j = 0; j < 2; j++) {
    const r = d.submit(matmulInput(2, 2, 3, { tileRows: 1, tileCols: 1 }));
    keep(r.effects);
    jobs.push(unwrap(r.outcome).jobId);
  }
  let seq = 0;
  const slots = [0, 1, 2].map((i) => {
    const id = `s${i}.${++seq}`;
    d.register(id, undefined, `s${i}`);
    return id;
  });
  const held = new Map<string, LeaseKey[]>(slots.map((id) => [id, []]));
  /** Accepted failure reports per shard: the only thing that may fail a job through maxAttempts. */
  const failures = new Map<string, number>();
  const live = () => [...held].flatMap(([w, ls]) => ls.map((lease) => ({ w, lease })));
  const drop = (w: string, lease: LeaseKey) =>
    held.set(
      w,
      (held.get(w) ?? []).filter((l) => l.epoch !== lease.epoch),
    );
  for (const a of actions) {
    switch (a.t) {
      case "acquire": {
        const w = slots[a.slot] as string;
        const r = d.acquire(w, a.max);
        keep(r.effects);
        if (r.outcome.ok) held.get(w)?.push(...r.outcome.value.map((g) => g.lease));
        break;
      }
      case "complete":
      case "fail": {
        const all = live();
        const x = all[a.pick % Math.max(1, all.length)];
        if (!x) break;
        drop(x.w, x.lease);
        const r = a.t === "complete" ? d.complete(x.w, x.lease) : d.fail(x.w, x.lease, { error: "kernel error" });
        keep(r.effects);
        if (a.t === "fail" && r.outcome.ok) {
          const k = `${x.lease.jobId}/${x.lease.shardIndex}`;
          failures.set(k, (failures.get(k) ?? 0) + 1);
        }
        for (const f of effectsOf(r.effects, "finalize-result")) keep(d.finalized(f.jobId).effects);
        break;
      }
      case "die": {
        const old = slots[a.slot] as string;
        if (a.max > 0) keep(d.acquire(old, a.max).effects);
        held.delete(old); // its leases expire on their own
        const id = `s${a.slot}.${++seq}`;
        slots[a.slot] = id;
        held.set(id, []);
        d.register(id, undefined, `s${a.slot}`);
        break;
      }
      case "wait": {
        d.advance(a.ms);
        const r = d.tick(0.5);
        keep(r.effects);
        for (const [w, ls] of held)
          held.set(
            w,
            ls.filter((l) => d.state.leases.has(l.epoch)),
          );
        break;
      }
    }
    expect(checkInvariants(d.state)).toEqual([]);
  }
  return { d, jobs, records, failures };
}

describe("deaths in the core", () => {
  test.prop([fc.array(actionArb, { minLength: 40, maxLength: 150 })], { numRuns: 300 })(
    "a job fails for attempts only after maxAttempts reported failures of one shard; deaths never count",
    (actions) => {
      const { d, jobs, failures } = runActions(actions, { ...CFG, maxAttempts: 2, maxShardDeaths: 0 });
      for (const id of jobs) {
        const job = d.job(id);
        const most = Math.max(0, ...[...failures].filter(([k]) => k.startsWith(`${id}/`)).map(([, n]) => n));
        expect(job.state === "failed", `${id}: ${job.error}`).toBe(most >= 2);
        if (job.state === "failed") expect(job.error).toMatch(/^shard \d+ failed 2 times \(maxAttempts=2\)/);
      }
    },
  );

  test.prop([fc.array(actionArb, { minLength: 40, maxLength: 150 })], { numRuns: 300 })(
    "the journal keeps every death once: replay (doubled, or via a snapshot) restores each shard's count and workers, and a restart adds none",
    (actions) => {
      const { d, jobs, records } = runActions(actions, { ...CFG, maxAttempts: 1_000, stragglerFactor: 1.5 });
      const model = createDurableModel();
      for (const r of [...records, ...records]) applyRecord(model, r);
      for (const m of [model, fromSnapshot(JSON.parse(JSON.stringify(toSnapshot(model))))]) {
        const restored = restoreCoreState(CFG, m).state;
        // the fleet's counters come back exactly: they count only what the journal records
        expect(restored.leaseEnds).toEqual(d.state.leaseEnds);
        for (const id of jobs) {
          const live = d.job(id);
          const again = restored.jobs.get(id);
          if (isTerminal(live.state) && live.state !== "failed") continue;
          for (const [shard, x] of live.shardDeaths) {
            expect(again?.shardDeaths.get(shard)).toEqual({ deaths: x.deaths, workers: x.workers, window: undefined });
          }
          expect(again?.shardDeaths.size).toBe(live.shardDeaths.size);
        }
        // The leases that were live are gone with the old process: nothing expires, nothing dies.
        const later = step(restored, { type: "ticked", nowMs: d.nowMs + 60_000, jitter: 0 });
        expect(effectsOf(later.effects, "persist")).toEqual([]);
      }
    },
  );
});
