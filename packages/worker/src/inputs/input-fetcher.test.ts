import { afterAll, afterEach, describe, expect, it } from "vitest";
import { removeCompiledThreadScript } from "../test-support/compile-thread.js";
import {
  bits,
  bytesRead,
  cleanUpWorkers,
  failShardCalls,
  HeldPool,
  newWorker,
  product,
  randomMatrix,
  reads,
  smallJob,
  startCoordinator,
  waitFor,
} from "../test-support/worker-fixtures.js";

// Fetching a shard's inputs: chunked ReadBlob, the block cache, row panels, data errors.

afterAll(() => removeCompiledThreadScript());
afterEach(cleanUpWorkers);

describe("Worker input fetcher", () => {
  it("reads blobs in chunks that fit the message limit and caches B across shards", async () => {
    // limit ≤ 128 KiB → chunk = limit / 2 = 52 768 bytes; B (100×100) is 80 000 bytes
    const h = await startCoordinator({ advertise: { maxMessageBytes: 105_536 } });
    const [m, k, n] = [4, 100, 100];
    const a = randomMatrix(m, k, 3);
    const b = randomMatrix(k, n, 4);
    const aRef = h.putMatrix(m, k, a);
    const bRef = h.putMatrix(k, n, b);
    const job = await h.submit(aRef, bRef, 1, 25); // 16 shards, all needing B
    const worker = newWorker(h, { pool: new HeldPool(4) });
    await worker.start();
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
    expect(bytesRead(h, bRef)).toBe(80_000);
    expect(h.calls.count("readBlob")).toBe(2 + 1); // B in 2 chunks; A, being small, whole in one
  });

  it("a row panel of A is a block: the shards of one row band read it once per worker", async () => {
    const h = await startCoordinator();
    const [m, k, n] = [400, 30, 40];
    const a = randomMatrix(m, k, 13);
    const b = randomMatrix(k, n, 14);
    const aRef = h.putMatrix(m, k, a);
    const bRef = h.putMatrix(k, n, b);
    const job = await h.submit(aRef, bRef, 100, 10); // 4 row bands x 4 column tiles = 16 shards
    // A (96 000 bytes) is over a quarter of the cache, so it is fetched by row panels.
    const worker = newWorker(h, { pool: new HeldPool(2), cacheBytes: 300_000 });
    await worker.start();
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
    // every byte of A and of B crossed the wire exactly once, for 16 shards
    expect(bytesRead(h, aRef)).toBe(m * k * 8);
    expect(bytesRead(h, bRef)).toBe(k * n * 8);
    // A came in 4 reads (one per row band), not whole and not per shard
    expect(reads(h).filter((r) => r.blobId === aRef.blobId)).toHaveLength(4);
  });

  it("a small A is fetched whole once, whatever the row bands", async () => {
    const h = await startCoordinator();
    const [m, k, n] = [12, 30, 40];
    const a = randomMatrix(m, k, 13);
    const b = randomMatrix(k, n, 14);
    const aRef = h.putMatrix(m, k, a);
    const job = await h.submit(aRef, h.putMatrix(k, n, b), 4, 10); // 3 row bands x 4 column tiles
    const worker = newWorker(h, { pool: new HeldPool(2) });
    await worker.start();
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
    expect(reads(h).filter((r) => r.blobId === aRef.blobId)).toEqual([{ blobId: aRef.blobId, offset: 0, bytes: m * k * 8 }]);
  });

  it("a cache budget too small for B re-reads its column panel per shard (the cache is what saves the traffic)", async () => {
    const h = await startCoordinator();
    const { job, bRef } = await smallJob(h); // 3 row bands x 4 column bands
    const worker = newWorker(h, { pool: new HeldPool(1), cacheBytes: 0 });
    await worker.start();
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    // every shard reads its own panel: B once per row band, not once per worker
    expect(bytesRead(h, bRef)).toBe(bRef.rows * bRef.cols * 8 * 3);
  });

  it("reports a blob whose size does not match its shape as a data error", async () => {
    const h = await startCoordinator();
    const aRef = h.putMatrix(2, 3, randomMatrix(2, 3, 1));
    const bRef = h.putMatrix(3, 2, randomMatrix(3, 2, 2));
    await h.submit(aRef, bRef, 3, 2);
    // The coordinator checks sizes on submit; this grant claims a 3×3 A whose blob holds 2×3.
    h.faults.rewriteReply("acquireShards", (reply) => {
      for (const lease of reply.leases as { matmul?: { a?: { rows: number; cols: number } } }[]) {
        if (lease.matmul?.a) lease.matmul.a = { ...lease.matmul.a, rows: 3, cols: 3 };
      }
    });
    const worker = newWorker(h, { pool: new HeldPool(1) });
    await worker.start();
    await waitFor("failure report", () => failShardCalls(h).length >= 1);
    expect(failShardCalls(h)[0]).toMatchObject({ release: false });
    expect(failShardCalls(h)[0]?.error).toMatch(/holds 48 bytes but a 3x3 float64 matrix needs 72/);
  });
});
