import { Code } from "@connectrpc/connect";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { removeCompiledThreadScript } from "../test-support/compile-thread.js";
import {
  bits,
  captureLogger,
  cleanUpWorkers,
  completeCalls,
  failShardCalls,
  HeldPool,
  newWorker,
  product,
  randomMatrix,
  smallJob,
  startCoordinator,
  waitFor,
} from "../test-support/worker-fixtures.js";

// Reporting: tiles inline or as blobs, CompleteShards outcomes and retries.

afterAll(() => removeCompiledThreadScript());
afterEach(cleanUpWorkers);

describe("Worker report batcher", () => {
  it("uploads a tile larger than one message as a blob", async () => {
    // limit 140 000 → inline limit 74 464 bytes; a 100×100 tile is 80 000 bytes
    const h = await startCoordinator({ advertise: { maxMessageBytes: 140_000, maxChunkBytes: 30_000 } });
    const [m, k, n] = [100, 3, 100];
    const a = randomMatrix(m, k, 5);
    const b = randomMatrix(k, n, 6);
    const job = await h.submit(h.putMatrix(m, k, a), h.putMatrix(k, n, b), 100, 100);
    const worker = newWorker(h, { pool: new HeldPool(1) });
    await worker.start();
    await waitFor("the tile", () => h.doneCount(job.jobId) === 1);
    expect(completeCalls(h).map((c) => c.payload)).toEqual(["blobId"]);
    expect(h.calls.count("uploadChunk")).toBe(3); // 80 000 bytes in chunks of 30 000
    expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
  });

  it("begins a tile upload again when the coordinator dropped it (its disk refused a chunk), without failing the shard", async () => {
    const h = await startCoordinator({ advertise: { maxMessageBytes: 140_000, maxChunkBytes: 30_000 } });
    const logger = captureLogger();
    const [m, k, n] = [100, 3, 100];
    const a = randomMatrix(m, k, 15);
    const b = randomMatrix(k, n, 16);
    const job = await h.submit(h.putMatrix(m, k, a), h.putMatrix(k, n, b), 100, 100);
    // The next chunk is refused as a full disk refuses it: RESOURCE_EXHAUSTED, and the upload is dropped.
    h.faults.failNext("uploadChunk", Code.ResourceExhausted, 1);
    h.faults.beforeCall("uploadChunk", () => {
      h.storage.blobs.expireIdle(Number.POSITIVE_INFINITY);
      h.faults.beforeCall("uploadChunk", undefined);
    });
    const worker = newWorker(h, { pool: new HeldPool(1), logger });
    await worker.start();
    await waitFor("the tile", () => h.doneCount(job.jobId) === 1);
    expect(h.calls.count("beginUpload")).toBe(2);
    expect(failShardCalls(h)).toEqual([]);
    expect(logger.lines.some((l) => l.msg === "tile upload lost by the coordinator; uploading again")).toBe(true);
    expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
  });

  it("drops a result the coordinator answers ABORTED (logged at info) and goes on", async () => {
    const h = await startCoordinator();
    const logger = captureLogger();
    const { job } = await smallJob(h);
    let firstOfShard0: bigint | undefined;
    h.faults.answerResults((lease) => {
      if (lease.shardIndex !== 0) return undefined;
      firstOfShard0 ??= lease.epoch;
      return lease.epoch === firstOfShard0 ? { code: Code.Aborted, message: "stale epoch" } : undefined;
    });
    const worker = newWorker(h, { pool: new HeldPool(2), logger });
    await worker.start();
    await waitFor("other tiles", () => h.doneCount(job.jobId) === job.shards - 1);
    await new Promise((r) => setTimeout(r, 30));
    const dropped = logger.lines.filter((l) => l.msg.startsWith("result not accepted"));
    expect(dropped).toHaveLength(1);
    expect(dropped[0]?.level).toBe("info");
    expect(dropped[0]?.fields).toMatchObject({ jobId: job.jobId, shard: 0, reason: "stale epoch" });
    // not retried, not reported as a failure
    expect(completeCalls(h).filter((c) => c.lease.shardIndex === 0)).toHaveLength(1);
    expect(failShardCalls(h)).toEqual([]);
  });

  it("drops a result whose job is gone (NOT_FOUND: deleted while it ran) at info level, without failing the shard", async () => {
    const h = await startCoordinator();
    const logger = captureLogger();
    const { job } = await smallJob(h);
    h.faults.answerResults((lease) =>
      lease.shardIndex === 0 ? { code: Code.NotFound, message: `job ${job.jobId} not found` } : undefined,
    );
    const worker = newWorker(h, { pool: new HeldPool(2), logger });
    await worker.start();
    await waitFor("other tiles", () => h.doneCount(job.jobId) === job.shards - 1);
    await waitFor("drop", () => logger.lines.some((l) => l.msg === "result not accepted (the job is gone); dropped"));
    const dropped = logger.lines.filter((l) => l.msg === "result not accepted (the job is gone); dropped");
    expect(dropped.map((l) => [l.level, l.fields.shard])).toEqual([["info", 0]]);
    expect(logger.lines.filter((l) => l.level === "warn")).toEqual([]);
    expect(failShardCalls(h)).toEqual([]);
  });

  it("treats ALREADY_EXISTS as success and other outcome codes as a warned drop", async () => {
    const h = await startCoordinator();
    const logger = captureLogger();
    const { job } = await smallJob(h);
    h.faults.answerResults((lease) => {
      if (lease.shardIndex === 0) return { code: Code.AlreadyExists, message: "" };
      if (lease.shardIndex === 1) return { code: Code.InvalidArgument, message: "wrong size" };
      return undefined;
    });
    const worker = newWorker(h, { pool: new HeldPool(2), logger });
    await worker.start();
    await waitFor("other tiles", () => h.doneCount(job.jobId) === job.shards - 2);
    await waitFor("warning", () => logger.lines.some((l) => l.msg === "result rejected by the coordinator; dropped"));
    const warned = logger.lines.filter((l) => l.level === "warn");
    expect(warned.map((l) => l.fields.shard)).toEqual([1]);
    expect(warned[0]?.fields).toMatchObject({ code: "InvalidArgument", reason: "wrong size" });
  });

  it("retries CompleteShards after UNAVAILABLE", async () => {
    const h = await startCoordinator();
    const [m, k, n] = [2, 2, 2];
    const a = randomMatrix(m, k, 9);
    const b = randomMatrix(k, n, 10);
    const job = await h.submit(h.putMatrix(m, k, a), h.putMatrix(k, n, b), 2, 2);
    h.faults.failNext("completeShards", Code.Unavailable, 2);
    const worker = newWorker(h, { pool: new HeldPool(1) });
    await worker.start();
    await waitFor("tile", () => h.doneCount(job.jobId) === 1);
    expect(h.calls.count("completeShards")).toBe(3);
    expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
  });
});
