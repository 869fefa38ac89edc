import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { WorkerService } from "@dce/proto";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { RetryBudgetExceededError } from "./errors.js";
import { removeCompiledThreadScript } from "./test-support/compile-thread.js";
import {
  bits,
  captureLogger,
  cleanUpWorkers,
  completeCalls,
  failShardCalls,
  HeldPool,
  keyOf,
  leaseOf,
  newWorker,
  registrations,
  smallJob,
  startCoordinator,
  waitFor,
  workers,
} from "./test-support/worker-fixtures.js";
import { Worker } from "./worker.js";

// The worker as a whole: retries, registering (again), the retry budget, drain.

afterAll(() => removeCompiledThreadScript());
afterEach(cleanUpWorkers);

describe("Worker retries and registration", () => {
  it("retries reads after UNAVAILABLE and acquires after a connection failure", async () => {
    const h = await startCoordinator();
    const { job, expected } = await smallJob(h);
    h.faults.failNext("acquireShards", Code.Unavailable, 2);
    const logger = captureLogger();
    const worker = newWorker(h, { pool: new HeldPool(2), logger });
    await worker.start();
    h.faults.failNext("readBlob", Code.Unavailable, 3);
    h.faults.failNext("completeShards", Code.Unavailable, 1);
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(bits(await h.result(job.jobId))).toEqual(bits(expected));
    expect(failShardCalls(h)).toEqual([]);
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
    const h = await startCoordinator();
    const { job, expected } = await smallJob(h);
    h.faults.failOnNetwork("readBlob", Code.Aborted, 2);
    h.faults.failOnNetwork("completeShards", Code.Internal, 1);
    const worker = newWorker(h, { pool: new HeldPool(2) });
    await worker.start();
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(bits(await h.result(job.jobId))).toEqual(bits(expected));
    expect(failShardCalls(h)).toEqual([]);
  });

  it("reports a read the coordinator answers ABORTED as a shard failure (not retried)", async () => {
    const h = await startCoordinator();
    await smallJob(h);
    h.faults.failNext("readBlob", Code.Aborted, 1);
    const worker = newWorker(h, { pool: new HeldPool(1) });
    await worker.start();
    await waitFor("failure report", () => failShardCalls(h).length === 1);
    expect(failShardCalls(h)[0]).toMatchObject({ release: false, error: "[aborted] injected Aborted" });
  });

  it("registers again after NOT_FOUND (coordinator restart) and keeps working", async () => {
    const h = await startCoordinator();
    const pool = new HeldPool(1, (_t, nth) => nth === 0);
    const logger = captureLogger();
    const { job, expected } = await smallJob(h);
    const worker = newWorker(h, { pool, logger });
    await worker.start();
    await waitFor("first shard held", () => pool.started === 1);
    // A restart forgets every worker: the heartbeat hits NOT_FOUND first and registers
    // again; the held shard is still reported, under the new worker id.
    await h.restart();
    await waitFor("second registration", () => registrations(h).length === 2);
    const secondId = registrations(h)[1]?.workerId;
    expect(worker.workerId).toBe(secondId);
    pool.letGo();
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(bits(await h.result(job.jobId))).toEqual(bits(expected));
    expect(new Set(completeCalls(h).map((c) => c.workerId))).toEqual(new Set([secondId]));
    expect(h.calls.count("registerWorker")).toBe(2); // concurrent NOT_FOUNDs share one registration
    expect(logger.lines.filter((l) => l.msg === "worker registered")).toHaveLength(2);
  });

  it("registers again only on the WORKER_NOT_FOUND reason, not on any NOT_FOUND", async () => {
    const h = await startCoordinator();
    const pool = new HeldPool(1, (_t, nth) => nth === 0);
    const logger = captureLogger();
    const { job } = await smallJob(h);
    const worker = newWorker(h, { pool, logger });
    await worker.start();
    await waitFor("first shard held", () => pool.started === 1);
    // A NOT_FOUND without the reason (say, about something else the call names) is a failed heartbeat.
    h.faults.failNext("heartbeat", Code.NotFound, 1);
    await waitFor("heartbeat failed", () => logger.lines.some((l) => l.msg === "heartbeat failed"));
    expect(h.calls.count("registerWorker")).toBe(1);
    pool.letGo();
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(h.calls.count("registerWorker")).toBe(1);
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
    const h = await startCoordinator();
    const worker = newWorker(h, { pool: new HeldPool(1), acquireWaitMs: 20_000 });
    await worker.start();
    await waitFor("long-poll", () => h.calls.count("acquireShards") === 1);
    const startedAt = Date.now();
    const closing = worker.close();
    expect(worker.close()).toBe(closing);
    await closing;
    await worker.wait();
    expect(Date.now() - startedAt).toBeLessThan(1_000);
    expect(h.calls.count("acquireShards")).toBe(1);
  });

  it("lets running shards finish within the grace period", async () => {
    const h = await startCoordinator();
    const pool = new HeldPool(2, () => true);
    const { job } = await smallJob(h);
    const logger = captureLogger();
    const worker = newWorker(h, { pool, shutdownGraceMs: 5_000, logger });
    await worker.start();
    await waitFor("2 shards held", () => pool.started === 2);
    const closing = worker.close();
    setTimeout(() => pool.letGo(), 50);
    await closing;
    expect(h.doneCount(job.jobId)).toBe(2);
    expect(failShardCalls(h)).toEqual([]);
    expect(pool.started).toBe(2); // nothing new acquired while draining
    // The last line says what became of the work it held.
    expect(logger.lines.at(-1)).toMatchObject({
      msg: "worker stopped: 2 shards finished while draining, 0 leases handed back",
      fields: { shardsFinishedWhileDraining: 2, leasesHandedBack: 0, handBacksLost: 0 },
    });
  });

  it("hands unfinished leases back with release:true after the grace period", async () => {
    const h = await startCoordinator();
    const pool = new HeldPool(2, () => true);
    const { job } = await smallJob(h);
    const logger = captureLogger();
    const worker = newWorker(h, { pool, shutdownGraceMs: 50, logger });
    await worker.start();
    await waitFor("2 shards held", () => pool.started === 2);
    const held = [leaseOf(h, job.jobId, 0), leaseOf(h, job.jobId, 1)].map((l) => keyOf(l as NonNullable<typeof l>));
    expect(held).toHaveLength(2);
    await worker.close();
    expect(pool.aborted).toBe(2);
    expect(
      failShardCalls(h)
        .map((c) => [keyOf(c.lease), c.release])
        .sort(),
    ).toEqual(held.map((k) => [k, true]).sort());
    expect(completeCalls(h)).toEqual([]);
    expect(logger.lines.at(-1)).toMatchObject({
      msg: "worker stopped: 0 shards finished while draining, 2 leases handed back",
      fields: { shardsFinishedWhileDraining: 0, leasesHandedBack: 2, handBacksLost: 0 },
    });
    await worker.wait();
  });

  it("close() before start() finishes registering does not hang", async () => {
    const h = await startCoordinator();
    h.faults.failNext("registerWorker", Code.Unavailable, 1_000);
    const worker = newWorker(h, { pool: new HeldPool(1) });
    const starting = worker.start();
    await waitFor("a failed registration", () => h.calls.count("registerWorker") >= 1);
    await worker.close();
    await starting;
    await worker.wait();
    expect(worker.workerId).toBeUndefined();
  });
});
