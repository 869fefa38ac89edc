import { afterAll, afterEach, describe, expect, it } from "vitest";
import { listKernels } from "../kernels/kernel.js";
import { removeCompiledThreadScript } from "../test-support/compile-thread.js";
import { FakeCoordinator, keyOf } from "../test-support/fake-coordinator.js";
import {
  bits,
  captureLogger,
  cleanUpWorkers,
  HeldPool,
  newWorker,
  randomMatrix,
  smallJob,
  threadPool,
  waitFor,
} from "../test-support/worker-fixtures.js";

// The pull loop: acquiring, holding and pipelining leases, heartbeats that end a shard, kernel failures.

afterAll(() => removeCompiledThreadScript());
afterEach(cleanUpWorkers);

describe("Worker pull loop", () => {
  it("registers, computes every tile in threads, and the assembled result is bit-identical", async () => {
    const fake = new FakeCoordinator();
    const logger = captureLogger();
    const { job, aRef, bRef, expected } = smallJob(fake);
    const worker = newWorker(fake, { pool: threadPool(2), logger, name: "test-worker" });
    await worker.start();

    expect(worker.workerId).toBe("w-1");
    // every available kernel, fastest first (native-blas and wasm-simd where they run), reference last
    const kernels = listKernels().map((k) => k.fingerprint);
    expect(kernels.at(-1)).toBe("reference/1");
    expect(fake.registered[0]).toEqual({ workerId: "w-1", name: "test-worker", threads: 2, kernels });
    const registered = logger.lines.find((l) => l.msg === "worker registered");
    expect(registered?.fields).toMatchObject({ workerId: "w-1", threads: 2 });

    await waitFor("all tiles", () => fake.doneCount(job.jobId) === job.shards);
    expect(bits(job.result())).toEqual(bits(expected));
    // B crossed the wire once; A was read by row ranges, each row block once per column tile at most
    expect(fake.bytesRead.get(bRef.blobId)).toBe(bRef.rows * bRef.cols * 8);
    expect(fake.bytesRead.get(aRef.blobId)).toBeLessThanOrEqual(aRef.rows * aRef.cols * 8 * 4);
    expect(fake.failShardCalls).toEqual([]);
  });

  it("never holds more shards than threads", async () => {
    const fake = new FakeCoordinator();
    const pool = new HeldPool(3, () => true);
    const { job } = smallJob(fake);
    const worker = newWorker(fake, { pool });
    await worker.start();
    await waitFor("3 held shards", () => pool.started === 3);
    await new Promise((r) => setTimeout(r, 50));
    expect(worker.activeShards).toBe(3);
    expect(pool.started).toBe(3);
    pool.letGo();
    await waitFor("more shards", () => pool.started > 3);
    pool.letGo();
    // later tasks are held too; keep letting go until the job is done
    const timer = setInterval(() => pool.letGo(), 5);
    try {
      await waitFor("all tiles", () => fake.doneCount(job.jobId) === job.shards);
    } finally {
      clearInterval(timer);
    }
  });

  it("pipelines: holds one lease beyond its threads and fetches its inputs while the threads compute", async () => {
    const fake = new FakeCoordinator();
    const pool = new HeldPool(2, () => true);
    const { job } = smallJob(fake);
    const worker = newWorker(fake, { pool, prefetch: undefined });
    await worker.start();
    // The spare lease is taken and its inputs read while both threads are busy, so its
    // task is already handed to the pool (this fake pool does not queue) when a thread frees up.
    await waitFor("a third lease with its inputs", () => worker.activeShards === 3 && pool.started === 3);
    await new Promise((r) => setTimeout(r, 50));
    expect(worker.activeShards).toBe(3);
    expect(pool.started).toBe(3);
    const timer = setInterval(() => pool.letGo(), 5);
    try {
      await waitFor("all tiles", () => fake.doneCount(job.jobId) === job.shards);
    } finally {
      clearInterval(timer);
    }
  });

  it.each([
    ["CANCELLED", (fake: FakeCoordinator, jobId: string) => fake.cancelJob(jobId)],
    ["LOST", (fake: FakeCoordinator, jobId: string) => fake.loseLease(jobId, 0)],
  ] as const)("stops a shard at once when its heartbeat says %s", async (state, end) => {
    const fake = new FakeCoordinator({ heartbeatIntervalMs: 10 });
    const logger = captureLogger();
    const [m, k, n] = [2, 3, 2];
    const job = fake.addJob(fake.putMatrix(m, k, randomMatrix(m, k, 7)), fake.putMatrix(k, n, randomMatrix(k, n, 8)), 2, 2);
    const pool = new HeldPool(1, (_task, nth) => nth === 0); // hold the first execution only
    const worker = newWorker(fake, { pool, logger });
    await worker.start();
    await waitFor("shard 0 computing", () => pool.started === 1);
    const firstLease = fake.leaseOf(job.jobId, 0);
    expect(firstLease).toBeDefined();
    end(fake, job.jobId);
    await waitFor("abort", () => pool.aborted === 1);
    expect(logger.lines.some((l) => l.msg === "lease ended; stopping shard" && l.fields.state === state)).toBe(true);
    if (state === "LOST") {
      // the slot was freed and the re-granted shard (new epoch) completes
      await waitFor("re-grant done", () => fake.doneCount(job.jobId) === 1);
      expect(pool.started).toBe(2);
    } else {
      await waitFor("slot freed", () => worker.activeShards === 0);
    }
    // the stopped execution never reported a result nor a failure
    const firstKey = keyOf(firstLease as NonNullable<typeof firstLease>);
    expect(fake.completeCalls.filter((c) => keyOf(c.lease) === firstKey)).toEqual([]);
    expect(fake.failShardCalls).toEqual([]);
  });

  it("reports a kernel error with FailShard release:false", async () => {
    const fake = new FakeCoordinator();
    const [m, k, n] = [2, 2, 2];
    const job = fake.addJob(
      fake.putMatrix(m, k, randomMatrix(m, k, 1)),
      fake.putMatrix(k, n, randomMatrix(k, n, 2)),
      2,
      2,
      "simd",
    );
    const worker = newWorker(fake, { pool: threadPool(1) });
    await worker.start();
    await waitFor("failure report", () => fake.failShardCalls.length >= 1);
    expect(fake.failShardCalls[0]).toMatchObject({ workerId: "w-1", release: false });
    expect(fake.failShardCalls[0]?.error).toMatch(/unknown kernel "simd"/);
    expect(fake.doneCount(job.jobId)).toBe(0);
  });
});
