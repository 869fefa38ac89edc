import { describe, expect, it } from "vitest";
import type { CoreConfig } from "./state.js";
import { BLOB_A, BLOB_B, Driver, effectsOf, FOREIGN, matmulInput, REF_A, REF_B, unwrap } from "./testing/model.js";
import { CFG, expectInvariants, FOUR, ONE, setup } from "./testing/step-fixtures.js";

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
    // a worker listing an unknown kernel first still matches through its known one (the
    // first tile of the second tile block: the job is cut for wa and wa2, not wb)
    expect(d.grants("wa2", 1).map((x) => [x.kernel, x.lease.shardIndex])).toEqual([["reference", 2]]);
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

describe("spreading a job over workers (spreadShards)", () => {
  const SPREAD: Partial<CoreConfig> = { ...CFG, spreadShards: true };
  /** 3×3 tiles of a 9×9 result: 9 shards. */
  const NINE = matmulInput(9, 2, 9, { tileRows: 3, tileCols: 3 });

  it("a worker asking for every shard of a small job gets its share; the next worker gets the rest", () => {
    const { d, jobId } = setup(NINE, SPREAD);
    // Two tile blocks: rows 0-1 (shards 0-5) and row 2 (6-8).
    expect(d.grants("w1", 100).map((g) => g.lease.shardIndex)).toEqual([0, 1, 2, 3, 4]); // ceil(9 / 2)
    // its share, all that is left: its block, then the tile left in w1's
    expect(d.grants("w2", 100).map((g) => g.lease.shardIndex)).toEqual([6, 7, 8, 5]);
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

describe("misc", () => {
  it("uses the configured blobs in specs and grants", () => {
    const { d } = setup();
    const [g] = d.grants("w1", 1);
    expect(g?.spec.a.blobId).toBe(BLOB_A);
    expect(g?.spec.b.blobId).toBe(BLOB_B);
  });
});

describe("retries and tile blocks", () => {
  it("a worker gets a due retry whose panels it holds before an earlier one it would have to fetch", () => {
    // 4×4 tiles, two workers: w1 has tile rows 0-1, w2 rows 2-3.
    const { d } = setup(matmulInput(4, 2, 4, { tileRows: 1, tileCols: 1 }));
    const [a] = d.grants("w1", 1);
    const [b] = d.grants("w2", 1);
    if (!a || !b) throw new Error("no grants");
    expect([a.lease.shardIndex, b.lease.shardIndex]).toEqual([0, 8]);
    d.fail("w2", b.lease); // queued first
    d.fail("w1", a.lease);
    d.advance(1_000); // past both backoffs
    expect(d.grants("w1", 1).map((g) => g.lease.shardIndex)).toEqual([0]);
    expect(d.grants("w2", 1).map((g) => g.lease.shardIndex)).toEqual([8]);
  });

  it("with no retry on its panels, a worker takes the first due one", () => {
    const { d } = setup(matmulInput(4, 2, 4, { tileRows: 1, tileCols: 1 }));
    const [a] = d.grants("w1", 1);
    const [b] = d.grants("w2", 1);
    if (!a || !b) throw new Error("no grants");
    d.fail("w2", b.lease);
    d.advance(1_000);
    expect(d.grants("w1", 1).map((g) => g.lease.shardIndex)).toEqual([8]);
  });
});
