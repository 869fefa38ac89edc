import { describe, expect, it } from "vitest";
import { asWorkerId } from "./ids.js";
import { ShardStatus } from "./state.js";
import { Driver, effectsOf } from "./testing/model.js";
import { CFG, expectInvariants, FOUR, ONE, setup } from "./testing/step-fixtures.js";

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
    // 0 still backing off; w2 starts on its tile block (the second tile row)
    expect(d.grants("w2", 1).map((x) => x.lease.shardIndex)).toEqual([2]);
    d.advance(1_000);
    expect(d.grants("w2", 2).map((x) => x.lease.shardIndex)).toEqual([0, 3]);
  });
});
