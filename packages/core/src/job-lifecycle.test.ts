import { describe, expect, it } from "vitest";
import { asJobId, asWorkerId } from "./ids.js";
import { planMatMul, tileBounds } from "./plan.js";
import { jobOf, resultOf } from "./queries.js";
import { blobOf, C1, C2, Driver, effectsOf, matmulInput, unwrap } from "./testing/model.js";
import { CFG, expectInvariants, FOUR, job0Client, ONE, setup } from "./testing/step-fixtures.js";
import { viewJob } from "./views.js";

describe("job lifecycle", () => {
  it("submit → queued, with prepare-result / job-changed / shards-available effects", () => {
    const d = new Driver(CFG);
    const r = d.submit(FOUR, { jobId: asJobId("j1") });
    expect(r.outcome).toEqual({ ok: true, value: { jobId: "j1", created: true } });
    expect(r.effects).toEqual([
      {
        type: "persist",
        record: {
          type: "job-created",
          jobId: "j1",
          clientId: job0Client(d),
          idempotencyKey: "",
          spec: d.job(asJobId("j1")).spec,
          createdAtMs: 1_000,
          priority: 0,
          weight: 1,
        },
      },
      { type: "prepare-result", jobId: "j1", rows: 4, cols: 6 },
      { type: "job-changed", jobId: "j1" },
      { type: "shards-available" },
    ]);
    const job = d.job(asJobId("j1"));
    expect(job.state).toBe("queued");
    expect(job.createdAtMs).toBe(1_000);
    expect(job.startedAtMs).toBe(0);
    expect(job.plan.shardCount).toBe(4);
    expect(d.state.activeJobs).toEqual(["j1"]);
    expectInvariants(d);
  });

  it("rejects an invalid spec without creating a job", () => {
    const d = new Driver(CFG);
    const r = d.submit(matmulInput(0, 1, 1));
    expect(r.outcome.ok).toBe(false);
    expect(!r.outcome.ok && r.outcome.error.kind).toBe("invalid-spec");
    expect(r.effects).toEqual([]);
    expect(d.state.jobs.size).toBe(0);
  });

  it("runs queued → running → finalizing → succeeded, finalizing exactly once", () => {
    const { d, jobId } = setup();
    const job = d.job(jobId);
    d.advance(5);
    const g1 = d.grants("w1", 2);
    expect(job.state).toBe("running");
    expect(job.startedAtMs).toBe(1_005);
    expect(g1.map((g) => g.lease)).toEqual([
      { jobId, shardIndex: 0, epoch: 1 },
      { jobId, shardIndex: 1, epoch: 2 },
    ]);
    for (const g of g1) {
      expect(g.kernel).toBe("reference");
      expect(g.ttlMs).toBe(1_000);
      expect(g.attempt).toBe(1);
      expect(g.spec).toEqual(job.spec);
      expect(g.bounds).toEqual(tileBounds(job.plan, g.lease.shardIndex));
    }
    d.advance(5);
    const g2 = d.grants("w2", 10);
    expect(g2.map((g) => [g.lease.shardIndex, g.lease.epoch])).toEqual([
      [2, 3],
      [3, 4],
    ]);
    expect(job.startedAtMs).toBe(1_005); // not moved by later grants
    expect(d.grants("w1", 10)).toEqual([]);
    expectInvariants(d);

    const plan = planMatMul(job.spec);
    let finalizes = 0;
    const written: number[] = [];
    const order: [string, number][] = [
      ["w2", 3],
      ["w1", 0],
      ["w2", 2],
      ["w1", 1],
    ];
    for (const [w, shard] of order) {
      const g = [...g1, ...g2].find((x) => x.lease.shardIndex === shard);
      if (!g) throw new Error("no grant");
      d.advance(1);
      const r = d.complete(w, g.lease);
      expect(r.outcome).toEqual({ ok: true, value: { bounds: tileBounds(plan, shard) } });
      const writes = effectsOf(r.effects, "write-tile");
      expect(writes).toEqual([{ type: "write-tile", jobId, shardIndex: shard, bounds: tileBounds(plan, shard) }]);
      // The acceptance is made durable, after the tile write, naming the winning epoch.
      expect(effectsOf(r.effects, "persist")).toEqual([
        { type: "persist", record: { type: "shard-accepted", jobId, shardIndex: shard, epoch: g.lease.epoch } },
      ]);
      expect(r.effects.findIndex((x) => x.type === "persist")).toBeGreaterThan(
        r.effects.findIndex((x) => x.type === "write-tile"),
      );
      written.push(shard);
      finalizes += effectsOf(r.effects, "finalize-result").length;
      expect(finalizes).toBe(written.length === 4 ? 1 : 0);
      expectInvariants(d);
    }
    expect(job.doneCount).toBe(4);
    expect(job.finalizing).toBe(true);
    expect(job.state).toBe("running");
    expect(d.grants("w1", 10)).toEqual([]);
    expect(resultOf(d.state, C1, jobId)).toEqual({ ok: false, error: { kind: "result-not-ready", jobId, state: "running" } });

    d.advance(7);
    const fin = d.finalized(jobId, blobOf("c"));
    expect(fin.outcome).toEqual({ ok: true, value: null });
    expect(fin.effects).toEqual([
      { type: "persist", record: { type: "job-succeeded", jobId, resultBlobId: blobOf("c"), finishedAtMs: d.nowMs } },
      { type: "job-changed", jobId },
    ]);
    expect(job.state).toBe("succeeded");
    expect(job.finishedAtMs).toBe(d.nowMs);
    expect(job.finalizing).toBe(false);
    expect(job.resultBlobId).toBe(blobOf("c"));
    expect(d.state.activeJobs).toEqual([]);
    expect(unwrap(resultOf(d.state, C1, jobId)).blobId).toBe(blobOf("c"));
    expectInvariants(d);

    // A repeated reply changes nothing.
    const version = job.version;
    const again = d.finalized(jobId, blobOf("d"));
    expect(again).toEqual({ outcome: { ok: true, value: null }, effects: [] });
    expect(job.resultBlobId).toBe(blobOf("c"));
    expect(job.version).toBe(version);

    const view = viewJob(job);
    expect(view).toMatchObject({
      state: "succeeded",
      shardsTotal: 4,
      shardsDone: 4,
      shardsLeased: 0,
      shardsRetried: 0,
      rows: 4,
      cols: 6,
    });
  });

  it("logs 'job started' with the job id once, at the first grant", () => {
    const { d, jobId } = setup();
    const first = d.acquire("w1", 2);
    expect(effectsOf(first.effects, "log")).toEqual([
      { type: "log", level: "info", msg: "job started", fields: { jobId, kernel: "reference", workerId: "w1" } },
    ]);
    expect(effectsOf(d.acquire("w2", 2).effects, "log")).toEqual([]);
  });

  it("result-failed fails a finalizing job and discards its result", () => {
    const { d, jobId } = setup(ONE);
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    expect(effectsOf(d.complete("w1", g.lease).effects, "finalize-result")).toHaveLength(1);
    const r = d.resultFailed(jobId, "disk full");
    expect(r.outcome).toEqual({ ok: true, value: null });
    expect(effectsOf(r.effects, "discard-result")).toEqual([{ type: "discard-result", jobId }]);
    expect(d.job(jobId).state).toBe("failed");
    expect(d.job(jobId).error).toBe("result could not be stored: disk full");
    // and a late success reply does not resurrect it
    expect(d.finalized(jobId).effects).toEqual([]);
    expect(d.job(jobId).state).toBe("failed");
    expect(d.finalized(asJobId("nope")).outcome).toEqual({ ok: false, error: { kind: "job-not-found", jobId: "nope" } });
    expect(d.resultFailed(asJobId("nope")).outcome).toEqual({ ok: false, error: { kind: "job-not-found", jobId: "nope" } });
  });

  it("result-finalized for a job that is not finalizing is a no-op", () => {
    const { d, jobId } = setup();
    expect(d.finalized(jobId)).toEqual({ outcome: { ok: true, value: null }, effects: [] });
    expect(d.job(jobId).state).toBe("queued");
  });

  it("grants oldest jobs first and spreads a large request over jobs", () => {
    const { d, jobId } = setup(matmulInput(2, 1, 2, { tileRows: 1, tileCols: 2 }));
    const second = d.submitOk(matmulInput(2, 1, 2, { tileRows: 1, tileCols: 2 }));
    const gs = d.grants("w1", 10);
    expect(gs.map((g) => [g.lease.jobId, g.lease.shardIndex])).toEqual([
      [jobId, 0],
      [jobId, 1],
      [second, 0],
      [second, 1],
    ]);
    expect(gs.map((g) => g.lease.epoch)).toEqual([1, 2, 3, 4]);
  });

  it("maxShards ≤ 0 grants nothing and changes nothing", () => {
    const { d, jobId } = setup();
    expect(d.acquire("w1", 0)).toEqual({ outcome: { ok: true, value: [] }, effects: [] });
    expect(d.acquire("w1", -3)).toEqual({ outcome: { ok: true, value: [] }, effects: [] });
    expect(d.job(jobId).state).toBe("queued");
    expect(d.state.nextEpoch).toBe(1);
  });

  it("refuses submits over maxActiveJobs and a reused job id", () => {
    const d = new Driver({ ...CFG, maxActiveJobs: 1 });
    const j1 = d.submitOk(ONE, { jobId: asJobId("j1") });
    const r = d.submit(ONE, { jobId: asJobId("j2") });
    expect(r.outcome.ok).toBe(false);
    expect(!r.outcome.ok && r.outcome.error).toEqual({
      kind: "over-capacity",
      message: "1 jobs are queued or running, the limit maxActiveJobs=1; retry later",
    });
    unwrap(d.cancel(j1).outcome);
    expect(d.submit(ONE, { jobId: asJobId("j1") }).outcome).toEqual({
      ok: false,
      error: { kind: "invalid-spec", message: "job id j1 is already in use" },
    });
    expect(d.submitOk(ONE, { jobId: asJobId("j2") })).toBe("j2");
  });

  it("refuses a client over maxActiveJobsPerClient while other clients still submit", () => {
    const d = new Driver({ ...CFG, maxActiveJobsPerClient: 2 });
    const j1 = d.submitOk(ONE, { jobId: asJobId("j1") });
    d.submitOk(ONE, { jobId: asJobId("j2") });
    const r = d.submit(ONE, { jobId: asJobId("j3") });
    expect(r).toEqual({
      outcome: {
        ok: false,
        error: {
          kind: "over-capacity",
          message: "this client has 2 jobs queued or running, the limit maxActiveJobsPerClient=2; retry later",
        },
      },
      effects: [],
    });
    expect(d.submitOk(ONE, { clientId: C2, jobId: asJobId("k1") })).toBe("k1");
    // An ended job no longer counts.
    unwrap(d.cancel(j1).outcome);
    expect(d.submitOk(ONE, { jobId: asJobId("j3") })).toBe("j3");
  });
});

describe("idempotent submit", () => {
  it("same client + key + spec returns the same job without effects", () => {
    const d = new Driver(CFG);
    const first = d.submit(FOUR, { key: "k1", jobId: asJobId("j1") });
    expect(first.outcome).toEqual({ ok: true, value: { jobId: "j1", created: true } });
    const second = d.submit(FOUR, { key: "k1", jobId: asJobId("j2") });
    expect(second).toEqual({ outcome: { ok: true, value: { jobId: "j1", created: false } }, effects: [] });
    expect(d.state.jobs.size).toBe(1);
    // a spec that resolves identically (explicit tile = default, clamped) counts as the same
    const d2 = new Driver(CFG);
    d2.submitOk(matmulInput(10, 2, 10), { key: "k", jobId: asJobId("a") });
    expect(
      d2.submit(matmulInput(10, 2, 10, { tileRows: 256, tileCols: 999 }), { key: "k", jobId: asJobId("b") }).outcome,
    ).toEqual({
      ok: true,
      value: { jobId: "a", created: false },
    });
  });

  it("same key with a different spec → job-exists naming the existing job", () => {
    const d = new Driver(CFG);
    d.submitOk(FOUR, { key: "k1", jobId: asJobId("j1") });
    const r = d.submit(matmulInput(4, 3, 6, { tileRows: 1, tileCols: 4 }), { key: "k1", jobId: asJobId("j2") });
    expect(r.outcome).toEqual({
      ok: false,
      error: {
        kind: "job-exists",
        jobId: "j1",
        message: "idempotency key 'k1' was already used for job j1 with a different spec",
      },
    });
    expect(r.effects).toEqual([]);
    expect(d.state.jobs.size).toBe(1);
  });

  it("keys are scoped per client, and an empty key never dedupes", () => {
    const d = new Driver(CFG);
    d.submitOk(FOUR, { key: "k1", clientId: C1, jobId: asJobId("j1") });
    expect(d.submit(FOUR, { key: "k1", clientId: C2, jobId: asJobId("j2") }).outcome).toEqual({
      ok: true,
      value: { jobId: "j2", created: true },
    });
    expect(d.submit(FOUR, { key: "", jobId: asJobId("j3") }).outcome).toEqual({
      ok: true,
      value: { jobId: "j3", created: true },
    });
    expect(d.submit(FOUR, { key: "", jobId: asJobId("j4") }).outcome).toEqual({
      ok: true,
      value: { jobId: "j4", created: true },
    });
    expect(d.state.jobs.size).toBe(4);
  });

  it("a replay of a finished job's key still returns that job", () => {
    const d = new Driver(CFG);
    const j = d.submitOk(ONE, { key: "k" });
    unwrap(d.cancel(j).outcome);
    expect(d.submit(ONE, { key: "k", jobId: asJobId("fresh") }).outcome).toEqual({
      ok: true,
      value: { jobId: j, created: false },
    });
  });
});

describe("cancel", () => {
  it("frees leases and rejects later reports with lease-revoked", () => {
    const { d, jobId } = setup();
    const gs = d.grants("w1", 3);
    d.advance(3);
    const r = d.cancel(jobId, C1, "user said so");
    expect(r.outcome).toEqual({ ok: true, value: { jobId } });
    expect(r.effects).toEqual([
      { type: "persist", record: { type: "job-ended", jobId, state: "cancelled", error: "user said so", finishedAtMs: d.nowMs } },
      { type: "discard-result", jobId },
      { type: "job-changed", jobId },
      { type: "log", level: "info", msg: "job cancelled", fields: { jobId, reason: "user said so" } },
    ]);
    const job = d.job(jobId);
    expect(job.state).toBe("cancelled");
    expect(job.error).toBe("user said so");
    expect(job.finishedAtMs).toBe(d.nowMs);
    expect(job.leasedCount).toBe(0);
    expect(d.state.leases.size).toBe(0);
    expect(d.state.workers.get(asWorkerId("w1"))?.leases.size).toBe(0);
    expect(d.state.activeJobs).toEqual([]);
    for (const g of gs) {
      expect(d.complete("w1", g.lease).outcome).toEqual({
        ok: false,
        error: {
          kind: "lease-revoked",
          jobId,
          shardIndex: g.lease.shardIndex,
          epoch: g.lease.epoch,
          message: "job is cancelled",
        },
      });
      expect(d.fail("w1", g.lease).outcome).toMatchObject({ ok: false, error: { kind: "lease-revoked" } });
    }
    expect(d.grants("w2", 10)).toEqual([]);
    expect(d.tick().outcome).toEqual({ ok: true, value: { expired: 0 } });
  });

  // Cancelling (or failing) a job while it holds live leases must leave a consistent
  // state: checkInvariants is what the coordinator runs after every step.
  it("keeps checkInvariants clean when cancelling a job with live leases", () => {
    const { d, jobId } = setup();
    d.grants("w1", 2);
    unwrap(d.cancel(jobId).outcome);
    expectInvariants(d);
  });

  it("keeps checkInvariants clean when a job fails while other shards are leased", () => {
    const { d } = setup(FOUR, { ...CFG, maxAttempts: 1 });
    const [a] = d.grants("w1", 2);
    if (!a) throw new Error("no grant");
    d.fail("w1", a.lease);
    expectInvariants(d);
  });

  it("uses a default reason and truncates long ones", () => {
    const { d, jobId } = setup();
    unwrap(d.cancel(jobId).outcome);
    expect(d.job(jobId).error).toBe("cancelled by client");
    const other = d.submitOk(ONE);
    unwrap(d.cancel(other, C1, "r".repeat(5_000)).outcome);
    expect(d.job(other).error).toBe(`${"r".repeat(1023)}…`);
    // Cut by code point: a surrogate pair straddling the bound is dropped whole, never split.
    const third = d.submitOk(ONE);
    unwrap(d.cancel(third, C1, `${"r".repeat(1022)}\u{1f680}${"r".repeat(10)}`).outcome);
    expect(d.job(third).error).toBe(`${"r".repeat(1022)}\u{1f680}…`);
    const fourth = d.submitOk(ONE);
    unwrap(d.cancel(fourth, C1, `${"r".repeat(1023)}\u{1f680}${"r".repeat(10)}`).outcome);
    expect(d.job(fourth).error).toBe(`${"r".repeat(1023)}…`);
  });

  it("cancel twice is ok and changes nothing the second time", () => {
    const { d, jobId } = setup();
    unwrap(d.cancel(jobId).outcome);
    const job = d.job(jobId);
    const snapshot = { version: job.version, finishedAtMs: job.finishedAtMs, error: job.error };
    d.advance(50);
    expect(d.cancel(jobId, C1, "again")).toEqual({ outcome: { ok: true, value: { jobId } }, effects: [] });
    expect({ version: job.version, finishedAtMs: job.finishedAtMs, error: job.error }).toEqual(snapshot);
  });

  it("after succeeded → job-finished; after failed → job-finished", () => {
    const { d, jobId } = setup(ONE);
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.complete("w1", g.lease);
    d.finalized(jobId);
    expect(d.cancel(jobId)).toEqual({
      outcome: {
        ok: false,
        error: {
          kind: "job-finished",
          jobId,
          state: "succeeded",
          message: `job ${jobId} already succeeded; it cannot be cancelled`,
        },
      },
      effects: [],
    });
    expect(d.job(jobId).state).toBe("succeeded");

    const failed = d.submitOk(ONE);
    d.resultFailed(failed, "x");
    expect(d.cancel(failed).outcome).toMatchObject({ ok: false, error: { kind: "job-finished", state: "failed" } });
  });

  it("another client's job, or an unknown id → job-not-found", () => {
    const { d, jobId } = setup();
    expect(d.cancel(jobId, C2)).toEqual({ outcome: { ok: false, error: { kind: "job-not-found", jobId } }, effects: [] });
    expect(d.job(jobId).state).toBe("queued");
    expect(d.cancel(asJobId("nope")).outcome).toEqual({ ok: false, error: { kind: "job-not-found", jobId: "nope" } });
    expect(jobOf(d.state, C2, jobId)).toEqual({ ok: false, error: { kind: "job-not-found", jobId } });
    expect(resultOf(d.state, C2, jobId)).toEqual({ ok: false, error: { kind: "job-not-found", jobId } });
    expect(unwrap(jobOf(d.state, C1, jobId)).id).toBe(jobId);
  });

  it("cancel while finalizing wins; the late result-finalized reply is ignored", () => {
    const { d, jobId } = setup(ONE);
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    expect(effectsOf(d.complete("w1", g.lease).effects, "finalize-result")).toHaveLength(1);
    unwrap(d.cancel(jobId).outcome);
    expect(d.finalized(jobId)).toEqual({ outcome: { ok: true, value: null }, effects: [] });
    expect(d.job(jobId).state).toBe("cancelled");
    expect(d.job(jobId).resultBlobId).toBe("");
  });
});
