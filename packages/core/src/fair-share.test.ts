import { describe, expect, it } from "vitest";
import { applyRecord, createDurableModel, restoreCoreState } from "./durable.js";
import { shardCost } from "./fair-share.js";
import { asClientId, type ClientId, type JobId } from "./ids.js";
import type { CoreConfig } from "./state.js";
import { C1, C2, Driver, effectsOf, matmulInput, unwrap } from "./testing/model.js";

const CFG: Partial<CoreConfig> = { spreadShards: false, leaseTtlMs: 60_000 };
/** 64 shards of 4×4 tiles, k = 8. */
const BIG = matmulInput(32, 8, 32, { tileRows: 4, tileCols: 4 });
const SMALL = matmulInput(4, 8, 4, { tileRows: 4, tileCols: 4 });

/** Grants one shard at a time to worker `w`, completing each at once; returns whose jobs got them. */
function run(d: Driver, grants: number, w = "w"): ClientId[] {
  const out: ClientId[] = [];
  for (let i = 0; i < grants; i++) {
    const [g] = d.grants(w, 1);
    if (!g) break;
    out.push(d.job(g.lease.jobId).clientId);
    unwrap(d.complete(w, g.lease).outcome);
    for (const jobId of d.state.activeJobs) if (d.job(jobId).finalizing) unwrap(d.finalized(jobId).outcome);
  }
  return out;
}

const count = (xs: readonly ClientId[], c: ClientId): number => xs.filter((x) => x === c).length;

describe("weighted fair share between clients", () => {
  it("a small job of another client gets the very next grant while a large job is running", () => {
    const d = new Driver(CFG);
    d.register("w");
    d.submitOk(BIG, { clientId: C1 });
    d.submitOk(BIG, { clientId: C1 });
    run(d, 10);
    const small = d.submitOk(SMALL, { clientId: C2 });
    const [g] = d.grants("w", 1);
    expect(g?.lease.jobId).toBe(small);
  });

  it("backlogged clients of weights 1 and 3 get granted work 1:3", () => {
    const d = new Driver(CFG);
    d.register("w");
    const heavy = asClientId("heavy");
    for (let i = 0; i < 4; i++) {
      d.submitOk(BIG, { clientId: C1, weight: 1 });
      d.submitOk(BIG, { clientId: heavy, weight: 3 });
    }
    const got = run(d, 200);
    expect(count(got, C1)).toBe(50);
    expect(count(got, heavy)).toBe(150);
  });

  it("shares follow cost, not shard count: a client of big tiles gets fewer shards", () => {
    const d = new Driver(CFG);
    d.register("w");
    d.submitOk(matmulInput(64, 8, 64, { tileRows: 8, tileCols: 8 }), { clientId: C1 }); // cost 512 a shard
    d.submitOk(BIG, { clientId: C2 }); // cost 128 a shard
    const got = run(d, 50);
    expect(count(got, C2)).toBe(4 * count(got, C1));
  });

  it("a client whose work sat leased does not bank credit: it comes back level, not ahead", () => {
    const d = new Driver(CFG);
    d.register("w");
    d.register("slow");
    // C2's only shard sits on a slow worker while C1 is served alone for 60 grants.
    d.submitOk(SMALL, { clientId: C2 });
    expect(d.grants("slow", 1)).toHaveLength(1);
    for (let i = 0; i < 4; i++) d.submitOk(BIG, { clientId: C1 });
    expect(count(run(d, 60), C1)).toBe(60);
    d.submitOk(BIG, { clientId: C2 });
    const next = run(d, 40);
    // Level with C1 (one shard of slack for the tie), never the 40 a banked credit would give.
    expect(count(next, C2)).toBeGreaterThanOrEqual(19);
    expect(count(next, C2)).toBeLessThanOrEqual(21);
  });

  it("a weight change reaches running jobs with the client's next submit", () => {
    const d = new Driver(CFG);
    d.register("w");
    d.submitOk(BIG, { clientId: C1, weight: 1 });
    d.submitOk(BIG, { clientId: C2, weight: 1 });
    expect(count(run(d, 40), C1)).toBe(20);
    d.submitOk(SMALL, { clientId: C1, weight: 3 });
    const next = run(d, 40);
    expect(count(next, C1)).toBeGreaterThanOrEqual(29);
    expect(count(next, C1)).toBeLessThanOrEqual(31);
  });

  it("a worker asking for many shards at once gets the clients' shares, even once spreading caps one of them", () => {
    const d = new Driver({ ...CFG, spreadShards: true });
    d.register("w1");
    d.register("w2");
    const heavy = asClientId("heavy");
    const spec = matmulInput(64, 8, 64, { tileRows: 4, tileCols: 4 }); // 256 shards
    d.submitOk(spec, { clientId: heavy, weight: 3 });
    d.submitOk(spec, { clientId: C1, weight: 1 });
    // Spreading lets w1 take at most 128 of heavy's 256 shards (two workers can run it).
    const got = d.grants("w1", 256).map((g) => d.job(g.lease.jobId).clientId);
    expect(count(got, heavy)).toBe(128);
    expect(count(got, C1)).toBeLessThanOrEqual(44);
    // The other worker gets the rest of heavy's and its own share of C1's.
    const next = d.grants("w2", 256).map((g) => d.job(g.lease.jobId).clientId);
    expect(count(next, heavy)).toBe(128);
  });

  it("the shard cost is tile rows × tile cols × k, edge tiles included", () => {
    const d = new Driver(CFG);
    const j = d.job(d.submitOk(matmulInput(5, 7, 3, { tileRows: 4, tileCols: 4 })));
    expect([shardCost(j, 0), shardCost(j, 1)]).toEqual([4 * 3 * 7, 1 * 3 * 7]);
  });
});

describe("priorities within a client", () => {
  it("a higher priority goes first, and submit order breaks ties", () => {
    const d = new Driver(CFG);
    d.register("w");
    const low = d.submitOk(SMALL, { priority: -5 });
    const mid1 = d.submitOk(SMALL);
    const high = d.submitOk(SMALL, { priority: 100 });
    const mid2 = d.submitOk(SMALL);
    const order: JobId[] = [];
    for (let i = 0; i < 4; i++) order.push(...d.grants("w", 1).map((g) => g.lease.jobId));
    expect(order).toEqual([high, mid1, mid2, low]);
  });

  it("priority does not cross clients: another client's low-priority job still gets its share", () => {
    const d = new Driver(CFG);
    d.register("w");
    d.submitOk(BIG, { clientId: C1, priority: 100 });
    d.submitOk(BIG, { clientId: C2, priority: -100 });
    expect(count(run(d, 20), C2)).toBe(10);
  });

  it("refuses a priority outside -100..100 or not an integer, and a weight outside 1..1000", () => {
    const d = new Driver(CFG);
    for (const priority of [101, -101, 1.5, Number.NaN]) {
      const r = d.submit(SMALL, { priority });
      expect(r.outcome.ok ? "ok" : r.outcome.error).toEqual({
        kind: "invalid-spec",
        message: `priority must be an integer from -100 to 100, got ${priority}`,
      });
    }
    for (const weight of [0, 1001, 2.5]) {
      const r = d.submit(SMALL, { weight });
      expect(r.outcome.ok ? "ok" : r.outcome.error).toMatchObject({ kind: "invalid-spec" });
    }
    expect(d.state.jobs.size).toBe(0);
    expect(d.submit(SMALL, { priority: -100, weight: 1000 }).outcome.ok).toBe(true);
  });
});

describe("durability of priorities and weights", () => {
  it("a restart restores each job's priority and each client's latest weight", () => {
    const d = new Driver(CFG);
    const model = createDurableModel();
    const first = d.submit(SMALL, { clientId: C1, priority: 7, weight: 2 });
    const second = d.submit(SMALL, { clientId: C1, weight: 5 });
    for (const p of effectsOf([...first.effects, ...second.effects], "persist")) applyRecord(model, p.record);
    const later = unwrap(second.outcome).jobId;
    const { state } = restoreCoreState(CFG, model);
    expect([...state.jobs.values()].map((j) => j.priority)).toEqual([7, 0]);
    expect(state.fairShare.clients.get(C1)?.weight).toBe(5);
    expect(state.jobs.get(later)?.weight).toBe(5);
  });

  it("a journal written before priorities restores priority 0 and weight 1", () => {
    const d = new Driver(CFG);
    const id = d.submitOk(SMALL);
    const job = d.job(id);
    const model = createDurableModel();
    applyRecord(model, {
      type: "job-created",
      jobId: id,
      clientId: job.clientId,
      idempotencyKey: "",
      spec: job.spec,
      createdAtMs: 1,
    });
    const { state } = restoreCoreState(CFG, model);
    expect([state.jobs.get(id)?.priority, state.jobs.get(id)?.weight]).toEqual([0, 1]);
  });
});
