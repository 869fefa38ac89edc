import { describe, expect, it } from "vitest";
import {
  addShardDeath,
  createLeaseEnds,
  fleetDeathRate,
  judgeShardDeaths,
  type LeaseEnds,
  observeLeaseEnd,
  type PoisonRule,
  restoredShardDeath,
  type ShardDeaths,
} from "./poison.js";
import { DEFAULT_CORE_CONFIG } from "./state.js";

const RULE: PoisonRule = { maxShardDeaths: 16, poisonMinWorkers: 3, poisonMaxChance: 1e-9 };

/**
 * A shard that died `n` times (on `workers` distinct processes) while the rest of the
 * fleet ended `others.ends` leases, `others.deaths` of them with a death.
 */
function shard(n: number, others: LeaseEnds, workers = n): { d: ShardDeaths; fleet: LeaseEnds } {
  const fleet = createLeaseEnds();
  for (let i = 0; i < 50; i++) observeLeaseEnd(fleet, false); // before the window: not counted
  let d: ShardDeaths | undefined;
  for (let i = 0; i < n; i++) {
    const before = { ...fleet };
    observeLeaseEnd(fleet, true);
    d = addShardDeath(d, `w${i % workers}`, before);
  }
  if (!d) throw new Error("no deaths");
  fleet.ends += others.ends;
  fleet.deaths += others.deaths;
  return { d, fleet };
}

const judge = (n: number, others: LeaseEnds, workers = n, rule = RULE) => {
  const { d, fleet } = shard(n, others, workers);
  return judgeShardDeaths(d, fleet, rule);
};

describe("fleetDeathRate", () => {
  it("is Laplace's estimate over the other leases that ended since the shard's first death", () => {
    const { d, fleet } = shard(3, { ends: 98, deaths: 9 });
    // the shard's own 3 deaths are not the fleet's; the 50 leases before its window are not counted
    expect(fleetDeathRate(d, fleet)).toBe((9 + 1) / (98 + 2));
  });

  it("is 1/2 with no other lease to compare with, and after a restart until the next death opens a window", () => {
    const { d, fleet } = shard(4, { ends: 0, deaths: 0 });
    expect(fleetDeathRate(d, fleet)).toBe(0.5);
    const restored = restoredShardDeath(restoredShardDeath(undefined, "w0"), "w1");
    expect(restored).toEqual({ deaths: 2, workers: ["w0", "w1"], window: undefined });
    expect(fleetDeathRate(restored, { ends: 1_000, deaths: 0 })).toBe(0.5);
  });

  it("counts the leases that died in the same tick as the shard's first death as the fleet's", () => {
    const fleet = createLeaseEnds();
    const before = { ...fleet };
    for (let i = 0; i < 4; i++) observeLeaseEnd(fleet, true); // one worker died holding 4 leases
    const d = addShardDeath(undefined, "w0", before);
    expect(fleetDeathRate(d, fleet)).toBe((3 + 1) / (3 + 2));
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

  it("a fleet that loses one lease in five meanwhile: 12 deaths of one shard are bad luck, 13 are poison", () => {
    // q = (199 + 1) / (998 + 2) = 0.2; 0.2^12 = 4e-9 > 1e-9 ≥ 0.2^13 = 8e-10
    expect(judge(12, { ends: 998, deaths: 199 })).toEqual({ poison: false });
    expect(judge(13, { ends: 998, deaths: 199 })).toEqual({
      poison: true,
      reason:
        "13 workers died running it (13 distinct processes; the other leases died at a rate of 0.20 meanwhile, so 13 deaths had a chance of 10^-9.1, limit 1e-9)",
    });
  });

  it("a fleet that otherwise survives: 3 deaths with a thousand other leases done meanwhile, 5 with a hundred", () => {
    expect(judge(2, { ends: 998, deaths: 0 })).toEqual({ poison: false });
    expect(judge(3, { ends: 998, deaths: 0 })).toMatchObject({
      poison: true,
      reason: expect.stringContaining("at a rate of 1.0e-3 meanwhile, so 3 deaths had a chance of 10^-9.0"),
    });
    expect(judge(4, { ends: 98, deaths: 0 }).poison).toBe(false);
    expect(judge(5, { ends: 98, deaths: 0 }).poison).toBe(true);
  });

  it("needs poisonMinWorkers distinct processes: one process that keeps losing its leases is not enough", () => {
    expect(judge(15, { ends: 10_000, deaths: 0 }, 2)).toEqual({ poison: false });
    expect(judge(15, { ends: 10_000, deaths: 0 }, 3).poison).toBe(true);
  });

  it("maxShardDeaths bounds the deaths whatever the fleet does; 0 never fails a job for deaths", () => {
    expect(judge(15, { ends: 0, deaths: 0 })).toEqual({ poison: false });
    expect(judge(16, { ends: 0, deaths: 0 }, 1)).toEqual({
      poison: true,
      reason: "16 workers died running it (1 distinct processes; maxShardDeaths=16)",
    });
    expect(judge(100, { ends: 10_000, deaths: 0 }, 100, { ...RULE, maxShardDeaths: 0 })).toEqual({ poison: false });
    expect(judge(15, { ends: 10_000, deaths: 0 }, 15, { ...RULE, poisonMaxChance: 0 })).toEqual({ poison: false });
  });
});
