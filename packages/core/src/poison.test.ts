import { describe, expect, it } from "vitest";
import {
  addShardDeath,
  createLeaseEnds,
  fleetDeathRate,
  judgeShardDeaths,
  type LeaseEnds,
  observeLeaseEnd,
  type PoisonRule,
  RECENT_LEASE_ENDS,
  restoredShardDeath,
  type ShardDeaths,
} from "./poison.js";
import { DEFAULT_CORE_CONFIG } from "./state.js";

const RULE: PoisonRule = { maxShardDeaths: 32, poisonMinWorkers: 3, poisonMaxChance: 1e-9 };

/** Ends `ends` leases, every `1/rate`-th with a death (none for rate 0). */
function run(fleet: LeaseEnds, ends: number, rate: number): void {
  let owed = 0;
  for (let i = 0; i < ends; i++) {
    owed += rate;
    const died = owed >= 1;
    if (died) owed -= 1;
    observeLeaseEnd(fleet, died);
  }
}

/**
 * A shard that died `n` times (on `workers` distinct processes) after the fleet ended
 * `past.ends` leases at death rate `past.rate`, while it ended `meanwhile.ends` more at
 * `meanwhile.rate` (spread between the deaths).
 */
function shard(
  n: number,
  past: { ends: number; rate: number },
  meanwhile = { ends: 0, rate: 0 },
  workers = n,
): { d: ShardDeaths; fleet: LeaseEnds } {
  const fleet = createLeaseEnds();
  run(fleet, past.ends, past.rate);
  let d: ShardDeaths | undefined;
  for (let i = 0; i < n; i++) {
    const before = { ...fleet };
    observeLeaseEnd(fleet, true);
    d = addShardDeath(d, `w${i % workers}`, before);
    run(fleet, Math.round(meanwhile.ends / n), meanwhile.rate);
  }
  if (!d) throw new Error("no deaths");
  return { d, fleet };
}

const judge = (...args: Parameters<typeof shard>) => {
  const { d, fleet } = shard(...args);
  return judgeShardDeaths(d, fleet, RULE);
};

describe("fleetDeathRate", () => {
  it("is Laplace's estimate over the recent past and the other leases since the shard's first death", () => {
    const { d, fleet } = shard(3, { ends: 0, rate: 0 }, { ends: 99, rate: 0.1 });
    expect(fleetDeathRate(d, fleet)).toBe((9 + 1) / (99 + 2)); // the shard's own 3 deaths are not the fleet's
    const calm = shard(3, { ends: 10 * RECENT_LEASE_ENDS, rate: 0 });
    // the recent past counts about RECENT_LEASE_ENDS leases
    expect(1 / fleetDeathRate(calm.d, calm.fleet) - 2).toBeCloseTo(RECENT_LEASE_ENDS, 0);
  });

  it("is 1/2 with no lease to compare with, and for restored deaths until the next death opens a window", () => {
    const { d, fleet } = shard(4, { ends: 0, rate: 0 });
    expect(fleetDeathRate(d, fleet)).toBe(0.5);
    const restored = restoredShardDeath(restoredShardDeath(undefined, "w0"), "w1");
    expect(restored).toEqual({ deaths: 2, workers: ["w0", "w1"], window: undefined });
    expect(fleetDeathRate(restored, fleet)).toBe(0.5);
  });

  it("counts other workers' leases that died in the same tick as the fleet's, not those that died with its holder", () => {
    const fleet = createLeaseEnds();
    const before = { ...fleet };
    run(fleet, 5, 1); // its holder died with 2 leases, others with 3
    const d = addShardDeath(undefined, "w0", before, 1);
    expect(fleetDeathRate(d, fleet)).toBe((3 + 1) / (3 + 2));
    observeLeaseEnd(fleet, false);
    const again = addShardDeath(d, "w1", { ...fleet }, 4);
    expect(again.window).toEqual({ from: before, own: 7 });
  });
});

describe("judgeShardDeaths", () => {
  it("the defaults are the rule documented in the README", () => {
    expect({
      maxShardDeaths: DEFAULT_CORE_CONFIG.maxShardDeaths,
      poisonMinWorkers: DEFAULT_CORE_CONFIG.poisonMinWorkers,
      poisonMaxChance: DEFAULT_CORE_CONFIG.poisonMaxChance,
    }).toEqual(RULE);
  });

  it("a fleet that loses one lease in five: 12 deaths of one shard are bad luck, 13 are poison", () => {
    const storm = { ends: 5_000, rate: 0.2 };
    expect(judge(12, storm, storm)).toEqual({ poison: false });
    expect(judge(13, storm, storm)).toEqual({
      poison: true,
      reason:
        "13 workers died running it (13 distinct processes; the fleet's other leases died at a rate of 0.20, so 13 deaths had a chance of 10^-9.1, limit 1e-9)",
    });
  });

  it("a fleet that otherwise survives: 4 deaths after a few hundred leases, 5 after a hundred, even with nothing else running since", () => {
    expect(judge(3, { ends: 2_000, rate: 0 }).poison).toBe(false);
    expect(judge(4, { ends: 2_000, rate: 0 })).toMatchObject({
      poison: true,
      reason: expect.stringContaining("at a rate of 3.9e-3, so 4 deaths had a chance of 10^-9.6"),
    });
    expect(judge(4, { ends: 100, rate: 0 }).poison).toBe(false);
    expect(judge(5, { ends: 100, rate: 0 }).poison).toBe(true);
  });

  it("a calm past weighs less as the fleet starts dying around the shard", () => {
    expect(judge(6, { ends: 2_000, rate: 0 }, { ends: 0, rate: 0 }).poison).toBe(true);
    expect(judge(6, { ends: 2_000, rate: 0 }, { ends: 600, rate: 0.2 }).poison).toBe(false);
  });

  it("needs poisonMinWorkers distinct processes: one process that keeps losing its leases is not enough", () => {
    const calm = { ends: 10_000, rate: 0 };
    expect(judge(15, calm, calm, 2)).toEqual({ poison: false });
    expect(judge(15, calm, calm, 3).poison).toBe(true);
  });

  it("maxShardDeaths bounds the deaths whatever the fleet does; 0 never fails a job for deaths", () => {
    expect(judge(29, { ends: 0, rate: 0 })).toEqual({ poison: false }); // 0.5^29 > 1e-9
    expect(judge(31, { ends: 0, rate: 0 }, undefined, 2)).toEqual({ poison: false });
    expect(judge(32, { ends: 0, rate: 0 }, undefined, 1)).toEqual({
      poison: true,
      reason: "32 workers died running it (1 distinct processes; maxShardDeaths=32)",
    });
    const { d, fleet } = shard(100, { ends: 10_000, rate: 0 });
    expect(judgeShardDeaths(d, fleet, { ...RULE, maxShardDeaths: 0 })).toEqual({ poison: false });
    expect(judgeShardDeaths(shard(15, { ends: 10_000, rate: 0 }).d, fleet, { ...RULE, poisonMaxChance: 0 })).toEqual({
      poison: false,
    });
  });
});
