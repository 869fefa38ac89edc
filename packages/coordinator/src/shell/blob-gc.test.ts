import { createHash } from "node:crypto";
import { asClientId, asJobId, createCoreState, step } from "@dce/core";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { MemoryBlobStore } from "../memory/memory-blob-store.js";
import { VirtualClock } from "../ports/virtual-clock.js";
import { BlobCollector, type BlobGcConfig, type GcCrashPoint } from "./blob-gc.js";

const HOUR = 3_600_000;
const log = pino({ level: "silent" });

/** 2×2 float64 bytes, distinct per seed. */
const matrix = (seed: number) => new Uint8Array(new Float64Array([seed, seed + 1, seed + 2, seed + 3]).buffer);

function setup(config: Partial<BlobGcConfig> = {}) {
  const clock = new VirtualClock(1_000_000);
  const blobs = new MemoryBlobStore();
  const state = createCoreState();
  const commits: (() => void)[] = [];
  let autoCommit = true;
  const crashes: GcCrashPoint[] = [];
  const gc = new BlobCollector({
    blobs,
    state,
    clock,
    log,
    config: { graceMs: HOUR, intervalMs: 0, ...config },
    crash: (p) => crashes.push(p),
    commit: () => (autoCommit ? Promise.resolve() : new Promise<void>((resolve) => commits.push(resolve))),
  });
  const submit = (a: string, b: string, id = `j-${state.jobs.size + 1}`) => {
    const out = step(state, {
      type: "job-submitted",
      nowMs: clock.nowMs(),
      clientId: asClientId("c1"),
      idempotencyKey: id,
      spec: { a: { rows: 2, cols: 2, blobId: a }, b: { rows: 2, cols: 2, blobId: b }, tileRows: 0, tileCols: 0, kernel: "auto" },
      jobId: asJobId(id),
    });
    if (!out.outcome.ok) throw new Error(JSON.stringify(out.outcome.error));
    return asJobId(id);
  };
  return {
    clock,
    blobs,
    state,
    gc,
    submit,
    crashes,
    holdCommits: () => {
      autoCommit = false;
    },
    releaseCommits: () => {
      for (const c of commits.splice(0)) c();
    },
  };
}

describe("BlobCollector", () => {
  it("keeps what jobs reference and deletes an unreferenced blob once its grace period is over", async () => {
    const t = setup();
    const a = t.blobs.put(matrix(1));
    const b = t.blobs.put(matrix(2));
    const orphan = t.blobs.put(matrix(3));
    t.submit(a, b);
    expect(await t.gc.requestPass()).toEqual({ blobsDeleted: 0, bytesDeleted: 0, blobsKept: 1 });
    t.clock.advance(HOUR - 1);
    expect((await t.gc.requestPass()).blobsDeleted).toBe(0);
    t.clock.advance(1);
    expect(await t.gc.requestPass()).toEqual({ blobsDeleted: 1, bytesDeleted: 32, blobsKept: 0 });
    expect(t.blobs.sizeOf(orphan)).toBeUndefined();
    expect(t.blobs.sizeOf(a)).toBe(32);
    expect(t.blobs.sizeOf(b)).toBe(32);
    expect(t.gc.counters).toEqual({ passes: 3, blobsDeleted: 1, bytesDeleted: 32, failures: 0 });
    expect(t.blobs.usage()).toEqual({ blobs: 2, bytes: 64 });
  });

  it("deletes a job's inputs once it leaves state, but not bytes another job still names", async () => {
    const t = setup({ graceMs: 0 });
    const a = t.blobs.put(matrix(1));
    const b = t.blobs.put(matrix(2));
    const c = t.blobs.put(matrix(3));
    const first = t.submit(a, b);
    t.submit(b, c); // B of the first job is A of the second
    expect((await t.gc.requestPass()).blobsDeleted).toBe(0);
    t.state.jobs.delete(first);
    expect(await t.gc.requestPass()).toMatchObject({ blobsDeleted: 1 });
    expect(t.blobs.sizeOf(a)).toBeUndefined();
    expect(t.blobs.sizeOf(b)).toBe(32);
    expect(t.blobs.sizeOf(c)).toBe(32);
  });

  it("deletes a deleted job's blobs without waiting for the grace period, unless their bytes were stored again", async () => {
    const t = setup(); // grace 1 h
    const a = t.blobs.put(matrix(1));
    const b = t.blobs.put(matrix(2));
    const shared = t.blobs.put(matrix(3));
    const first = t.submit(a, shared, "r-1");
    t.submit(shared, b, "r-2");
    t.state.jobs.delete(first);
    // B of the first job is A of the second: released, but still referenced, so kept.
    t.gc.release([a, shared]);
    expect(await t.gc.requestPass()).toMatchObject({ blobsDeleted: 1 });
    expect(t.blobs.sizeOf(a)).toBeUndefined();
    expect(t.blobs.sizeOf(shared)).toBe(32);

    // Released, but a client stored the same bytes again meanwhile (an upload its submit
    // has yet to name): it gets the whole grace period.
    const c = t.blobs.put(matrix(4));
    const d = t.blobs.put(matrix(5));
    const second = t.submit(c, d, "r-3");
    t.state.jobs.delete(second);
    t.gc.release([c, d]);
    t.blobs.put(matrix(4));
    expect(await t.gc.requestPass()).toMatchObject({ blobsDeleted: 1, blobsKept: 1 });
    expect(t.blobs.sizeOf(c)).toBe(32);
    expect(t.blobs.sizeOf(d)).toBeUndefined();
  });

  it("restarts the grace period when the same bytes are uploaded or stored again", async () => {
    const t = setup();
    const bytes = matrix(7);
    const id = t.blobs.put(bytes);
    await t.gc.requestPass(); // first seen unreferenced
    t.clock.advance(HOUR - 10);
    // The client uploads the same bytes again: BeginUpload answers "already present".
    const sha = createHash("sha256").update(bytes).digest("hex");
    expect(t.blobs.begin(32, sha, t.clock.nowMs())).toBeUndefined();
    await t.gc.requestPass();
    t.clock.advance(20);
    expect((await t.gc.requestPass()).blobsDeleted).toBe(0);
    t.clock.advance(HOUR);
    expect((await t.gc.requestPass()).blobsDeleted).toBe(1);
    expect(t.blobs.sizeOf(id)).toBeUndefined();
  });

  it("tombstones at the decision: a blob about to be deleted is absent to a submit, and an upload of it writes fresh bytes that stay", async () => {
    const t = setup({ graceMs: 0 });
    const bytes = matrix(5);
    const sha = createHash("sha256").update(bytes).digest("hex");
    t.blobs.put(bytes);
    t.holdCommits();
    const pass = t.gc.requestPass();
    // The decision is made and the journal commit is awaited: the blob is gone for callers.
    expect(t.crashes).toEqual(["gc-after-tombstone"]);
    expect(t.blobs.sizeOf(sha)).toBeUndefined();
    expect(() => t.blobs.read(sha, 0, 8)).toThrow(/not found/);
    // A client uploads the same bytes meanwhile: no dedup against the doomed copy.
    const up = t.blobs.begin(32, sha, t.clock.nowMs());
    expect(up).toBeDefined();
    t.blobs.append(up?.uploadId ?? "", 0, bytes, t.clock.nowMs());
    expect(t.blobs.finish(up?.uploadId ?? "")).toBe(sha);
    t.releaseCommits();
    expect(await pass).toMatchObject({ blobsDeleted: 0 });
    expect(t.blobs.read(sha, 0, 32).data).toEqual(bytes);
    expect(t.crashes).toEqual(["gc-after-tombstone", "gc-after-commit", "gc-mid-delete"]);
  });

  it("deletes no file before the journal has committed what the decision saw", async () => {
    const t = setup({ graceMs: 0 });
    const id = t.blobs.put(matrix(9));
    t.holdCommits();
    const pass = t.gc.requestPass();
    await new Promise((r) => setImmediate(r));
    expect(t.blobs.list()).toEqual([]); // tombstoned, not yet deleted
    expect(t.blobs.usage()).toEqual({ blobs: 0, bytes: 0 });
    expect(t.gc.counters.blobsDeleted).toBe(0);
    t.releaseCommits();
    expect((await pass).blobsDeleted).toBe(1);
    expect(t.blobs.sizeOf(id)).toBeUndefined();
  });

  it("runs every intervalMs on the clock, and coalesces requests made during a pass", async () => {
    const t = setup({ graceMs: 0, intervalMs: 60_000 });
    t.blobs.put(matrix(1));
    t.clock.advance(59_999);
    expect(t.gc.counters.passes).toBe(0);
    t.clock.advance(1);
    await new Promise((r) => setImmediate(r));
    expect(t.gc.counters).toMatchObject({ passes: 1, blobsDeleted: 1 });
    t.holdCommits();
    t.blobs.put(matrix(2));
    const first = t.gc.requestPass();
    const second = t.gc.requestPass();
    const third = t.gc.requestPass();
    expect(second).toBe(third);
    t.releaseCommits();
    await first;
    await new Promise((r) => setImmediate(r));
    t.releaseCommits();
    await second;
    expect(t.gc.counters.passes).toBe(3);
    t.gc.close();
    t.clock.advance(10 * 60_000);
    expect(t.gc.counters.passes).toBe(3);
  });

  it("yields to the event loop during a long deletion, and stops deleting once closed", async () => {
    const t = setup({ graceMs: 0 });
    for (let i = 0; i < 100; i++) t.blobs.put(matrix(i * 10));
    const pass = t.gc.requestPass();
    // The deletions run in batches of 32 with a turn of the event loop between them.
    await new Promise((r) => setImmediate(r));
    const during = t.blobs.usage().blobs;
    t.gc.close();
    const r = await pass;
    expect(r.blobsDeleted).toBeGreaterThanOrEqual(32);
    expect(r.blobsDeleted).toBeLessThan(100);
    expect(during).toBe(0); // every doomed blob was tombstoned at the decision
    expect(t.blobs.list()).toEqual([]);
  });
});
