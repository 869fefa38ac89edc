import { describe, expect, it } from "vitest";
import { referencedBlobs } from "./blob-refs.js";
import { asJobId } from "./ids.js";
import { BLOB_A, BLOB_B, blobOf, Driver, matmulInput, unwrap } from "./testing/model.js";
import { CFG, ONE, setup } from "./testing/step-fixtures.js";

/** Runs the single shard of `jobId` on w1 and seals its result as `c`. */
function finish(d: Driver, jobId: ReturnType<Driver["submitOk"]>, c: string): void {
  const [g] = d.grants("w1", 1);
  if (!g) throw new Error("no grant");
  unwrap(d.complete("w1", g.lease).outcome);
  unwrap(d.finalized(jobId, c).outcome);
}

describe("referencedBlobs", () => {
  it("is empty without jobs", () => {
    expect(referencedBlobs(new Driver(CFG).state)).toEqual(new Set());
  });

  it("keeps A and B of a queued or running job, and adds C once it succeeded", () => {
    const { d, jobId } = setup(ONE);
    expect(referencedBlobs(d.state)).toEqual(new Set([BLOB_A, BLOB_B]));
    d.grants("w1", 1);
    expect(d.job(jobId).state).toBe("running");
    expect(referencedBlobs(d.state)).toEqual(new Set([BLOB_A, BLOB_B]));
    d.complete("w1", { jobId, shardIndex: 0, epoch: d.job(jobId).shardEpoch[0] ?? 0 });
    unwrap(d.finalized(jobId, blobOf("c")).outcome);
    expect(d.job(jobId).state).toBe("succeeded");
    expect(referencedBlobs(d.state)).toEqual(new Set([BLOB_A, BLOB_B, blobOf("c")]));
  });

  it("keeps the inputs of failed and cancelled jobs while they are in state", () => {
    const { d, jobId } = setup(ONE);
    unwrap(d.cancel(jobId).outcome);
    expect(d.job(jobId).state).toBe("cancelled");
    expect(referencedBlobs(d.state)).toEqual(new Set([BLOB_A, BLOB_B]));
  });

  it("keeps bytes that one job reads and another produced until no job in state names them", () => {
    const { d, jobId } = setup(ONE);
    finish(d, jobId, blobOf("c"));
    // The second job multiplies the first one's C by B: the same bytes are a C and an A.
    const second = d.submitOk(matmulInput(2, 2, 2, { blobA: blobOf("c"), blobB: blobOf("d") }), { jobId: asJobId("j2") });
    finish(d, second, blobOf("e"));
    expect(referencedBlobs(d.state)).toEqual(new Set([BLOB_A, BLOB_B, blobOf("c"), blobOf("d"), blobOf("e")]));
    // A job leaving state (deletion) frees only what nobody else names.
    d.state.jobs.delete(jobId);
    expect(referencedBlobs(d.state)).toEqual(new Set([blobOf("c"), blobOf("d"), blobOf("e")]));
    d.state.jobs.delete(second);
    expect(referencedBlobs(d.state)).toEqual(new Set());
  });
});
