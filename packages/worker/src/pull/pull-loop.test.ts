import type { InMemoryCoordinator } from "@dce/coordinator/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { listKernels } from "../kernels/kernel.js";
import { removeCompiledThreadScript } from "../test-support/compile-thread.js";
import {
  bits,
  bytesRead,
  captureLogger,
  cleanUpWorkers,
  completeCalls,
  failShardCalls,
  HeldPool,
  keyOf,
  leaseOf,
  newWorker,
  randomMatrix,
  registrations,
  smallJob,
  startCoordinator,
  threadPool,
  waitFor,
} from "../test-support/worker-fixtures.js";

// The pull loop: acquiring, holding and pipelining leases, heartbeats that end a shard, kernel failures.

afterAll(() => removeCompiledThreadScript());
afterEach(cleanUpWorkers);

describe("Worker pull loop", () => {
  it("registers, computes every tile in threads, and the assembled result is bit-identical", async () => {
    const h = await startCoordinator();
    const logger = captureLogger();
    const { job, aRef, bRef, expected } = await smallJob(h);
    const worker = newWorker(h, { pool: threadPool(2), logger, name: "test-worker" });
    await worker.start();

    const workerId = registrations(h)[0]?.workerId;
    expect(workerId).toBeDefined();
    expect(worker.workerId).toBe(workerId);
    // every available kernel, fastest first (native-avx512, native-blas and wasm-simd where they run), reference last
    const kernels = listKernels().map((k) => k.fingerprint);
    expect(kernels.at(-1)).toBe("reference/1");
    expect(registrations(h)).toEqual([{ workerId, name: "test-worker", threads: 2, kernels }]);
    const registered = logger.lines.find((l) => l.msg === "worker registered");
    expect(registered?.fields).toMatchObject({ workerId, threads: 2 });

    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(bits(await h.result(job.jobId))).toEqual(bits(expected));
    // B crossed the wire once; A was read by row ranges, each row block once per column tile at most
    expect(bytesRead(h, bRef)).toBe(bRef.rows * bRef.cols * 8);
    expect(bytesRead(h, aRef)).toBeLessThanOrEqual(aRef.rows * aRef.cols * 8 * 4);
    expect(failShardCalls(h)).toEqual([]);
  });

  it("never holds more shards than threads", async () => {
    const h = await startCoordinator();
    const pool = new HeldPool(3, () => true);
    const { job } = await smallJob(h);
    const worker = newWorker(h, { pool });
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
      await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    } finally {
      clearInterval(timer);
    }
  });

  it("pipelines: holds one lease beyond its threads and fetches its inputs while the threads compute", async () => {
    const h = await startCoordinator();
    const pool = new HeldPool(2, () => true);
    const { job } = await smallJob(h);
    const worker = newWorker(h, { pool, prefetch: undefined });
    await worker.start();
    // The spare lease is taken and its inputs read while both threads are busy, so its
    // task is already handed to the pool (this fake pool does not queue) when a thread frees up.
    await waitFor("a third lease with its inputs", () => worker.activeShards === 3 && pool.started === 3);
    await new Promise((r) => setTimeout(r, 50));
    expect(worker.activeShards).toBe(3);
    expect(pool.started).toBe(3);
    const timer = setInterval(() => pool.letGo(), 5);
    try {
      await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    } finally {
      clearInterval(timer);
    }
  });

  it.each([
    ["CANCELLED", (h: InMemoryCoordinator, jobId: string) => h.jobs.cancelJob({ jobId }).then(() => {})],
    // The coordinator's clock passes the lease's TTL: it expires at the next tick.
    ["LOST", async (h: InMemoryCoordinator) => h.skipMs(2 * h.coordinator.config.core.leaseTtlMs)],
  ] as const)("stops a shard at once when its heartbeat says %s", async (state, end) => {
    const h = await startCoordinator({ advertise: { heartbeatIntervalMs: 10 } });
    const logger = captureLogger();
    const [m, k, n] = [2, 3, 2];
    const job = await h.submit(h.putMatrix(m, k, randomMatrix(m, k, 7)), h.putMatrix(k, n, randomMatrix(k, n, 8)), 2, 2);
    expect(job.shards).toBe(1);
    const pool = new HeldPool(1, (_task, nth) => nth === 0); // hold the first execution only
    const worker = newWorker(h, { pool, logger });
    await worker.start();
    await waitFor("shard 0 computing", () => pool.started === 1);
    const firstLease = leaseOf(h, job.jobId, 0);
    expect(firstLease).toBeDefined();
    await end(h, job.jobId);
    await waitFor("abort", () => pool.aborted === 1);
    expect(logger.lines.some((l) => l.msg === "lease ended; stopping shard" && l.fields.state === state)).toBe(true);
    if (state === "LOST") {
      // the slot was freed and the re-granted shard (new epoch) completes
      await waitFor("re-grant done", () => h.doneCount(job.jobId) === 1);
      expect(pool.started).toBe(2);
    } else {
      await waitFor("slot freed", () => worker.activeShards === 0);
    }
    // the stopped execution never reported a result nor a failure
    const firstKey = keyOf(firstLease as NonNullable<typeof firstLease>);
    expect(completeCalls(h).filter((c) => keyOf(c.lease) === firstKey)).toEqual([]);
    expect(failShardCalls(h)).toEqual([]);
  });

  it("reports a kernel error with FailShard release:false", async () => {
    const h = await startCoordinator();
    // The coordinator only grants kernels a worker offers; this one names a kernel the worker lacks.
    h.faults.rewriteReply("acquireShards", (reply) => {
      for (const lease of reply.leases as { kernel: string }[]) lease.kernel = "simd";
    });
    const [m, k, n] = [2, 2, 2];
    const job = await h.submit(h.putMatrix(m, k, randomMatrix(m, k, 1)), h.putMatrix(k, n, randomMatrix(k, n, 2)), 2, 2);
    const worker = newWorker(h, { pool: threadPool(1) });
    await worker.start();
    await waitFor("failure report", () => failShardCalls(h).length >= 1);
    expect(failShardCalls(h)[0]).toMatchObject({ workerId: worker.workerId, release: false });
    expect(failShardCalls(h)[0]?.error).toMatch(/unknown kernel "simd"/);
    expect(h.doneCount(job.jobId)).toBe(0);
  });
});
