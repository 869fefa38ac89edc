import { Code } from "@connectrpc/connect";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { removeCompiledThreadScript } from "../test-support/compile-thread.js";
import { FakeCoordinator } from "../test-support/fake-coordinator.js";
import {
  bits,
  captureLogger,
  cleanUpWorkers,
  HeldPool,
  newWorker,
  product,
  randomMatrix,
  smallJob,
  waitFor,
} from "../test-support/worker-fixtures.js";

// Reporting: tiles inline or as blobs, CompleteShards outcomes and retries.

afterAll(() => removeCompiledThreadScript());
afterEach(cleanUpWorkers);

describe("Worker pull loop", () => {
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
});
