import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { WorkerService } from "@dce/proto";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { extractColumns } from "./internal/matrix.js";
import { listKernels } from "./kernels/kernel.js";
import { referenceKernel } from "./kernels/reference.js";
import { type ComputePool, createThreadPool, type GemmResult, type GemmTask } from "./pool.js";
import { compileThreadScript, removeCompiledThreadScript } from "./test-support/compile-thread.js";
import { FakeCoordinator, keyOf } from "./test-support/fake-coordinator.js";
import { RetryBudgetExceededError, Worker, type WorkerLogger, type WorkerOptions } from "./worker.js";

// ---- fixtures ------------------------------------------------------------------------

interface LogLine {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

function captureLogger(): WorkerLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => {
    lines.push({ level, msg, fields });
  };
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

function randomMatrix(rows: number, cols: number, seed: number): Float64Array {
  let x = seed;
  return Float64Array.from({ length: rows * cols }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    // mixed magnitudes, so that a wrong summation order would change bits
    return (x / 2 ** 31 - 0.5) * 10 ** ((x % 7) - 3);
  });
}

function product(m: number, n: number, k: number, a: Float64Array, b: Float64Array): Float64Array {
  const c = new Float64Array(m * n);
  referenceKernel.gemm(m, n, k, a, b, c);
  return c;
}

const bits = (x: Float64Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);

async function waitFor(what: string, predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A pool that computes with the reference kernel on the main thread, but can hold
 * chosen tasks until they are aborted or let go, so tests control timing exactly.
 */
class HeldPool implements ComputePool {
  readonly size: number;
  started = 0;
  aborted = 0;
  completed = 0;
  #hold: (task: GemmTask, nth: number) => boolean;
  #letGo: (() => void)[] = [];

  constructor(size: number, hold: (task: GemmTask, nth: number) => boolean = () => false) {
    this.size = size;
    this.#hold = hold;
  }

  /** Lets every held task finish. */
  letGo(): void {
    for (const go of this.#letGo.splice(0)) go();
  }

  async run(task: GemmTask, signal?: AbortSignal): Promise<GemmResult> {
    const nth = this.started++;
    const b =
      (task.ldb ?? task.n) === task.n && (task.bColStart ?? 0) === 0
        ? task.b
        : extractColumns(task.b, task.k, task.ldb ?? task.n, task.bColStart ?? 0, (task.bColStart ?? 0) + task.n);
    const c = product(task.m, task.n, task.k, task.a, b);
    if (this.#hold(task, nth)) {
      await new Promise<void>((resolve, reject) => {
        this.#letGo.push(resolve);
        signal?.addEventListener("abort", () => {
          this.aborted++;
          reject(signal.reason);
        });
      });
    }
    this.completed++;
    return { c, computeMs: 1, threadMs: 1 };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

const workers: Worker[] = [];
const pools: ComputePool[] = [];

function newWorker(fake: FakeCoordinator, extra: Partial<WorkerOptions> = {}): Worker {
  const worker = new Worker({
    coordinatorUrl: "http://coordinator.test",
    transport: fake.transport,
    acquireWaitMs: 200,
    shutdownGraceMs: 2_000,
    random: () => 0.5,
    prefetch: 0, // exactly one lease per thread, unless a test is about pipelining
    ...extra,
  });
  workers.push(worker);
  return worker;
}

function threadPool(threads: number): ComputePool {
  const pool = createThreadPool({ threads, threadUrl: compileThreadScript() });
  pools.push(pool);
  return pool;
}

afterAll(() => removeCompiledThreadScript());
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.close()));
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

/** A 7×5 by 5×13 job in 3×4 tiles: 3 × 4 = 12 shards with ragged edges. */
function smallJob(fake: FakeCoordinator) {
  const [m, k, n] = [7, 5, 13];
  const a = randomMatrix(m, k, 1);
  const b = randomMatrix(k, n, 2);
  const aRef = fake.putMatrix(m, k, a);
  const bRef = fake.putMatrix(k, n, b);
  const job = fake.addJob(aRef, bRef, 3, 4);
  return { job, aRef, bRef, expected: product(m, n, k, a, b) };
}

// ---- tests ---------------------------------------------------------------------------

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

  it("reads blobs in chunks that fit the message limit and caches B across shards", async () => {
    // limit ≤ 128 KiB → chunk = limit / 2 = 52 768 bytes; B (100×100) is 80 000 bytes
    const fake = new FakeCoordinator({ maxMessageBytes: 105_536 });
    const [m, k, n] = [4, 100, 100];
    const a = randomMatrix(m, k, 3);
    const b = randomMatrix(k, n, 4);
    const aRef = fake.putMatrix(m, k, a);
    const bRef = fake.putMatrix(k, n, b);
    const job = fake.addJob(aRef, bRef, 1, 25); // 16 shards, all needing B
    const worker = newWorker(fake, { pool: new HeldPool(4) });
    await worker.start();
    await waitFor("all tiles", () => fake.doneCount(job.jobId) === job.shards);
    expect(bits(job.result())).toEqual(bits(product(m, n, k, a, b)));
    expect(fake.bytesRead.get(bRef.blobId)).toBe(80_000);
    expect(fake.calls.readBlob).toBe(2 + 1); // B in 2 chunks; A, being small, whole in one
  });

  it("a row panel of A is a block: the shards of one row band read it once per worker", async () => {
    const fake = new FakeCoordinator();
    const [m, k, n] = [400, 30, 40];
    const a = randomMatrix(m, k, 13);
    const b = randomMatrix(k, n, 14);
    const aRef = fake.putMatrix(m, k, a);
    const bRef = fake.putMatrix(k, n, b);
    const job = fake.addJob(aRef, bRef, 100, 10); // 4 row bands x 4 column tiles = 16 shards
    // A (96 000 bytes) is over a quarter of the cache, so it is fetched by row panels.
    const worker = newWorker(fake, { pool: new HeldPool(2), cacheBytes: 300_000 });
    await worker.start();
    await waitFor("all tiles", () => fake.doneCount(job.jobId) === job.shards);
    expect(bits(job.result())).toEqual(bits(product(m, n, k, a, b)));
    // every byte of A and of B crossed the wire exactly once, for 16 shards
    expect(fake.bytesRead.get(aRef.blobId)).toBe(m * k * 8);
    expect(fake.bytesRead.get(bRef.blobId)).toBe(k * n * 8);
    // A came in 4 reads (one per row band), not whole and not per shard
    expect(fake.readCalls.filter((r) => r.blobId === aRef.blobId)).toHaveLength(4);
  });

  it("a small A is fetched whole once, whatever the row bands", async () => {
    const fake = new FakeCoordinator();
    const [m, k, n] = [12, 30, 40];
    const a = randomMatrix(m, k, 13);
    const b = randomMatrix(k, n, 14);
    const aRef = fake.putMatrix(m, k, a);
    const job = fake.addJob(aRef, fake.putMatrix(k, n, b), 4, 10); // 3 row bands x 4 column tiles
    const worker = newWorker(fake, { pool: new HeldPool(2) });
    await worker.start();
    await waitFor("all tiles", () => fake.doneCount(job.jobId) === job.shards);
    expect(bits(job.result())).toEqual(bits(product(m, n, k, a, b)));
    expect(fake.readCalls.filter((r) => r.blobId === aRef.blobId)).toEqual([{ blobId: aRef.blobId, offset: 0 }]);
  });

  it("a cache budget too small for B re-reads B per shard (the cache is what saves the traffic)", async () => {
    const fake = new FakeCoordinator();
    const { job, bRef } = smallJob(fake);
    const worker = newWorker(fake, { pool: new HeldPool(1), cacheBytes: 0 });
    await worker.start();
    await waitFor("all tiles", () => fake.doneCount(job.jobId) === job.shards);
    expect(fake.bytesRead.get(bRef.blobId)).toBe(bRef.rows * bRef.cols * 8 * job.shards);
  });

  it("uploads a tile larger than one message as a blob", async () => {
    // limit 140 000 → inline limit 74 464 bytes; a 100×100 tile is 80 000 bytes
    const fake = new FakeCoordinator({ maxMessageBytes: 140_000, maxChunkBytes: 30_000 });
    const [m, k, n] = [100, 3, 100];
    const a = randomMatrix(m, k, 5);
    const b = randomMatrix(k, n, 6);
    const job = fake.addJob(fake.putMatrix(m, k, a), fake.putMatrix(k, n, b), 100, 100);
    const worker = newWorker(fake, { pool: new HeldPool(1) });
    await worker.start();
    await waitFor("the tile", () => fake.doneCount(job.jobId) === 1);
    expect(fake.completeCalls.map((c) => c.payload)).toEqual(["blobId"]);
    expect(fake.calls.uploadChunk).toBe(3); // 80 000 bytes in chunks of 30 000
    expect(bits(job.result())).toEqual(bits(product(m, n, k, a, b)));
  });

  it("begins a tile upload again when the coordinator dropped it (its disk refused a chunk), without failing the shard", async () => {
    const fake = new FakeCoordinator({ maxMessageBytes: 140_000, maxChunkBytes: 30_000 });
    const logger = captureLogger();
    const [m, k, n] = [100, 3, 100];
    const a = randomMatrix(m, k, 15);
    const b = randomMatrix(k, n, 16);
    const job = fake.addJob(fake.putMatrix(m, k, a), fake.putMatrix(k, n, b), 100, 100);
    fake.refuseChunks = 1;
    const worker = newWorker(fake, { pool: new HeldPool(1), logger });
    await worker.start();
    await waitFor("the tile", () => fake.doneCount(job.jobId) === 1);
    expect(fake.calls.beginUpload).toBe(2);
    expect(fake.failShardCalls).toEqual([]);
    expect(logger.lines.some((l) => l.msg === "tile upload lost by the coordinator; uploading again")).toBe(true);
    expect(bits(job.result())).toEqual(bits(product(m, n, k, a, b)));
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

  it("drops a result the coordinator answers ABORTED (logged at info) and goes on", async () => {
    const fake = new FakeCoordinator();
    const logger = captureLogger();
    const { job } = smallJob(fake);
    fake.completeOverride = (lease) =>
      lease.shardIndex === 0 && lease.epoch === 1n ? { code: Code.Aborted, message: "stale epoch" } : undefined;
    const worker = newWorker(fake, { pool: new HeldPool(2), logger });
    await worker.start();
    await waitFor("other tiles", () => fake.doneCount(job.jobId) === job.shards - 1);
    await new Promise((r) => setTimeout(r, 30));
    const dropped = logger.lines.filter((l) => l.msg.startsWith("result not accepted"));
    expect(dropped).toHaveLength(1);
    expect(dropped[0]?.level).toBe("info");
    expect(dropped[0]?.fields).toMatchObject({ jobId: "job-1", shard: 0, reason: "stale epoch" });
    // not retried, not reported as a failure
    expect(fake.completeCalls.filter((c) => c.lease.shardIndex === 0)).toHaveLength(1);
    expect(fake.failShardCalls).toEqual([]);
  });

  it("treats ALREADY_EXISTS as success and other outcome codes as a warned drop", async () => {
    const fake = new FakeCoordinator();
    const logger = captureLogger();
    const { job } = smallJob(fake);
    fake.completeOverride = (lease) => {
      if (lease.shardIndex === 0) return { code: Code.AlreadyExists, message: "" };
      if (lease.shardIndex === 1) return { code: Code.InvalidArgument, message: "wrong size" };
      return undefined;
    };
    const worker = newWorker(fake, { pool: new HeldPool(2), logger });
    await worker.start();
    await waitFor("other tiles", () => fake.doneCount(job.jobId) === job.shards - 2);
    await waitFor("warning", () => logger.lines.some((l) => l.msg === "result rejected by the coordinator; dropped"));
    const warned = logger.lines.filter((l) => l.level === "warn");
    expect(warned.map((l) => l.fields.shard)).toEqual([1]);
    expect(warned[0]?.fields).toMatchObject({ code: "InvalidArgument", reason: "wrong size" });
  });

  it("retries CompleteShards after UNAVAILABLE", async () => {
    const fake = new FakeCoordinator();
    const [m, k, n] = [2, 2, 2];
    const a = randomMatrix(m, k, 9);
    const b = randomMatrix(k, n, 10);
    const job = fake.addJob(fake.putMatrix(m, k, a), fake.putMatrix(k, n, b), 2, 2);
    fake.failNext("completeShards", Code.Unavailable, 2);
    const worker = newWorker(fake, { pool: new HeldPool(1) });
    await worker.start();
    await waitFor("tile", () => fake.doneCount(job.jobId) === 1);
    expect(fake.calls.completeShards).toBe(3);
    expect(bits(job.result())).toEqual(bits(product(m, n, k, a, b)));
  });

  it("retries reads after UNAVAILABLE and acquires after a connection failure", async () => {
    const fake = new FakeCoordinator();
    const { job, expected } = smallJob(fake);
    fake.failNext("acquireShards", Code.Unavailable, 2);
    const logger = captureLogger();
    const worker = newWorker(fake, { pool: new HeldPool(2), logger });
    await worker.start();
    fake.failNext("readBlob", Code.Unavailable, 3);
    fake.failNext("completeShards", Code.Unavailable, 1);
    await waitFor("all tiles", () => fake.doneCount(job.jobId) === job.shards);
    expect(bits(job.result())).toEqual(bits(expected));
    expect(fake.failShardCalls).toEqual([]);
    // A report's retry names the job and its shard (or the shards of a batched report).
    const reports = logger.lines.filter(
      (l) => l.msg === "coordinator call failed; retrying" && l.fields.rpc === "CompleteShards",
    );
    expect(reports).toHaveLength(1);
    expect(reports[0]?.fields.jobId).toBe(job.jobId);
    expect(typeof reports[0]?.fields.shard === "number" || Array.isArray(reports[0]?.fields.shards)).toBe(true);
    // A retry on behalf of a shard names it; the pull loop's retries name no job.
    const retries = logger.lines.filter((l) => l.msg === "coordinator call failed; retrying");
    const reads = retries.filter((l) => l.fields.rpc === "ReadBlob");
    expect(reads).toHaveLength(3);
    for (const l of reads) {
      expect(l.fields).toMatchObject({ jobId: job.jobId, shard: expect.any(Number), epoch: expect.any(Number) });
    }
    const acquires = retries.filter((l) => l.fields.rpc === "AcquireShards");
    expect(acquires).toHaveLength(2);
    for (const l of acquires) expect(l.fields).not.toHaveProperty("jobId");
    // Every line about a shard carries the job id and the shard index.
    for (const l of logger.lines.filter((x) => /shard|lease/i.test(x.msg))) {
      expect(l.fields, l.msg).toMatchObject({ jobId: job.jobId, shard: expect.any(Number) });
    }
  });

  it("retries a call broken by a connection reset (client-side ABORTED), unlike a server ABORTED", async () => {
    const fake = new FakeCoordinator();
    const { job, expected } = smallJob(fake);
    fake.failNextOnNetwork("readBlob", Code.Aborted, 2);
    fake.failNextOnNetwork("completeShards", Code.Internal, 1);
    const worker = newWorker(fake, { pool: new HeldPool(2) });
    await worker.start();
    await waitFor("all tiles", () => fake.doneCount(job.jobId) === job.shards);
    expect(bits(job.result())).toEqual(bits(expected));
    expect(fake.failShardCalls).toEqual([]);
  });

  it("reports a read the coordinator answers ABORTED as a shard failure (not retried)", async () => {
    const fake = new FakeCoordinator();
    smallJob(fake);
    fake.failNext("readBlob", Code.Aborted, 1);
    const worker = newWorker(fake, { pool: new HeldPool(1) });
    await worker.start();
    await waitFor("failure report", () => fake.failShardCalls.length === 1);
    expect(fake.failShardCalls[0]).toMatchObject({ release: false, error: "[aborted] injected Aborted" });
  });

  it("registers again after NOT_FOUND (coordinator restart) and keeps working", async () => {
    const fake = new FakeCoordinator();
    const pool = new HeldPool(1, (_t, nth) => nth === 0);
    const logger = captureLogger();
    const { job, expected } = smallJob(fake);
    const worker = newWorker(fake, { pool, logger });
    await worker.start();
    await waitFor("first shard held", () => pool.started === 1);
    fake.forgetWorkers();
    // The heartbeat hits NOT_FOUND first and registers again; the held lease still
    // completes under the new worker id.
    await waitFor("second registration", () => fake.calls.registerWorker === 2);
    expect(worker.workerId).toBe("w-2");
    pool.letGo();
    await waitFor("all tiles", () => fake.doneCount(job.jobId) === job.shards);
    expect(bits(job.result())).toEqual(bits(expected));
    expect(new Set(fake.completeCalls.map((c) => c.workerId))).toEqual(new Set(["w-2"]));
    expect(fake.calls.registerWorker).toBe(2); // concurrent NOT_FOUNDs share one registration
    expect(logger.lines.filter((l) => l.msg === "worker registered")).toHaveLength(2);
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

  it("--chaos-crash-on-shard: dies whenever it runs that shard index, of any job, and on no other shard", async () => {
    const fake = new FakeCoordinator();
    const logger = captureLogger();
    const jobs = [smallJob(fake).job, smallJob(fake).job];
    let crashes = 0;
    // The CLI's crash is a SIGKILL; this one returns, so the worker goes on and reports the shard.
    const worker = newWorker(fake, { pool: threadPool(1), logger, chaos: { crashOnShard: 5, crash: () => crashes++ } });
    await worker.start();
    await waitFor("all tiles", () => jobs.every((j) => fake.doneCount(j.jobId) === j.shards));
    const lines = logger.lines.filter((l) => l.msg.startsWith("chaos: crashing"));
    expect(lines.map((l) => [l.msg, l.fields.shard])).toEqual([
      ["chaos: crashing on the poison shard", 5],
      ["chaos: crashing on the poison shard", 5],
    ]);
    expect(new Set(lines.map((l) => l.fields.jobId))).toEqual(new Set(jobs.map((j) => j.jobId)));
    expect(crashes).toBe(2);
  });

  it("reports a blob whose size does not match its shape as a data error", async () => {
    const fake = new FakeCoordinator();
    const aRef = fake.putMatrix(2, 3, randomMatrix(2, 3, 1));
    const bRef = fake.putMatrix(3, 2, randomMatrix(3, 2, 2));
    aRef.rows = 3; // the blob holds 2×3, the task claims 3×3
    aRef.cols = 3;
    const wrongB = { ...bRef, rows: 3 };
    fake.addJob(aRef, wrongB, 3, 2);
    const worker = newWorker(fake, { pool: new HeldPool(1) });
    await worker.start();
    await waitFor("failure report", () => fake.failShardCalls.length >= 1);
    expect(fake.failShardCalls[0]).toMatchObject({ release: false });
    expect(fake.failShardCalls[0]?.error).toMatch(/holds 48 bytes but a 3x3 float64 matrix needs 72/);
  });

  it("fails with RetryBudgetExceededError once the coordinator stays unreachable past the budget", async () => {
    const transport = createRouterTransport(({ service }) => {
      service(WorkerService, {
        registerWorker: () => {
          throw new ConnectError("connection refused", Code.Unavailable);
        },
      });
    });
    const logger = captureLogger();
    const worker = new Worker({ coordinatorUrl: "http://x.test", transport, retryBudgetMs: 300, logger, pool: new HeldPool(1) });
    workers.push(worker);
    const startedAt = Date.now();
    await expect(worker.start()).rejects.toBeInstanceOf(RetryBudgetExceededError);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(300);
    await expect(worker.wait()).rejects.toThrow(/retry budget of 300 ms/);
    expect(logger.lines.some((l) => l.level === "warn" && l.fields.rpc === "RegisterWorker")).toBe(true);
  });

  it("stops on a registration the coordinator refuses", async () => {
    const transport = createRouterTransport(({ service }) => {
      service(WorkerService, {
        registerWorker: () => {
          throw new ConnectError("bad token", Code.PermissionDenied);
        },
      });
    });
    const worker = new Worker({ coordinatorUrl: "http://x.test", transport, pool: new HeldPool(1) });
    workers.push(worker);
    await expect(worker.start()).rejects.toThrow(/bad token/);
    await expect(worker.wait()).rejects.toThrow(/bad token/);
  });
});

describe("Worker drain", () => {
  it("close() aborts a pending long-poll at once and is idempotent", async () => {
    const fake = new FakeCoordinator();
    const worker = newWorker(fake, { pool: new HeldPool(1), acquireWaitMs: 20_000 });
    await worker.start();
    await waitFor("long-poll", () => fake.calls.acquireShards === 1);
    const startedAt = Date.now();
    const closing = worker.close();
    expect(worker.close()).toBe(closing);
    await closing;
    await worker.wait();
    expect(Date.now() - startedAt).toBeLessThan(1_000);
    expect(fake.calls.acquireShards).toBe(1);
  });

  it("lets running shards finish within the grace period", async () => {
    const fake = new FakeCoordinator();
    const pool = new HeldPool(2, () => true);
    const { job } = smallJob(fake);
    const worker = newWorker(fake, { pool, shutdownGraceMs: 5_000 });
    await worker.start();
    await waitFor("2 shards held", () => pool.started === 2);
    const closing = worker.close();
    setTimeout(() => pool.letGo(), 50);
    await closing;
    expect(fake.doneCount(job.jobId)).toBe(2);
    expect(fake.failShardCalls).toEqual([]);
    expect(pool.started).toBe(2); // nothing new acquired while draining
  });

  it("hands unfinished leases back with release:true after the grace period", async () => {
    const fake = new FakeCoordinator();
    const pool = new HeldPool(2, () => true);
    const { job } = smallJob(fake);
    const worker = newWorker(fake, { pool, shutdownGraceMs: 50 });
    await worker.start();
    await waitFor("2 shards held", () => pool.started === 2);
    const held = [fake.leaseOf(job.jobId, 0), fake.leaseOf(job.jobId, 1)].map((l) => keyOf(l as NonNullable<typeof l>));
    await worker.close();
    expect(pool.aborted).toBe(2);
    expect(fake.failShardCalls.map((c) => [keyOf(c.lease), c.release]).sort()).toEqual(held.map((k) => [k, true]).sort());
    expect(fake.completeCalls).toEqual([]);
    await worker.wait();
  });

  it("close() before start() finishes registering does not hang", async () => {
    const fake = new FakeCoordinator();
    fake.failNext("registerWorker", Code.Unavailable, 1_000);
    const worker = newWorker(fake, { pool: new HeldPool(1) });
    const starting = worker.start();
    await waitFor("a failed registration", () => fake.calls.registerWorker >= 1);
    await worker.close();
    await starting;
    await worker.wait();
    expect(worker.workerId).toBeUndefined();
  });
});
