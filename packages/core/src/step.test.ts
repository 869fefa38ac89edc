import { describe, expect, it } from "vitest";
import { applyRecord, createDurableModel, fromSnapshot, restoreCoreState, toSnapshot } from "./durable.js";
import { asJobId, asWorkerId } from "./ids.js";
import { checkInvariants } from "./invariants.js";
import { planMatMul, tileBounds } from "./plan.js";
import { checkCompletion, jobOf, resultOf } from "./queries.js";
import { type CoreConfig, ShardStatus } from "./state.js";
import {
  BLOB_A,
  BLOB_B,
  blobOf,
  C1,
  C2,
  Driver,
  effectsOf,
  FOREIGN,
  matmulInput,
  REF_A,
  REF_B,
  unwrap,
} from "./testing/model.js";
import { viewJob } from "./views.js";

// One worker often takes a whole job here, to test ordering, epochs and retries; the
// spreading of a job over workers has its own tests.
const CFG: Partial<CoreConfig> = {
  spreadShards: false,
  leaseTtlMs: 1_000,
  maxAttempts: 3,
  retryBaseMs: 100,
  retryMaxMs: 1_000,
  workerTtlMs: 5_000,
};

/** 4×6 result with 2×4 tiles: 2 row tiles × 2 col tiles = 4 shards. */
const FOUR = matmulInput(4, 3, 6, { tileRows: 2, tileCols: 4 });
/** A single-shard job. */
const ONE = matmulInput(2, 2, 2);

function setup(spec = FOUR, config: Partial<CoreConfig> = CFG) {
  const d = new Driver(config);
  unwrap(d.register("w1").outcome);
  unwrap(d.register("w2").outcome);
  const jobId = d.submitOk(spec);
  return { d, jobId };
}

function expectInvariants(d: Driver): void {
  expect(checkInvariants(d.state)).toEqual([]);
}

const job0Client = (d: Driver) => [...d.state.jobs.values()][0]?.clientId;

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

describe("fencing", () => {
  it("every grant gets a strictly larger epoch, re-grants included", () => {
    const { d } = setup(matmulInput(3, 1, 3, { tileRows: 1, tileCols: 1 }));
    const epochs: number[] = [];
    const first = d.grants("w1", 3);
    epochs.push(...first.map((g) => g.lease.epoch));
    for (const g of first) unwrap(d.fail("w1", g.lease, { release: true }).outcome);
    epochs.push(...d.grants("w2", 9).map((g) => g.lease.epoch));
    expect(epochs).toHaveLength(12); // 3 released, then all 9 shards
    for (let i = 1; i < epochs.length; i++) expect(epochs[i]).toBeGreaterThan(epochs[i - 1] as number);
    expect(d.state.nextEpoch).toBe((epochs.at(-1) as number) + 1);
  });

  it("an expired lease is lost; once re-granted the old holder's completion is stale", () => {
    const { d, jobId } = setup(ONE);
    const [old] = d.grants("w1", 1);
    if (!old) throw new Error("no grant");
    d.advance(999);
    expect(d.tick().outcome).toEqual({ ok: true, value: { expired: 0 } });
    d.advance(1); // exactly at expiresAtMs
    const t = d.tick();
    expect(t.outcome).toEqual({ ok: true, value: { expired: 1 } });
    expect(effectsOf(t.effects, "log")[0]).toMatchObject({
      level: "warn",
      msg: "lease expired",
      fields: { jobId, shard: 0, epoch: old.lease.epoch, workerId: "w1" },
    });
    expect(d.state.leases.size).toBe(0);
    expect(d.state.workers.get(asWorkerId("w1"))?.leases.size).toBe(0);
    expectInvariants(d);

    expect(d.complete("w1", old.lease).outcome).toEqual({
      ok: false,
      error: { kind: "lease-lost", jobId, shardIndex: 0, epoch: old.lease.epoch },
    });

    d.advance(1_000); // past any backoff
    const [next] = d.grants("w2", 1);
    if (!next) throw new Error("no re-grant");
    expect(next.lease.shardIndex).toBe(0);
    expect(next.lease.epoch).toBeGreaterThan(old.lease.epoch);
    expect(next.attempt).toBe(1); // a death is not a failed attempt (poison.ts)
    const stale = d.complete("w1", old.lease);
    expect(stale).toEqual({
      outcome: {
        ok: false,
        error: { kind: "stale-fence", jobId, shardIndex: 0, epoch: old.lease.epoch, currentEpoch: next.lease.epoch },
      },
      effects: [],
    });
    expect(d.fail("w1", old.lease).outcome).toMatchObject({ ok: false, error: { kind: "stale-fence" } });
    expect(d.job(jobId).shardStatus[0]).toBe(ShardStatus.leased);
    const good = d.complete("w2", next.lease);
    expect(good.outcome.ok).toBe(true);
    expect(effectsOf(good.effects, "write-tile")).toHaveLength(1);
    // after the new holder's win, the old epoch is still stale
    expect(d.complete("w1", old.lease).outcome).toEqual({
      ok: false,
      error: { kind: "stale-fence", jobId, shardIndex: 0, epoch: old.lease.epoch, currentEpoch: next.lease.epoch },
    });
    expectInvariants(d);
  });

  it("a duplicate completion of the same lease → already-completed, without effects", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    expect(d.complete("w1", g.lease).outcome.ok).toBe(true);
    const dup = d.complete("w1", g.lease);
    expect(dup).toEqual({
      outcome: { ok: false, error: { kind: "already-completed", jobId, shardIndex: 0, epoch: g.lease.epoch } },
      effects: [],
    });
    expect(d.job(jobId).doneCount).toBe(1);
    expect(d.fail("w1", g.lease).outcome).toMatchObject({ ok: false, error: { kind: "already-completed" } });
  });

  it("a completion from another worker → not-lease-holder, and the holder can still complete", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    const r = d.complete("w2", g.lease);
    expect(r).toEqual({
      outcome: { ok: false, error: { kind: "not-lease-holder", jobId, shardIndex: 0, epoch: g.lease.epoch, workerId: "w2" } },
      effects: [],
    });
    expect(d.fail("w2", g.lease).outcome).toMatchObject({ ok: false, error: { kind: "not-lease-holder" } });
    expect(d.state.leases.get(g.lease.epoch)?.workerId).toBe("w1");
    expect(d.complete("w1", g.lease).outcome.ok).toBe(true);
  });

  it("a wrong result size → invalid-result, and the lease stays valid", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    const need = 2 * 4 * 8;
    for (const size of [0, need - 8, need + 8]) {
      const r = d.complete("w1", g.lease, size);
      expect(r).toEqual({
        outcome: {
          ok: false,
          error: { kind: "invalid-result", jobId, shardIndex: 0, message: `result is ${size} bytes; the tile needs ${need}` },
        },
        effects: [],
      });
    }
    expect(d.state.leases.has(g.lease.epoch)).toBe(true);
    expect(d.job(jobId).shardStatus[0]).toBe(ShardStatus.leased);
    expect(unwrap(d.heartbeat("w1", [g.lease]).outcome)[0]?.state).toBe("active");
    expect(d.complete("w1", g.lease, need).outcome.ok).toBe(true);
  });

  it("reports about unknown jobs or out-of-range shards → job-not-found", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    for (const lease of [
      { ...g.lease, jobId: asJobId("ghost") },
      { ...g.lease, shardIndex: 4 },
      { ...g.lease, shardIndex: -1 },
      { ...g.lease, shardIndex: 0.5 },
    ]) {
      expect(d.complete("w1", lease, 8).outcome).toEqual({ ok: false, error: { kind: "job-not-found", jobId: lease.jobId } });
    }
    expect(d.job(jobId).doneCount).toBe(0);
  });

  it("a future (never granted) epoch is not accepted", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    expect(d.complete("w1", { ...g.lease, epoch: g.lease.epoch + 100 }).outcome).toEqual({
      ok: false,
      error: { kind: "lease-lost", jobId, shardIndex: 0, epoch: g.lease.epoch + 100 },
    });
    expect(d.complete("w1", { jobId, shardIndex: 1, epoch: 1 }).outcome).toMatchObject({
      ok: false,
      error: { kind: "lease-lost" },
    });
  });
});

describe("heartbeat", () => {
  it("renews: a lease heart-beaten before expiry survives a tick past its original expiry", () => {
    const { d } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(900);
    const hb = d.heartbeat("w1", [g.lease]);
    expect(hb).toEqual({ outcome: { ok: true, value: [{ lease: g.lease, state: "active", ttlMs: 1_000 }] }, effects: [] });
    expect(d.state.leases.get(g.lease.epoch)?.expiresAtMs).toBe(d.nowMs + 1_000);
    d.advance(200); // 1100 ms after the grant
    expect(d.tick().outcome).toEqual({ ok: true, value: { expired: 0 } });
    expect(d.complete("w1", g.lease).outcome.ok).toBe(true);
  });

  it("without a heartbeat the same tick expires it", () => {
    const { d } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(1_100);
    expect(d.tick().outcome).toEqual({ ok: true, value: { expired: 1 } });
  });

  it("reports cancelled after the job is cancelled", () => {
    const { d, jobId } = setup();
    const gs = d.grants("w1", 2);
    unwrap(d.cancel(jobId).outcome);
    const checks = unwrap(
      d.heartbeat(
        "w1",
        gs.map((g) => g.lease),
      ).outcome,
    );
    expect(checks).toEqual(gs.map((g) => ({ lease: g.lease, state: "cancelled", ttlMs: 0 })));
  });

  it("reports lost after expiry, and after a re-grant", () => {
    const { d } = setup(ONE);
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(1_000);
    d.tick();
    expect(unwrap(d.heartbeat("w1", [g.lease]).outcome)).toEqual([{ lease: g.lease, state: "lost", ttlMs: 0 }]);
    d.advance(1_000);
    const [again] = d.grants("w2", 1);
    if (!again) throw new Error("no re-grant");
    expect(unwrap(d.heartbeat("w1", [g.lease]).outcome)).toEqual([{ lease: g.lease, state: "lost", ttlMs: 0 }]);
    // the stale heartbeat must not renew the new holder's lease
    expect(d.state.leases.get(again.lease.epoch)?.expiresAtMs).toBe(d.nowMs + 1_000);
    expect(d.state.leases.get(g.lease.epoch)).toBeUndefined();
  });

  it("reports cancelled when another epoch already completed the shard, or this one did", () => {
    const { d } = setup(ONE);
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(1_000);
    d.tick();
    d.advance(1_000);
    const [again] = d.grants("w2", 1);
    if (!again) throw new Error("no re-grant");
    unwrap(d.complete("w2", again.lease).outcome);
    expect(unwrap(d.heartbeat("w1", [g.lease]).outcome)).toEqual([{ lease: g.lease, state: "cancelled", ttlMs: 0 }]);
    expect(unwrap(d.heartbeat("w2", [again.lease]).outcome)).toEqual([{ lease: again.lease, state: "cancelled", ttlMs: 0 }]);
  });

  it("reports lost for another worker's lease and does not renew it", () => {
    const { d } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(500);
    expect(unwrap(d.heartbeat("w2", [g.lease]).outcome)).toEqual([{ lease: g.lease, state: "lost", ttlMs: 0 }]);
    expect(d.state.leases.get(g.lease.epoch)?.expiresAtMs).toBe(d.nowMs - 500 + 1_000);
  });

  it("answers per lease, in order, for a mixed batch", () => {
    const { d, jobId } = setup();
    const [a, b, c] = d.grants("w1", 3);
    if (!a || !b || !c) throw new Error("no grants");
    unwrap(d.complete("w1", b.lease).outcome);
    unwrap(d.fail("w1", c.lease, { release: true }).outcome);
    const checks = unwrap(
      d.heartbeat("w1", [
        a.lease,
        b.lease,
        c.lease,
        { jobId: asJobId("x"), shardIndex: 0, epoch: 1 },
        { jobId, shardIndex: 9, epoch: 1 },
      ]).outcome,
    );
    expect(checks.map((x) => x.state)).toEqual(["active", "cancelled", "lost", "lost", "lost"]);
  });
});

describe("retries", () => {
  it("a failure re-queues the shard with backoff: not grantable before shardNotBeforeMs, grantable after", () => {
    const { d, jobId } = setup(ONE);
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    const r = d.fail("w1", g.lease, { error: "oom", jitter: 0 });
    expect(r.outcome).toEqual({ ok: true, value: { jobFailed: false } });
    expect(r.effects).toEqual([
      { type: "log", level: "warn", msg: "shard failed", fields: { jobId, shard: 0, epoch: g.lease.epoch, error: "oom" } },
      { type: "job-changed", jobId },
      { type: "shards-available" },
    ]);
    const job = d.job(jobId);
    // attempt 1: retryBaseMs · 2^0 · (0.5 + 0) = 50
    expect(job.shardNotBeforeMs[0]).toBe(d.nowMs + 50);
    expect(job.shardLastError.get(0)).toBe("oom");
    expect(job.retriedCount).toBe(1);
    expect(job.shardStatus[0]).toBe(ShardStatus.pending);
    expect(d.state.leases.size).toBe(0);
    expectInvariants(d);
    d.advance(49);
    expect(d.grants("w2", 1)).toEqual([]);
    d.advance(1);
    const [again] = d.grants("w2", 1);
    expect(again?.lease.shardIndex).toBe(0);
    expect(again?.attempt).toBe(2);
  });

  it("backoff doubles per attempt, scales with jitter in [0.5, 1.5) and is capped by retryMaxMs", () => {
    const d = new Driver({ ...CFG, maxAttempts: 10, retryBaseMs: 100, retryMaxMs: 300 });
    d.register("w1");
    const jobId = d.submitOk(ONE);
    const job = d.job(jobId);
    const waits: number[] = [];
    const jitters = [0, 0.99, 0, 0.5];
    for (const jitter of jitters) {
      const [g] = d.grants("w1", 1);
      if (!g) throw new Error("no grant");
      d.fail("w1", g.lease, { jitter });
      waits.push((job.shardNotBeforeMs[0] as number) - d.nowMs);
      d.advance(10_000);
    }
    // 100·1·0.5, floor(100·2·1.49), min(300, 400)·0.5, min(300, 800)·1.0
    expect(waits).toEqual([50, 298, 150, 300]);
  });

  it("after maxAttempts failures the job fails naming the shard and the last error", () => {
    const { d, jobId } = setup();
    const errors = ["e1", "e2", "kaboom"];
    let last: ReturnType<Driver["fail"]> | undefined;
    for (const error of errors) {
      const gs = d.grants("w1", 1);
      const g = gs[0];
      if (!g) throw new Error("no grant");
      expect(g.lease.shardIndex).toBe(0);
      last = d.fail("w1", g.lease, { error });
      d.advance(10_000);
    }
    expect(last?.outcome).toEqual({ ok: true, value: { jobFailed: true } });
    const job = d.job(jobId);
    expect(job.state).toBe("failed");
    expect(job.error).toBe("shard 0 failed 3 times (maxAttempts=3); last error: kaboom");
    expect(effectsOf(last?.effects ?? [], "discard-result")).toEqual([{ type: "discard-result", jobId }]);
    expect(effectsOf(last?.effects ?? [], "log").at(-1)).toMatchObject({ level: "error", msg: "job failed" });
    expect(d.state.activeJobs).toEqual([]);
    expect(d.grants("w2", 10)).toEqual([]);
  });

  it("a job that fails frees the other shards' leases", () => {
    const { d, jobId } = setup(FOUR, { ...CFG, maxAttempts: 1 });
    const [a, b] = d.grants("w1", 2);
    if (!a || !b) throw new Error("no grants");
    expect(d.fail("w1", a.lease).outcome).toEqual({ ok: true, value: { jobFailed: true } });
    expect(d.state.leases.size).toBe(0);
    expect(d.state.workers.get(asWorkerId("w1"))?.leases.size).toBe(0);
    expect(d.job(jobId).leasedCount).toBe(0);
    expect(d.complete("w1", b.lease).outcome).toEqual({
      ok: false,
      error: { kind: "lease-revoked", jobId, shardIndex: 1, epoch: b.lease.epoch, message: "job is failed" },
    });
  });

  it("lease expiries do not count as attempts (deaths have their own rule, shard-deaths.test.ts)", () => {
    const { d, jobId } = setup(ONE);
    for (let i = 0; i < 6; i++) {
      const [g] = d.grants(i % 2 ? "w1" : "w2", 1);
      if (!g) throw new Error(`no grant ${i}`);
      expect(g.attempt).toBe(1);
      d.advance(1_000);
      d.tick();
      d.advance(500); // past the backoff
    }
    expect(d.job(jobId).state).toBe("running");
    expect(d.job(jobId).shardDeaths.get(0)?.deaths).toBe(6);
  });

  it("release: true does not count an attempt and is grantable at once", () => {
    const { d, jobId } = setup(ONE);
    for (let i = 0; i < 6; i++) {
      const [g] = d.grants(i % 2 ? "w1" : "w2", 1);
      if (!g) throw new Error(`no grant ${i}`);
      expect(g.attempt).toBe(1);
      const r = d.fail(i % 2 ? "w1" : "w2", g.lease, { release: true, error: "shutting down" });
      expect(r.outcome).toEqual({ ok: true, value: { jobFailed: false } });
      expect(effectsOf(r.effects, "log")).toEqual([]);
    }
    const job = d.job(jobId);
    expect(job.state).toBe("running");
    expect(job.shardAttempts[0]).toBe(0);
    expect(job.retriedCount).toBe(0);
    expect(job.shardLastError.size).toBe(0);
    const [g] = d.grants("w1", 1);
    expect(g?.attempt).toBe(1);
  });

  it("a retried shard whose backoff passed is granted before fresh shards", () => {
    const { d } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.fail("w1", g.lease);
    expect(d.grants("w2", 1).map((x) => x.lease.shardIndex)).toEqual([1]); // 0 still backing off
    d.advance(1_000);
    expect(d.grants("w2", 2).map((x) => x.lease.shardIndex)).toEqual([0, 2]);
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

describe("kernel pinning", () => {
  it("an auto job pins the first grantee's kernel + fingerprint; other fingerprints get none of it", () => {
    const d = new Driver(CFG);
    d.register("wa", [REF_A]);
    d.register("wb", [REF_B]);
    d.register("wa2", [FOREIGN, REF_A]);
    const jobId = d.submitOk(FOUR);
    const job = d.job(jobId);
    expect([job.kernel, job.fingerprint]).toEqual(["auto", ""]);
    const [g] = d.grants("wa", 1);
    expect(g?.kernel).toBe("reference");
    expect([job.kernel, job.fingerprint]).toEqual(["reference", "fp-a"]);
    expect(d.grants("wb", 10)).toEqual([]);
    // a worker listing an unknown kernel first still matches through its known one
    expect(d.grants("wa2", 1).map((x) => [x.kernel, x.lease.shardIndex])).toEqual([["reference", 1]]);
    // a second job is independent: wb can pin it to fp-b
    const other = d.submitOk(FOUR);
    expect(d.grants("wb", 1).map((x) => x.lease.jobId)).toEqual([other]);
    expect(d.job(other).fingerprint).toBe("fp-b");
    expect(d.grants("wa", 10).every((x) => x.lease.jobId === jobId)).toBe(true);
  });

  it("auto takes the first kernel the engine knows", () => {
    const d = new Driver(CFG);
    d.register("w", [FOREIGN, REF_B, REF_A]);
    const jobId = d.submitOk(ONE);
    expect(d.grants("w", 1)).toHaveLength(1);
    expect([d.job(jobId).kernel, d.job(jobId).fingerprint]).toEqual(["reference", "fp-b"]);
  });

  it("a worker without the named (or any known) kernel gets nothing", () => {
    const d = new Driver(CFG);
    d.register("foreign", [FOREIGN]);
    d.register("none", []);
    const named = d.submitOk(matmulInput(2, 2, 2, { kernel: "reference" }));
    d.submitOk(ONE);
    expect(d.grants("foreign", 10)).toEqual([]);
    expect(d.grants("none", 10)).toEqual([]);
    expect(d.job(named).state).toBe("queued");
    d.register("ref", [REF_B]);
    expect(d.grants("ref", 1).map((g) => g.lease.jobId)).toEqual([named]);
    expect(d.job(named).fingerprint).toBe("fp-b");
  });

  // worker.proto: "A job only ever mixes results from workers that share one fingerprint."
  // The shell passes KernelInfo.fingerprint through unchecked, and proto3 defaults it to "".
  it("a worker advertising an empty fingerprint cannot make a job mix builds", () => {
    const d = new Driver(CFG);
    const reg = d.register("anon", [{ name: "reference", fingerprint: "" }]);
    d.register("wb", [REF_B]);
    const jobId = d.submitOk(matmulInput(2, 1, 1, { tileRows: 1 })); // 2 shards
    if (!reg.outcome.ok) return; // refusing such a worker is a valid fix too
    const first = d.grants("anon", 1);
    expect(first).toHaveLength(1);
    // shard 0 runs on the "" build, so shard 1 must not go to the fp-b build
    expect(d.grants("wb", 1)).toEqual([]);
    expect(d.job(jobId).fingerprint).toBe("");
  });

  it("the pin survives retries: a re-queued shard only goes to the pinned build", () => {
    const d = new Driver(CFG);
    d.register("wa", [REF_A]);
    d.register("wb", [REF_B]);
    const jobId = d.submitOk(ONE);
    const [g] = d.grants("wa", 1);
    if (!g) throw new Error("no grant");
    d.fail("wa", g.lease, { release: true });
    expect(d.grants("wb", 1)).toEqual([]);
    expect(d.grants("wa", 1).map((x) => x.lease.jobId)).toEqual([jobId]);
  });
});

describe("draining", () => {
  it("after drain-started, shards-requested → draining; leased work can still finish", () => {
    const { d, jobId } = setup(ONE);
    d.submitOk(FOUR, { key: "k" });
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    expect(d.drain()).toEqual({ outcome: { ok: true, value: null }, effects: [] });
    expect(d.acquire("w2", 1)).toEqual({ outcome: { ok: false, error: { kind: "draining" } }, effects: [] });
    expect(d.submit(FOUR).outcome).toEqual({ ok: false, error: { kind: "draining" } });
    // an idempotent replay still answers
    expect(d.submit(FOUR, { key: "k" }).outcome).toMatchObject({ ok: true, value: { created: false } });
    expect(unwrap(d.heartbeat("w1", [g.lease]).outcome)[0]?.state).toBe("active");
    const r = d.complete("w1", g.lease);
    expect(effectsOf(r.effects, "finalize-result")).toEqual([{ type: "finalize-result", jobId }]);
  });
});

describe("workers", () => {
  it("unknown worker ids → worker-not-found for every worker request", () => {
    const { d, jobId } = setup();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    const ghost = "ghost";
    const nf = { ok: false, error: { kind: "worker-not-found", workerId: ghost } };
    expect(d.acquire(ghost, 1).outcome).toEqual(nf);
    expect(d.heartbeat(ghost, [g.lease]).outcome).toEqual(nf);
    expect(d.complete(ghost, g.lease).outcome).toEqual(nf);
    expect(d.fail(ghost, g.lease).outcome).toEqual(nf);
    expect(d.job(jobId).doneCount).toBe(0);
    expect(d.state.leases.get(g.lease.epoch)?.workerId).toBe("w1");
  });

  it("registering a used worker id is refused", () => {
    const d = new Driver(CFG);
    unwrap(d.register("w1").outcome);
    expect(d.register("w1").outcome).toEqual({
      ok: false,
      error: { kind: "invalid-spec", message: "worker id w1 is already in use" },
    });
  });

  it("ticked forgets silent workers with no leases after workerTtlMs", () => {
    const d = new Driver(CFG);
    d.register("idle");
    d.register("busy");
    d.register("chatty");
    d.submitOk(ONE);
    d.advance(4_000);
    d.heartbeat("chatty", []);
    d.advance(1_000); // idle: exactly workerTtlMs silent → kept
    expect(d.tick().effects.filter((f) => f.type === "log")).toEqual([]);
    d.advance(1);
    const t = d.tick();
    expect(effectsOf(t.effects, "log")).toEqual([
      { type: "log", level: "info", msg: "worker forgotten", fields: { workerId: "idle", name: "idle" } },
      { type: "log", level: "info", msg: "worker forgotten", fields: { workerId: "busy", name: "busy" } },
    ]);
    expect([...d.state.workers.keys()]).toEqual(["chatty"]);
    expect(d.acquire("idle", 1).outcome).toEqual({ ok: false, error: { kind: "worker-not-found", workerId: "idle" } });
    // a forgotten id may register again
    expect(d.register("idle").outcome.ok).toBe(true);
  });

  it("a silent worker that still holds a lease is not forgotten", () => {
    const d = new Driver({ ...CFG, leaseTtlMs: 60_000 });
    d.register("w");
    d.submitOk(ONE);
    const [g] = d.grants("w", 1);
    if (!g) throw new Error("no grant");
    d.advance(10_000);
    expect(d.tick().outcome).toEqual({ ok: true, value: { expired: 0 } });
    expect(d.state.workers.has(asWorkerId("w"))).toBe(true);
    expect(d.complete("w", g.lease).outcome.ok).toBe(true);
  });

  it("acquire refreshes lastSeen", () => {
    const d = new Driver(CFG);
    d.register("w");
    d.advance(4_000);
    d.acquire("w", 0);
    d.advance(4_000);
    d.tick();
    expect(d.state.workers.has(asWorkerId("w"))).toBe(true);
  });
});

describe("misc", () => {
  it("uses the configured blobs in specs and grants", () => {
    const { d } = setup();
    const [g] = d.grants("w1", 1);
    expect(g?.spec.a.blobId).toBe(BLOB_A);
    expect(g?.spec.b.blobId).toBe(BLOB_B);
  });
});

describe("verified results: rejection, requeue and quarantine", () => {
  /** w1 and w2 registered as identities "alice" and "bob"; a 4-shard job. */
  function pair(config: Partial<CoreConfig> = CFG) {
    const d = new Driver(config);
    unwrap(d.register("w1", [REF_A], "alice").outcome);
    unwrap(d.register("w2", [REF_A], "bob").outcome);
    const jobId = d.submitOk(FOUR);
    return { d, jobId };
  }

  it("a rejected result ends the lease and re-queues the shard at once, for another identity", () => {
    const { d, jobId } = pair();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    const r = d.reject("w1", g.lease);
    expect(r.outcome).toEqual({
      ok: true,
      value: { leaseEnded: true, requeued: true, quarantined: false, identityQuarantined: false },
    });
    expect(effectsOf(r.effects, "log")[0]).toMatchObject({ level: "warn", msg: "shard result rejected" });
    expect(effectsOf(r.effects, "persist")).toEqual([]);
    expect(d.state.leases.has(g.lease.epoch)).toBe(false);
    expect(d.state.identities.get("alice")?.rejectedResults).toBe(1);
    expectInvariants(d);
    // alice is not offered the shard again while bob can take it: she gets fresh shards instead.
    const again = d.grants("w1", 4).map((x) => x.lease.shardIndex);
    expect(again).not.toContain(g.lease.shardIndex);
    // bob gets it at once (no retry backoff), with a higher epoch.
    const [b] = d.grants("w2", 1);
    expect(b?.lease.shardIndex).toBe(g.lease.shardIndex);
    expect(b?.lease.epoch).toBeGreaterThan(g.lease.epoch);
    expect(b?.attempt).toBe(2);
    if (!b) throw new Error("no grant");
    expect(d.complete("w2", b.lease).outcome.ok).toBe(true);
    expect(d.job(jobId).shardAvoid.size).toBe(0);
    expectInvariants(d);
  });

  it("the same identity under a new registration is still avoided, and still charged", () => {
    const { d } = pair();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.reject("w1", g.lease);
    unwrap(d.register("w1-again", [REF_A], "alice").outcome);
    expect(d.grants("w1-again", 4).map((x) => x.lease.shardIndex)).not.toContain(g.lease.shardIndex);
  });

  it("with no other identity able to run the job, the shard goes back to the one that failed it", () => {
    const d = new Driver(CFG);
    unwrap(d.register("w1", [REF_A], "alice").outcome);
    unwrap(d.register("w2", [REF_B], "bob").outcome); // another build: cannot take a job pinned to fp-a
    d.submitOk(ONE);
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.reject("w1", g.lease);
    expect(d.grants("w2", 1)).toEqual([]);
    expect(d.grants("w1", 1)[0]?.lease.shardIndex).toBe(0);
  });

  it("after quarantineAfterRejections rejections the worker is quarantined: logged at error, no more work", () => {
    const { d } = pair({ ...CFG, quarantineAfterRejections: 2, maxAttempts: 5 });
    const [g1, g2, g3] = d.grants("w1", 3);
    if (!g1 || !g2 || !g3) throw new Error("no grants");
    expect(d.reject("w1", g1.lease).outcome).toEqual({
      ok: true,
      value: { leaseEnded: true, requeued: true, quarantined: false, identityQuarantined: false },
    });
    d.advance(10);
    const r = d.reject("w1", g2.lease);
    expect(r.outcome).toEqual({
      ok: true,
      value: { leaseEnded: true, requeued: true, quarantined: true, identityQuarantined: false },
    });
    // One process's results are no evidence about its identity: nothing durable (quarantine.test.ts has the identity rule).
    expect(effectsOf(r.effects, "persist")).toEqual([]);
    expect(effectsOf(r.effects, "log").find((l) => l.msg === "worker quarantined")).toMatchObject({
      level: "error",
      fields: { workerId: "w1", identity: "alice", scope: "worker", rejectedResults: 2 },
    });
    // Its third lease was taken back at once, without charging an attempt.
    expect(d.state.leases.has(g3.lease.epoch)).toBe(false);
    expect(d.job(g3.lease.jobId).shardAttempts[g3.lease.shardIndex]).toBe(0);
    expectInvariants(d);
    expect(d.acquire("w1", 1).outcome).toEqual({
      ok: false,
      error: { kind: "worker-quarantined", identity: "alice", rejectedResults: 2, workerId: "w1" },
    });
    // Its late report about the revoked lease is stale; bob finishes everything.
    expect(d.complete("w1", g3.lease).outcome).toMatchObject({ ok: false, error: { kind: "lease-lost" } });
    for (const g of d.grants("w2", 4)) expect(d.complete("w2", g.lease).outcome.ok).toBe(true);
    expect(d.job(g1.lease.jobId).finalizing).toBe(true);
    expectInvariants(d);
  });

  it("quarantineAfterRejections = 0 never quarantines", () => {
    const { d } = pair({ ...CFG, quarantineAfterRejections: 0, maxAttempts: 10 });
    for (let i = 0; i < 4; i++) {
      const [g] = d.grants("w1", 1);
      if (!g) throw new Error("no grant");
      expect(d.reject("w1", g.lease).outcome).toEqual({
        ok: true,
        value: { leaseEnded: true, requeued: true, quarantined: false, identityQuarantined: false },
      });
    }
    expect(d.state.identities.get("alice")).toMatchObject({ rejectedResults: 4, quarantinedAtMs: 0 });
    // Every shard now waits for bob; alice still may ask (she is not quarantined) but gets none of them.
    expect(d.grants("w1", 4)).toEqual([]);
  });

  it("a wrong result for a lease that is no longer live is still charged, and changes nothing else", () => {
    const { d, jobId } = pair();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    d.advance(CFG.leaseTtlMs ?? 0);
    d.tick();
    const before = d.job(jobId).version;
    expect(d.reject("w1", g.lease).outcome).toEqual({
      ok: true,
      value: { leaseEnded: false, requeued: false, quarantined: false, identityQuarantined: false },
    });
    expect(d.job(jobId).version).toBe(before);
    expect(d.state.identities.get("alice")?.rejectedResults).toBe(1);
    expect(d.reject("ghost", g.lease).outcome).toEqual({ ok: false, error: { kind: "worker-not-found", workerId: "ghost" } });
  });

  it("a rejected straggler result leaves its twin running", () => {
    const d = new Driver({ ...CFG, leaseTtlMs: 60_000, stragglerMinDoneFraction: 0.5 });
    unwrap(d.register("w1", [REF_A], "alice").outcome);
    unwrap(d.register("w2", [REF_A], "bob").outcome);
    d.submitOk(matmulInput(2, 1, 2, { tileRows: 1, tileCols: 2 })); // 2 shards
    const [slow] = d.grants("w1", 1);
    const [fast] = d.grants("w2", 1);
    if (!slow || !fast) throw new Error("no grants");
    d.advance(10);
    d.complete("w2", fast.lease);
    d.advance(1_000);
    d.tick();
    const [backup] = d.grants("w2", 1);
    expect(backup?.lease.shardIndex).toBe(slow.lease.shardIndex);
    if (!backup) throw new Error("no backup");
    expect(d.reject("w1", slow.lease).outcome).toEqual({
      ok: true,
      value: { leaseEnded: true, requeued: false, quarantined: false, identityQuarantined: false },
    });
    expectInvariants(d);
    expect(d.complete("w2", backup.lease).outcome.ok).toBe(true);
  });

  it("a shard whose results keep being rejected fails its job after maxAttempts", () => {
    const d = new Driver({ ...CFG, quarantineAfterRejections: 0 });
    unwrap(d.register("w1", [REF_A], "alice").outcome);
    const jobId = d.submitOk(ONE);
    for (let i = 0; i < 3; i++) {
      const [g] = d.grants("w1", 1);
      if (!g) throw new Error("no grant");
      d.reject("w1", g.lease, "bad");
    }
    expect(d.job(jobId).state).toBe("failed");
    expect(d.job(jobId).error).toContain("result rejected: bad");
  });

  it("checkCompletion answers like shard-completed without changing anything", () => {
    const { d } = pair();
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    const versionBefore = d.job(g.lease.jobId).version;
    expect(checkCompletion(d.state, asWorkerId("w1"), g.lease, d.nowMs)).toMatchObject({ ok: true });
    expect(checkCompletion(d.state, asWorkerId("w2"), g.lease, d.nowMs)).toMatchObject({
      ok: false,
      error: { kind: "not-lease-holder" },
    });
    expect(checkCompletion(d.state, asWorkerId("nobody"), g.lease, d.nowMs)).toMatchObject({
      ok: false,
      error: { kind: "worker-not-found" },
    });
    expect(d.job(g.lease.jobId).version).toBe(versionBefore);
  });

  it("an identity quarantine survives a restart through the durable model; counts below the limit do not", () => {
    const { d } = pair({ ...CFG, quarantineAfterRejections: 1 });
    unwrap(d.register("w3", [REF_A], "bob").outcome);
    const [g2] = d.grants("w2", 1);
    const [g3] = d.grants("w3", 1);
    if (!g2 || !g3) throw new Error("no grant");
    const model = createDurableModel();
    // Two workers of bob each return a wrong result: the second one quarantines the identity.
    for (const r of [d.reject("w2", g2.lease), d.reject("w3", g3.lease)]) {
      for (const fx of effectsOf(r.effects, "persist")) applyRecord(model, fx.record);
    }
    const snap = JSON.parse(JSON.stringify(toSnapshot(model)));
    const restored = restoreCoreState(CFG, fromSnapshot(snap)).state;
    expect(restored.identities.get("bob")).toMatchObject({ rejectedResults: 2 });
    expect(restored.identities.get("bob")?.quarantinedAtMs).toBeGreaterThan(0);
    expect(restored.identities.has("alice")).toBe(false);
    // A snapshot from before quarantines existed still loads.
    const { quarantined: _, ...old } = snap;
    expect(fromSnapshot(old).quarantined.size).toBe(0);
  });
});

describe("spreading a job over workers (spreadShards)", () => {
  const SPREAD: Partial<CoreConfig> = { ...CFG, spreadShards: true };
  /** 3×3 tiles of a 9×9 result: 9 shards. */
  const NINE = matmulInput(9, 2, 9, { tileRows: 3, tileCols: 3 });

  it("a worker asking for every shard of a small job gets its share; the next worker gets the rest", () => {
    const { d, jobId } = setup(NINE, SPREAD);
    expect(d.grants("w1", 100).map((g) => g.lease.shardIndex)).toEqual([0, 1, 2, 3, 4]); // ceil(9 / 2)
    expect(d.grants("w2", 100).map((g) => g.lease.shardIndex)).toEqual([5, 6, 7, 8]); // its share, all that is left
    expect(d.job(jobId).leasedCount).toBe(9);
    expectInvariants(d);
  });

  it("a worker alone takes everything it asks for, and the share is never below its threads", () => {
    const d = new Driver(SPREAD);
    unwrap(d.register("w1").outcome);
    const jobId = d.submitOk(NINE);
    expect(d.grants("w1", 100)).toHaveLength(9);
    expect(d.job(jobId).leasedCount).toBe(9);
  });

  it("workers that cannot run the job (other kernel) or are quarantined do not count", () => {
    const d = new Driver(SPREAD);
    unwrap(d.register("w1").outcome);
    unwrap(d.register("w2", [FOREIGN]).outcome);
    d.submitOk(NINE);
    expect(d.grants("w1", 100)).toHaveLength(9);
  });

  it("a large job is not held back: a request for fewer than the share gets all it asks", () => {
    const { d } = setup(matmulInput(64, 2, 64, { tileRows: 4, tileCols: 4 }), SPREAD); // 256 shards
    expect(d.grants("w1", 100)).toHaveLength(100);
    expect(d.grants("w2", 100)).toHaveLength(100); // its share is 128
    expect(d.grants("w1", 100)).toHaveLength(28); // 128 − 100 held
    expect(d.grants("w2", 100)).toHaveLength(28);
    expectInvariants(d);
  });
});
