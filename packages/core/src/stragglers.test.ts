import { describe, expect, it } from "vitest";
import { checkInvariants } from "./invariants.js";
import type { CoreConfig } from "./state.js";
import { Driver, effectsOf, matmulInput, unwrap } from "./testing/model.js";

const CFG: Partial<CoreConfig> = { spreadShards: false, leaseTtlMs: 60_000, maxAttempts: 3, retryBaseMs: 100, retryMaxMs: 1_000 };
/** 8 shards: 8×1 result with 1×1 tiles. */
const EIGHT = matmulInput(8, 2, 1, { tileRows: 1, tileCols: 1 });

describe("stragglers", () => {
  function slowLastShard() {
    const d = new Driver(CFG);
    unwrap(d.register("fast").outcome);
    unwrap(d.register("slow").outcome);
    unwrap(d.register("spare").outcome);
    const jobId = d.submitOk(EIGHT);
    const slow = d.grants("slow", 1)[0]!;
    const rest = d.grants("fast", 7);
    for (const g of rest) {
      d.advance(10);
      unwrap(d.complete("fast", g.lease).outcome);
    }
    return { d, jobId, slow };
  }

  it("leases a backup of a shard that runs past 1.5x the median once 75% is done; the first result wins", () => {
    const { d, jobId, slow } = slowLastShard();
    d.advance(500); // the slow shard has run ~570 ms; the median is ~40 ms
    d.tick();
    expect(d.grants("slow", 1)).toEqual([]); // never to the worker that already runs it
    const backup = d.grants("spare", 1);
    expect(backup).toHaveLength(1);
    expect(backup[0]!.lease.shardIndex).toBe(slow.lease.shardIndex);
    expect(backup[0]!.lease.epoch).toBeGreaterThan(slow.lease.epoch);
    expect(checkInvariants(d.state)).toEqual([]);
    // Both are live; the backup finishes first and wins.
    const win = d.complete("spare", backup[0]!.lease);
    expect(effectsOf(win.effects, "write-tile")).toHaveLength(1);
    expect(effectsOf(win.effects, "finalize-result")).toHaveLength(1);
    // The original learns it through its heartbeat and its late result is refused.
    expect(unwrap(d.heartbeat("slow", [slow.lease]).outcome)[0]!.state).toBe("cancelled");
    const late = d.complete("slow", slow.lease);
    expect(late.outcome).toMatchObject({ ok: false, error: { kind: "stale-fence" } });
    expect(checkInvariants(d.state)).toEqual([]);
    expect(d.job(jobId).doneCount).toBe(8);
  });

  it("when the original finishes first the backup is cancelled, and a failing twin does not re-queue the shard", () => {
    const { d, slow } = slowLastShard();
    d.advance(500);
    d.tick();
    const backup = d.grants("spare", 1)[0]!;
    // The backup fails: the original goes on alone, nothing is re-queued.
    unwrap(d.fail("spare", backup.lease, { error: "boom" }).outcome);
    expect(d.job(slow.lease.jobId).retryQueue).toEqual([]);
    expect(checkInvariants(d.state)).toEqual([]);
    unwrap(d.complete("slow", slow.lease).outcome);
    expect(unwrap(d.heartbeat("spare", [backup.lease]).outcome)[0]!.state).toBe("cancelled");
    expect(checkInvariants(d.state)).toEqual([]);
  });

  it("no backup before 75% of the job is done", () => {
    const d = new Driver(CFG);
    unwrap(d.register("a").outcome);
    unwrap(d.register("b").outcome);
    d.submitOk(EIGHT);
    const gs = d.grants("a", 8);
    for (const g of gs.slice(0, 5)) unwrap(d.complete("a", g.lease).outcome);
    d.advance(10_000);
    d.tick();
    expect(d.grants("b", 8)).toEqual([]);
  });
});

describe("throttling", () => {
  it("a worker that fails 3 times in a row gets no leases for a while; an accepted result resets it", () => {
    const d = new Driver({ ...CFG, maxAttempts: 10, throttleAfterFailures: 3, throttleBaseMs: 1_000 });
    unwrap(d.register("bad").outcome);
    unwrap(d.register("good").outcome);
    d.submitOk(EIGHT);
    for (let i = 0; i < 3; i++) {
      const g = d.grants("bad", 1)[0]!;
      unwrap(d.fail("bad", g.lease, { error: "kernel crashed" }).outcome);
      d.advance(200); // past the retry backoff
    }
    expect(d.grants("bad", 1)).toEqual([]);
    expect(d.grants("good", 1)).toHaveLength(1);
    d.advance(1_000);
    const again = d.grants("bad", 1);
    expect(again).toHaveLength(1);
    unwrap(d.complete("bad", again[0]!.lease).outcome);
    expect(d.state.workers.get("bad" as never)?.failureStreak).toBe(0);
  });

  it("leases that expire while their worker is silent (a cut link) count as one failure, so it is not throttled when it returns", () => {
    const d = new Driver({ ...CFG, leaseTtlMs: 1_000, throttleAfterFailures: 3, throttleBaseMs: 30_000 });
    unwrap(d.register("cut").outcome);
    d.submitOk(EIGHT);
    const held = d.grants("cut", 8);
    expect(held).toHaveLength(8);
    // Granted over time, so they expire over several ticks; the worker says nothing meanwhile.
    for (let i = 0; i < 8; i++) {
      d.advance(1_000);
      d.tick();
    }
    expect(d.state.leases.size).toBe(0);
    expect(d.state.workers.get("cut" as never)?.failureStreak).toBe(1);
    // Back from the cut, it gets its work again at once.
    expect(d.grants("cut", 8)).toHaveLength(8);
  });

  it("a worker heard from between expiries is charged at each one, and throttled", () => {
    const d = new Driver({ ...CFG, leaseTtlMs: 1_000, throttleAfterFailures: 3, throttleBaseMs: 30_000 });
    unwrap(d.register("hung").outcome);
    d.submitOk(EIGHT);
    for (let i = 0; i < 3; i++) {
      expect(d.grants("hung", 1)).toHaveLength(1);
      d.advance(1_001);
      d.tick(); // its lease ran out; the next poll is a word from it
    }
    expect(d.state.workers.get("hung" as never)?.failureStreak).toBe(3);
    expect(d.grants("hung", 1)).toEqual([]);
  });
});
