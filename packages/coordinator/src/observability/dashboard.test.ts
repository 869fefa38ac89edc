import { afterEach, describe, expect, it } from "vitest";
import { openScenario, type Scenario, type ScenarioOptions } from "../test-support/scenario.js";
import { createDashboard, recentRate, tileMap } from "./dashboard.js";

const opened: Scenario[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

/** The real coordinator in memory on a virtual clock, driven one call at a time; closed after the test. */
async function scenario(o: ScenarioOptions = {}): Promise<Scenario> {
  const sc = await openScenario(o);
  opened.push(sc);
  return sc;
}

describe("dashboard snapshot", () => {
  it("shows jobs with progress and ETA, workers with their leases and rates, and throughput", async () => {
    const sc = await scenario({ core: { leaseTtlMs: 10_000 } });
    const dash = createDashboard(sc.coordinator, { nowMs: () => sc.nowMs });
    const job = await sc.submit(8, 4, 8, 2); // 4 x 4 = 16 shards of 2x2
    const w1 = await sc.register("w1", 2);
    const w2 = await sc.register("w2", 1);
    const grants = await sc.acquire(w1, 4);
    await sc.acquire(w2, 1);
    await sc.advance(2_000);
    for (const g of grants) expect((await sc.complete(w1, g)).ok).toBe(true);
    await sc.advance(1_000);

    const s = dash.snapshot();
    expect(s.focusJobId).toBe(job);
    expect(s.totals).toMatchObject({ workers: 2, threads: 3, leases: 1, shardsCompleted: 4 });
    expect(s.totals.jobs.running).toBe(1);
    const view = s.jobs[0];
    expect(view).toMatchObject({ id: job, state: "running", shardsTotal: 16, shardsDone: 4, shardsLeased: 1, shardsQueued: 11 });
    // 4 shards in 3 s: 12 shards left take 9 s more.
    expect(view?.shardsPerSec).toBeCloseTo(4 / 3);
    expect(view?.etaMs).toBe(9_000);
    const [v1, v2] = s.workers;
    expect(v1).toMatchObject({ name: "w1", status: "idle", shardsCompleted: 4, leaseCount: 0 });
    expect(v2).toMatchObject({ name: "w2", status: "busy", leaseCount: 1 });
    expect(v2?.leases[0]).toMatchObject({ jobId: job, expiresInMs: 7_000 });
    expect(v1?.shardsPerSec).toBeCloseTo(4 / 3); // registered 3 s ago: 4 shards over 3 s
    expect(s.totals.shardsPerSec).toBeCloseTo(4 / 3);
    // Throughput: one point per second; the 4 shards (2·2·2·4 flops each) landed in the same second.
    const landed = s.throughput.find((p) => p.shards > 0);
    expect(landed).toMatchObject({ shards: 4, flops: 4 * 2 * 2 * 2 * 4 });
    expect(s.throughput).toHaveLength(4); // the dashboard is 3 s old: seconds 0..3
    await sc.advance(200_000);
    expect(dash.snapshot().throughput).toHaveLength(120);
    // w1 and w2 each have a block of two tile rows: w2 starts on row 2, at tile 8.
    expect(s.tiles?.cells).toBe("ddddpppplppppppp");
    dash.close();
  });

  it("orders active jobs first, then finished newest first; focus follows the request", async () => {
    const sc = await scenario();
    const dash = createDashboard(sc.coordinator, { nowMs: () => sc.nowMs });
    const a = await sc.submit(2, 2, 2, 2);
    await sc.advance(10);
    const b = await sc.submit(2, 2, 2, 2);
    await sc.cancel(a);
    await sc.advance(10);
    const c = await sc.submit(2, 2, 2, 2);
    await sc.cancel(c);
    const s = dash.snapshot();
    expect(s.jobs.map((j) => j.id)).toEqual([b, c, a]);
    expect(s.focusJobId).toBe(b);
    expect(dash.snapshot(a).focusJobId).toBe(a);
    expect(dash.snapshot("unknown").focusJobId).toBe(b);
  });

  it("shows a quarantined worker beside an honest one of the same identity, and keeps listing it after the process is forgotten", async () => {
    const sc = await scenario({ core: { quarantineAfterRejections: 1, workerTtlMs: 1_000 }, verify: true });
    const dash = createDashboard(sc.coordinator, { nowMs: () => sc.nowMs });
    await sc.submit(4, 4, 4, 2);
    const bad = await sc.register("w-bad", 1, "CN=shared");
    await sc.register("w-good", 1, "CN=shared");
    const [g] = await sc.acquire(bad, 1);
    if (!g) throw new Error("expected a grant");
    expect((await sc.reject(bad, g)).ok).toBe(true);
    expect(dash.snapshot().workers).toEqual([
      expect.objectContaining({
        name: "w-bad",
        identity: "CN=shared",
        status: "quarantined",
        quarantine: "worker",
        rejectedResults: 1,
      }),
      expect.objectContaining({ name: "w-good", identity: "CN=shared", status: "idle", quarantine: "", rejectedResults: 0 }),
    ]);
    await sc.tick(5_000); // both processes forgotten; the quarantined one stays listed
    expect(dash.snapshot().workers).toEqual([
      expect.objectContaining({ id: bad, name: "w-bad", status: "quarantined", quarantine: "worker", rejectedResults: 1 }),
    ]);
    dash.close();
  });

  it("lists a quarantined identity, also once none of its workers is left", async () => {
    const sc = await scenario({ core: { quarantineAfterRejections: 2, workerTtlMs: 1_000 }, verify: true });
    const dash = createDashboard(sc.coordinator, { nowMs: () => sc.nowMs });
    await sc.submit(4, 4, 4, 2);
    // One wrong result from each of two workers of CN=bad: the identity reaches the limit.
    for (const name of ["w-bad-1", "w-bad-2"]) {
      const w = await sc.register(name, 1, "CN=bad");
      const [g] = await sc.acquire(w, 1);
      if (!g) throw new Error("expected a grant");
      expect((await sc.reject(w, g)).ok).toBe(true);
    }
    expect(dash.snapshot().workers.map((w) => [w.name, w.status, w.quarantine, w.rejectedResults])).toEqual([
      ["w-bad-1", "quarantined", "identity", 1],
      ["w-bad-2", "quarantined", "identity", 1],
    ]);
    await sc.tick(5_000);
    expect(dash.snapshot().workers).toEqual([
      expect.objectContaining({ id: "", name: "CN=bad", status: "quarantined", quarantine: "identity", rejectedResults: 2 }),
    ]);
    dash.close();
  });

  it("marks stale workers and retried tiles", async () => {
    const sc = await scenario();
    const dash = createDashboard(sc.coordinator, { nowMs: () => sc.nowMs, staleAfterMs: 500 });
    const job = await sc.submit(2, 2, 4, 2); // 2 shards
    const w = await sc.register("w");
    await sc.acquire(w, 2);
    await sc.tick(1_500); // both leases expire: retried, waiting
    const s = dash.snapshot();
    expect(s.workers[0]?.status).toBe("stale");
    expect(s.tiles).toMatchObject({ jobId: job, cells: "rr", counts: { retried: 2, pending: 0 } });
  });
});

describe("recent rate", () => {
  it("counts the current second for the part that passed, and nothing before the start", async () => {
    const counts = new Map([
      [100, 10],
      [101, 10],
      [104, 5],
    ]);
    // At 104.5 s the window is 100..104, 4.5 s long: 25 shards.
    expect(recentRate(counts, 104_500, 0)).toBeCloseTo(25 / 4.5);
    // Started at 103 s: only 1.5 s of it counts as time.
    expect(recentRate(counts, 104_500, 103_000)).toBeCloseTo(25 / 1.5);
    // Never divides by less than a quarter second.
    expect(recentRate(new Map([[104, 1]]), 104_010, 104_000)).toBe(4);
    expect(recentRate(counts, 200_000, 0)).toBe(0);
  });
});

describe("tile map", () => {
  it("downsamples big plans into blocks showing their most telling state", async () => {
    const sc = await scenario();
    const jobId = await sc.submit(100, 1, 100, 1); // 100 x 100 tiles
    const job = sc.h.job(jobId);
    if (!job) throw new Error("no job");
    const w = await sc.register("w");
    // Finish the first 100 shards (the top row of tiles) and lease the next one.
    const grants = await sc.acquire(w, 101);
    for (const g of grants.slice(0, 100)) await sc.complete(w, g);
    const map = tileMap(job, 400); // 100x100 does not fit 400 cells: blocks of 5x5 give 20x20
    expect(map).toMatchObject({ gridRows: 20, gridCols: 20, blockSize: 5, planRows: 100, planCols: 100 });
    expect(map.counts).toEqual({ done: 100, leased: 1, retried: 0, pending: 9_899 });
    // The first block row holds 1 done row of 5: partly done; the leased tile sits in block (0, 0).
    expect(map.cells.slice(0, 3)).toBe("lhh");
    expect(map.cells.slice(20)).toBe("p".repeat(380));
    expect(tileMap(job, 100_000).blockSize).toBe(1);
  });

  it("handles plans whose sides do not divide by the block", async () => {
    const sc = await scenario();
    const jobId = await sc.submit(7, 1, 3, 1); // 7 x 3 tiles
    const job = sc.h.job(jobId);
    if (!job) throw new Error("no job");
    const map = tileMap(job, 16);
    expect(map.blockSize).toBe(2);
    expect(map.gridRows * map.gridCols).toBe(8);
    expect(map.cells).toHaveLength(8);
  });
});
