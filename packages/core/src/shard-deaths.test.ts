import { describe, expect, it } from "vitest";
import { applyRecord, createDurableModel, type DurableRecord, fromSnapshot, restoreCoreState, toSnapshot } from "./durable.js";
import type { LeaseKey } from "./events.js";
import { asJobId, asWorkerId } from "./ids.js";
import { checkInvariants } from "./invariants.js";
import type { ShardDeaths } from "./poison.js";
import { type CoreConfig, isTerminal } from "./state.js";
import { Driver, effectsOf, matmulInput, REF_A, unwrap } from "./testing/model.js";

const CFG: Partial<CoreConfig> = {
  leaseTtlMs: 1_000,
  maxAttempts: 3,
  retryBaseMs: 10,
  retryMaxMs: 100,
  workerTtlMs: 5_000,
};
/** 20×20 tiles of 1×1: 400 shards. */
const BIG = matmulInput(20, 2, 20, { tileRows: 1, tileCols: 1 });

/** mulberry32: a seeded stream of uniform numbers in [0, 1). */
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
 * Runs a fleet of `workers` one-shard-at-a-time workers on a job of 400 shards until it
 * ends. A worker dies instead of completing with probability `deathRate`, and always
 * when it runs shard `poison`; a dead worker's lease expires and a new process (a new
 * registration of the same identity) takes its place. Returns the run's persisted records.
 */
function runFleet(opts: { deathRate: number; poison?: number; config?: Partial<CoreConfig>; seed?: number }) {
  const d = new Driver({ ...CFG, ...opts.config });
  const random = rng(opts.seed ?? 1);
  const records: DurableRecord[] = [];
  const keep = (fx: ReturnType<Driver["tick"]>["effects"]) => {
    for (const f of effectsOf(fx, "persist")) records.push(f.record);
  };
  const submitted = d.submit(BIG);
  keep(submitted.effects);
  const jobId = unwrap(submitted.outcome).jobId;
  let seq = 0;
  const slots = ["a", "b", "c", "d"].map((identity) => {
    const id = `${identity}.${++seq}`;
    unwrap(d.register(id, undefined, identity).outcome);
    return { identity, id };
  });
  let deaths = 0;
  for (let round = 0; round < 5_000 && !isTerminal(d.job(jobId).state); round++) {
    for (const slot of slots) {
      const r = d.acquire(slot.id, 1);
      keep(r.effects);
      const g = unwrap(r.outcome)[0];
      if (!g) continue;
      if (g.lease.shardIndex === opts.poison || random() < opts.deathRate) {
        deaths++;
        slot.id = `${slot.identity}.${++seq}`; // the process died; its respawn registers anew
        unwrap(d.register(slot.id, undefined, slot.identity).outcome);
        continue;
      }
      const c = d.complete(slot.id, g.lease);
      keep(c.effects);
      if (effectsOf(c.effects, "finalize-result").length > 0) unwrap(d.finalized(jobId).outcome);
    }
    d.advance(100);
    keep(d.tick(random()).effects);
    expect(checkInvariants(d.state)).toEqual([]);
  }
  return { d, jobId, records, deaths };
}

describe("worker deaths", () => {
  it("a fleet that loses 30% of its leases finishes the job: deaths are not failed attempts", () => {
    // With deaths counted against maxAttempts=3, each shard has a 0.3³ ≈ 3% chance of failing the job.
    const { d, jobId, deaths } = runFleet({ deathRate: 0.3 });
    expect(d.job(jobId).error).toBe("");
    expect(d.job(jobId).state).toBe("succeeded");
    expect(deaths).toBeGreaterThan(100);
    const most = Math.max(...[...d.job(jobId).shardDeaths.values()].map((x) => x.deaths));
    expect(most).toBeGreaterThanOrEqual(3);
  });

  it("a shard that kills every worker that runs it fails its job within 10 deaths, naming it and its last error", () => {
    const { d, jobId, records } = runFleet({ deathRate: 0, poison: 7 });
    const job = d.job(jobId);
    expect(job.state).toBe("failed");
    expect(job.error).toMatch(
      /^shard 7: (\d+) workers died running it \(\1 distinct processes; the fleet's other leases died at a rate of \S+, so \1 deaths had a chance of 10\^-\d+\.\d, limit 1e-9\); last error: lease epoch \d+ held by worker [a-d]\.\d+ expired$/,
    );
    const died = records.filter((r) => r.type === "shard-died");
    expect(died.every((r) => r.type === "shard-died" && r.shardIndex === 7)).toBe(true);
    expect(died.length).toBeGreaterThanOrEqual(3);
    expect(died.length).toBeLessThanOrEqual(10);
    expect(job.shardDeaths.get(7)?.deaths).toBe(died.length);
  });

  it("the retry of a shard whose worker died goes to another identity while one can take it", () => {
    const d = new Driver({ ...CFG, spreadShards: false });
    d.register("a.1", undefined, "a");
    d.register("b.1", undefined, "b");
    const jobId = d.submitOk(matmulInput(1, 1, 2, { tileRows: 1, tileCols: 1 }));
    const [g] = d.grants("a.1", 1);
    d.advance(1_000);
    d.tick();
    d.advance(200);
    d.register("a.2", undefined, "a"); // the respawned process of the same machine
    expect(d.grants("a.2", 2).map((x) => x.lease.shardIndex)).toEqual([1]);
    expect(d.grants("b.1", 1).map((x) => x.lease.shardIndex)).toEqual([g?.lease.shardIndex]);
    expect(d.job(jobId).shardAvoid.get(0)).toEqual(["a"]);
  });

  it("a death is charged to the leases the worker was running, one per thread; its prefetched spares go back uncharged", () => {
    const d = new Driver({ ...CFG, spreadShards: false });
    const records: DurableRecord[] = [];
    d.apply({
      type: "worker-registered",
      nowMs: d.nowMs,
      workerId: asWorkerId("w2"),
      name: "w2",
      kernels: [REF_A],
      threads: 2,
      peerAddress: "",
    });
    const jobId = d.submitOk(BIG);
    const first = d.grants("w2", 5); // 2 threads: the 2 oldest run, 3 are spares
    d.advance(500);
    const later = d.grants("w2", 2); // after its last heartbeat: they expire 500 ms later
    d.advance(500);
    const t1 = d.tick();
    for (const f of effectsOf(t1.effects, "persist")) records.push(f.record);
    d.advance(500);
    const t2 = d.tick();
    for (const f of effectsOf(t2.effects, "persist")) records.push(f.record);
    expect(unwrap(t1.outcome).expired + unwrap(t2.outcome).expired).toBe(7);
    const died = records.flatMap((r) => (r.type === "shard-died" ? [r.epoch] : []));
    expect(died).toEqual(first.slice(0, 2).map((g) => g.lease.epoch));
    expect([...d.job(jobId).shardDeaths.keys()]).toEqual(first.slice(0, 2).map((g) => g.lease.shardIndex));
    expect(d.state.leaseEnds.deaths).toBe(2);
    // Every one of them runs again, none counted as an attempt.
    for (const g of [...first, ...later]) expect(d.job(jobId).shardAttempts[g.lease.shardIndex]).toBe(0);
    expect(d.job(jobId).retryQueue).toHaveLength(7);
  });

  it("reported failures still count against maxAttempts", () => {
    const d = new Driver(CFG);
    d.register("w1");
    const jobId = d.submitOk(BIG);
    for (let i = 0; i < 3; i++) {
      const [g] = d.grants("w1", 1);
      if (!g) throw new Error("no grant");
      d.fail("w1", g.lease, { error: `kernel error ${i}` });
      d.advance(1_000);
    }
    expect(d.job(jobId).error).toBe("shard 0 failed 3 times (maxAttempts=3); last error: kernel error 2");
  });

  it("deaths are journaled: replaying the journal (twice over, or through a snapshot) restores their count and workers", () => {
    const { d, jobId, records } = runFleet({ deathRate: 0.3, seed: 7, config: { maxShardDeaths: 0 } });
    const live = d.job(jobId).shardDeaths;
    expect(live.size).toBeGreaterThan(50);
    const model = createDurableModel();
    // Every record twice: a repeat of a death (same epoch) must not count again.
    for (const r of records) applyRecord(model, r);
    for (const r of records) applyRecord(model, r);
    const viaSnapshot = fromSnapshot(JSON.parse(JSON.stringify(toSnapshot(model))));
    // The window (the fleet's counters) is not durable: it starts again with the restarted coordinator.
    const counted = (m: ReadonlyMap<number, ShardDeaths> | undefined) =>
      [...(m ?? [])].map(([shard, x]) => [shard, x.deaths, x.workers, x.window === undefined]);
    for (const m of [model, viaSnapshot]) {
      const restored = restoreCoreState(CFG, m).state.jobs.get(jobId);
      expect(counted(restored?.shardDeaths)).toEqual(counted(live).map(([shard, n, w]) => [shard, n, w, true]));
    }
  });

  it("a coordinator restart is not a death: leases lost with it are not expired, and restored deaths count on", () => {
    const d = new Driver(CFG);
    const records: DurableRecord[] = [];
    const keep = (fx: ReturnType<Driver["tick"]>["effects"]) => {
      for (const f of effectsOf(fx, "persist")) records.push(f.record);
    };
    const j = asJobId("j");
    keep(d.submit(BIG, { jobId: j }).effects);
    for (const w of ["w1", "w2", "w3"]) d.register(w);
    // w1 dies holding shard 0; w2 and w3 hold one shard each (of their tile blocks) when the coordinator crashes.
    const held = new Map<string, LeaseKey>();
    for (const w of ["w1", "w2", "w3"]) {
      const r = d.acquire(w, 1);
      keep(r.effects);
      const [g] = unwrap(r.outcome);
      if (!g) throw new Error(`no grant for ${w}`);
      held.set(w, g.lease);
    }
    expect(held.get("w1")?.shardIndex).toBe(0);
    const [s2, s3] = [held.get("w2")?.shardIndex, held.get("w3")?.shardIndex];
    d.advance(900);
    d.heartbeat("w2", [held.get("w2") as LeaseKey]);
    d.heartbeat("w3", [held.get("w3") as LeaseKey]);
    d.advance(100);
    keep(d.tick().effects);
    expect(records.filter((r) => r.type === "shard-died").map((r) => r.type === "shard-died" && r.shardIndex)).toEqual([0]);

    const model = createDurableModel();
    for (const r of records) applyRecord(model, r);
    const after = restoreCoreState(CFG, model).state;
    const job = after.jobs.get(j);
    expect(job?.shardDeaths.get(0)?.deaths).toBe(1);
    expect(job?.shardDeaths.has(s2 as number)).toBe(false);
    expect(job?.shardDeaths.has(s3 as number)).toBe(false);
    expect(after.leases.size).toBe(0); // nothing left to expire: the lost leases are not deaths
  });
});
