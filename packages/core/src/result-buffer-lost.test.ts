import { describe, expect, it } from "vitest";
import { applyRecord, createDurableModel, type DurableModel, fromSnapshot, restoreCoreState, toSnapshot } from "./durable.js";
import type { Effect } from "./events.js";
import { asJobId, type JobId } from "./ids.js";
import { checkInvariants } from "./invariants.js";
import { type CoreConfig, type CoreState, ShardStatus } from "./state.js";
import { step } from "./step.js";
import { Driver, effectsOf, matmulInput, unwrap } from "./testing/model.js";

const CFG: Partial<CoreConfig> = { spreadShards: false, leaseTtlMs: 1_000 };
/** 4×6 result with 2×4 tiles: 4 shards. */
const FOUR = matmulInput(4, 3, 6, { tileRows: 2, tileCols: 4 });

/** Runs a job until `accepted` of its 4 tiles are accepted; returns the driver and the journal it wrote. */
function journaled(accepted: number): { d: Driver; jobId: JobId; model: DurableModel } {
  const d = new Driver(CFG);
  const model = createDurableModel();
  const keep = (fx: readonly Effect[]) => {
    for (const f of effectsOf(fx, "persist")) applyRecord(model, f.record);
  };
  unwrap(d.register("w1").outcome);
  const submitted = d.submit(FOUR);
  keep(submitted.effects);
  const jobId = unwrap(submitted.outcome).jobId;
  const acquired = d.acquire("w1", 4);
  keep(acquired.effects);
  for (const g of unwrap(acquired.outcome).slice(0, accepted)) keep(d.complete("w1", g.lease).effects);
  return { d, jobId, model };
}

/** Restores the state a restarted coordinator would have, and feeds it `result-buffer-lost`. */
function restartWithoutBuffer(model: DurableModel, jobId: JobId): { state: CoreState; effects: Effect[]; tiles: number } {
  const { state } = restoreCoreState(CFG, model);
  const out = step(state, { type: "result-buffer-lost", nowMs: 9_000, jobId });
  return { state, effects: out.effects, tiles: unwrap(out.outcome).tiles };
}

describe("result-buffer-lost", () => {
  it("makes every accepted tile pending again, journals the reset and logs it", () => {
    const { jobId, model } = journaled(2);
    const { state, effects, tiles } = restartWithoutBuffer(model, jobId);
    expect(tiles).toBe(2);
    const job = state.jobs.get(jobId);
    expect(job?.doneCount).toBe(0);
    expect(job?.finalizing).toBe(false);
    expect([...(job?.shardStatus ?? [])]).toEqual([0, 1, 2, 3].map(() => ShardStatus.pending));
    expect([...(job?.shardEpoch ?? [])]).toEqual([0, 0, 0, 0]);
    expect(effects).toEqual([
      { type: "persist", record: { type: "result-buffer-lost", jobId, atMs: 9_000 } },
      {
        type: "log",
        level: "error",
        msg: "result buffer missing after restart; recomputing its tiles",
        fields: { jobId, tiles: 2 },
      },
      { type: "job-changed", jobId },
      { type: "shards-available" },
    ]);
    expect(checkInvariants(state)).toEqual([]);
  });

  it("the reset tiles are granted again, above every epoch of the lost ones", () => {
    const { jobId, model } = journaled(4);
    const restored = restoreCoreState(CFG, model);
    expect(restored.toFinalize).toEqual([jobId]);
    const before = restored.state.nextEpoch;
    const d = new Driver(CFG, restored.state);
    unwrap(d.resultBufferLost(jobId).outcome);
    // No longer finalizing: the job takes grants again, and succeeds only once the tiles are recomputed.
    unwrap(d.register("w9").outcome);
    const grants = d.grants("w9", 8);
    expect(grants.map((g) => g.lease.shardIndex)).toEqual([0, 1, 2, 3]);
    expect(grants.every((g) => g.lease.epoch >= before)).toBe(true);
    const last = grants.map((g) => d.complete("w9", g.lease)).at(-1);
    expect(effectsOf(last?.effects ?? [], "finalize-result")).toEqual([{ type: "finalize-result", jobId }]);
  });

  it("shards already handed out by the cursor are found again when reset in a running state", () => {
    const { d, jobId } = journaled(4);
    expect(d.job(jobId).finalizing).toBe(true);
    expect(unwrap(d.resultBufferLost(jobId).outcome).tiles).toBe(4);
    expect(d.grants("w1", 8).map((g) => g.lease.shardIndex)).toEqual([0, 1, 2, 3]);
    expect(checkInvariants(d.state)).toEqual([]);
  });

  it("a second restart does not take the lost tiles as accepted (journal and snapshot)", () => {
    const { jobId, model } = journaled(3);
    const { effects } = restartWithoutBuffer(model, jobId);
    for (const f of effectsOf(effects, "persist")) applyRecord(model, f.record);
    for (const m of [model, fromSnapshot(JSON.parse(JSON.stringify(toSnapshot(model))))]) {
      const again = restoreCoreState(CFG, m);
      expect(again.state.jobs.get(jobId)?.doneCount).toBe(0);
      expect(again.toFinalize).toEqual([]);
      expect(again.active).toEqual([jobId]);
    }
  });

  it("unknown job → job-not-found; a job already over is left alone", () => {
    const { d, jobId } = journaled(2);
    expect(d.resultBufferLost(asJobId("nope")).outcome).toEqual({ ok: false, error: { kind: "job-not-found", jobId: "nope" } });
    unwrap(d.cancel(jobId).outcome);
    const version = d.job(jobId).version;
    const r = d.resultBufferLost(jobId);
    expect(r).toEqual({ outcome: { ok: true, value: { tiles: 0 } }, effects: [] });
    expect(d.job(jobId).version).toBe(version);
  });
});
