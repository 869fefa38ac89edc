import { describe, expect, it } from "vitest";
import { applyRecord, createDurableModel, fromSnapshot, restoreCoreState, toSnapshot } from "./durable.js";
import type { Effect } from "./events.js";
import { asJobId, asWorkerId } from "./ids.js";
import { checkInvariants } from "./invariants.js";
import { jobOf } from "./queries.js";
import { expiresAtMsOf } from "./retention.js";
import { blobOf, C1, C2, Driver, effectsOf, matmulInput, unwrap } from "./testing/model.js";
import { viewJob } from "./views.js";

const HOUR = 3_600_000;
const CFG = { retentionMs: HOUR, maxRetentionMs: 24 * HOUR, leaseTtlMs: 1_000 };
const ONE = matmulInput(1, 1, 1);
const FOUR = matmulInput(2, 2, 2, { tileRows: 1, tileCols: 1 });

/** A driver with one worker and a job run to success. */
function succeeded(d: Driver, opts: { key?: string; retentionMs?: number } = {}) {
  unwrap(d.register("w1").outcome);
  const jobId = unwrap(
    d.apply({
      type: "job-submitted",
      nowMs: d.nowMs,
      clientId: C1,
      idempotencyKey: opts.key ?? "",
      spec: ONE,
      jobId: asJobId("j1"),
      ...(opts.retentionMs === undefined ? {} : { retentionMs: opts.retentionMs }),
    }).outcome,
  ).jobId;
  const [g] = d.grants("w1", 1);
  if (!g) throw new Error("no grant");
  unwrap(d.complete("w1", g.lease).outcome);
  unwrap(d.finalized(jobId).outcome);
  return { jobId, lease: g.lease };
}

/** The durable model a journal of `d`'s run folds into (its events replayed on a fresh state). */
function foldRun(d: Driver) {
  const model = createDurableModel();
  const again = new Driver(CFG);
  for (const e of d.events) for (const p of effectsOf(again.apply(e).effects, "persist")) applyRecord(model, p.record);
  return model;
}

function persisted(fx: readonly Effect[]): string[] {
  return effectsOf(fx, "persist").map((p) => p.record.type);
}

describe("job deletion", () => {
  it("deletes a finished job now: gone from the state, journaled, its blobs named for collection", () => {
    const d = new Driver(CFG);
    const { jobId } = succeeded(d, { key: "k" });
    const r = d.apply({ type: "job-delete-requested", nowMs: d.nowMs, clientId: C1, jobId });
    expect(r.outcome).toEqual({ ok: true, value: { jobId, cancelled: false } });
    expect(d.state.jobs.has(jobId)).toBe(false);
    expect(d.state.idempotency.size).toBe(0);
    expect(persisted(r.effects)).toEqual(["job-deleted"]);
    expect(effectsOf(r.effects, "job-deleted")).toEqual([
      { type: "job-deleted", jobId, blobIds: [blobOf("a"), blobOf("b"), blobOf("c")] },
    ]);
    expect(effectsOf(r.effects, "job-changed")).toEqual([{ type: "job-changed", jobId }]);
    expect(jobOf(d.state, C1, jobId)).toEqual({ ok: false, error: { kind: "job-not-found", jobId } });
    // Deleting it again, or cancelling it, answers like a job that never existed.
    expect(d.apply({ type: "job-delete-requested", nowMs: d.nowMs, clientId: C1, jobId }).outcome).toEqual({
      ok: false,
      error: { kind: "job-not-found", jobId },
    });
    expect(d.cancel(jobId).outcome).toEqual({ ok: false, error: { kind: "job-not-found", jobId } });
    expect(checkInvariants(d.state)).toEqual([]);
  });

  it("cancels a running job first, revoking its leases; late reports on them are refused", () => {
    const d = new Driver(CFG);
    unwrap(d.register("w1").outcome);
    const jobId = d.submitOk(FOUR);
    const [g] = d.grants("w1", 2);
    if (!g) throw new Error("no grant");
    const r = d.apply({ type: "job-delete-requested", nowMs: d.nowMs, clientId: C1, jobId });
    expect(r.outcome).toEqual({ ok: true, value: { jobId, cancelled: true } });
    expect(persisted(r.effects)).toEqual(["job-ended", "job-deleted"]);
    expect(effectsOf(r.effects, "discard-result")).toHaveLength(1);
    expect(d.state.leases.size).toBe(0);
    expect(d.state.activeJobs).toEqual([]);
    expect([...(d.state.workers.get(asWorkerId("w1"))?.leases ?? [])]).toEqual([]);
    const late = d.complete("w1", g.lease, 8);
    expect(late.outcome).toEqual({ ok: false, error: { kind: "job-not-found", jobId } });
    expect(late.effects).toEqual([]);
    expect(unwrap(d.heartbeat("w1", [g.lease]).outcome)).toEqual([{ lease: g.lease, state: "lost", ttlMs: 0 }]);
    expect(checkInvariants(d.state)).toEqual([]);
  });

  it("refuses another client's job exactly like a missing one, and keeps it", () => {
    const d = new Driver(CFG);
    const { jobId } = succeeded(d);
    const r = d.apply({ type: "job-delete-requested", nowMs: d.nowMs, clientId: C2, jobId });
    expect(r).toEqual({ outcome: { ok: false, error: { kind: "job-not-found", jobId } }, effects: [] });
    expect(d.state.jobs.has(jobId)).toBe(true);
  });

  it("frees the idempotency key: the same key then creates a new job", () => {
    const d = new Driver(CFG);
    const { jobId } = succeeded(d, { key: "k" });
    unwrap(d.apply({ type: "job-delete-requested", nowMs: d.nowMs, clientId: C1, jobId }).outcome);
    const again = unwrap(d.submit(ONE, { key: "k", jobId: asJobId("j2") }).outcome);
    expect(again).toEqual({ jobId: "j2", created: true });
  });

  it("a finalize reply for a job deleted meanwhile is answered not-found and changes nothing", () => {
    const d = new Driver(CFG);
    unwrap(d.register("w1").outcome);
    const jobId = d.submitOk(ONE);
    const [g] = d.grants("w1", 1);
    if (!g) throw new Error("no grant");
    expect(effectsOf(d.complete("w1", g.lease).effects, "finalize-result")).toHaveLength(1);
    unwrap(d.apply({ type: "job-delete-requested", nowMs: d.nowMs, clientId: C1, jobId }).outcome);
    expect(d.finalized(jobId)).toEqual({ outcome: { ok: false, error: { kind: "job-not-found", jobId } }, effects: [] });
    expect(checkInvariants(d.state)).toEqual([]);
  });
});

describe("retention", () => {
  it("a tick deletes a finished job once its retention has run out, not before", () => {
    const d = new Driver(CFG);
    const { jobId } = succeeded(d);
    const finishedAt = d.job(jobId).finishedAtMs;
    expect(expiresAtMsOf(d.job(jobId), d.state.config)).toBe(finishedAt + HOUR);
    expect(viewJob(d.job(jobId), d.state.config).expiresAtMs).toBe(finishedAt + HOUR);
    d.advance(HOUR - 1);
    expect(persisted(d.tick().effects)).toEqual([]);
    expect(d.state.jobs.has(jobId)).toBe(true);
    d.advance(1);
    const r = d.tick();
    expect(persisted(r.effects)).toEqual(["job-deleted"]);
    expect(effectsOf(r.effects, "job-deleted").map((f) => f.jobId)).toEqual([jobId]);
    expect(d.state.jobs.has(jobId)).toBe(false);
  });

  it("a job finishing after a tick that found nothing to expire is still deleted on time", () => {
    const d = new Driver(CFG);
    d.tick(); // nothing finished: the next scan is not due until a job ends
    expect(d.state.retentionDueMs).toBe(Number.POSITIVE_INFINITY);
    const { jobId } = succeeded(d);
    expect(d.state.retentionDueMs).toBe(d.job(jobId).finishedAtMs + HOUR);
    d.advance(HOUR);
    expect(effectsOf(d.tick().effects, "job-deleted").map((f) => f.jobId)).toEqual([jobId]);
  });

  it("never deletes a queued or running job, and a running job's expiry is 0", () => {
    const d = new Driver(CFG);
    unwrap(d.register("w1").outcome);
    const jobId = d.submitOk(FOUR);
    d.grants("w1", 1);
    expect(viewJob(d.job(jobId), d.state.config).expiresAtMs).toBe(0);
    d.advance(48 * HOUR);
    d.tick();
    expect(d.state.jobs.has(jobId)).toBe(true);
  });

  it("a job's own retention wins over the default; above the maximum it is refused", () => {
    const d = new Driver(CFG);
    const { jobId } = succeeded(d, { retentionMs: 5_000 });
    d.advance(5_000);
    d.tick();
    expect(d.state.jobs.has(jobId)).toBe(false);
    const over = d.apply({
      type: "job-submitted",
      nowMs: d.nowMs,
      clientId: C1,
      idempotencyKey: "",
      spec: ONE,
      jobId: asJobId("j9"),
      retentionMs: 24 * HOUR + 1,
    });
    expect(over.outcome.ok).toBe(false);
    if (!over.outcome.ok) {
      expect(over.outcome.error.kind).toBe("invalid-spec");
      expect(JSON.stringify(over.outcome.error)).toContain(String(24 * HOUR));
    }
    expect(d.state.jobs.has(asJobId("j9"))).toBe(false);
  });

  it("a failed and a cancelled job expire too", () => {
    const d = new Driver(CFG);
    const a = d.submitOk(ONE);
    unwrap(d.cancel(a).outcome);
    const b = d.submitOk(ONE);
    unwrap(d.resultFailed(b).outcome);
    d.advance(HOUR);
    expect(effectsOf(d.tick().effects, "job-deleted").map((f) => f.jobId)).toEqual([a, b]);
  });
});

describe("deletion is durable", () => {
  it("the journal fold drops a deleted job; a snapshot leaves it out; a restore never brings it back", () => {
    const d = new Driver(CFG);
    const { jobId } = succeeded(d);
    const keep = d.submitOk(ONE, { jobId: asJobId("j2") });
    unwrap(d.apply({ type: "job-delete-requested", nowMs: d.nowMs, clientId: C1, jobId }).outcome);
    const model = foldRun(d);
    expect([...model.jobs.keys()]).toEqual([keep]);
    const snap = toSnapshot(model);
    expect(JSON.stringify(snap)).not.toContain(jobId);
    const restored = restoreCoreState(CFG, fromSnapshot(snap));
    expect(restored.state.jobs.has(jobId)).toBe(false);
    expect(restored.state.jobs.has(keep)).toBe(true);
    // A record about the job after its deletion (replayed after a snapshot) does not revive it.
    applyRecord(model, { type: "job-ended", jobId, state: "cancelled", error: "", finishedAtMs: 1 });
    expect(model.jobs.has(jobId)).toBe(false);
  });

  it("a job's own retention survives a restart; restored finished jobs past it go on the first tick", () => {
    const d = new Driver(CFG);
    const { jobId } = succeeded(d, { retentionMs: 10_000 });
    const model = foldRun(d);
    const restored = restoreCoreState(CFG, fromSnapshot(toSnapshot(model)));
    const job = restored.state.jobs.get(jobId);
    expect(job?.retentionMs).toBe(10_000);
    const after = new Driver(CFG, restored.state);
    after.nowMs = d.nowMs + 10_000;
    expect(effectsOf(after.tick().effects, "job-deleted").map((f) => f.jobId)).toEqual([jobId]);
  });
});
