import type { InMemoryCoordinator } from "@dce/coordinator/testing";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createClient } from "./client.js";
import { DceError, DimensionMismatchError, InvalidMatrixError, JobCancelledError, JobError, JobFailedError } from "./errors.js";
import { Code, ConnectError } from "./index.js";
import { type JobDriver, type JobDriverOptions, START_MS, STEP_MS, startJobDriver } from "./test-support/job-driver.js";
import { matmul, sha256Hex } from "./test-support/oracle.js";
import type { Matrix } from "./types.js";

const KiB = 1024;

function matrix(rows: number, cols: number, seed = 1): Matrix {
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = ((i * 7919 + seed * 104729) % 1000) / 7 - 50;
  return { rows, cols, data };
}

const drivers: JobDriver[] = [];
afterEach(async () => {
  await Promise.all(drivers.splice(0).map((d) => d.close()));
});

/** A client on the real coordinator in memory, whose jobs a scripted worker moves along. */
async function setup(options: JobDriverOptions = {}, maxMessageBytes?: number, extra: { useLocalStore?: boolean } = {}) {
  const driver = await startJobDriver(options);
  drivers.push(driver);
  const client = createClient({
    baseUrl: "http://coordinator.invalid",
    transport: driver.h.transport,
    longPollWaitMs: 5_000,
    ...(maxMessageBytes === undefined ? {} : { maxMessageBytes }),
    ...extra,
  });
  return { h: driver.h, driver, client };
}

/** The calls of one RPC (e.g. "UploadChunk"), as the coordinator saw them. */
function callsOf(h: InMemoryCoordinator, rpc: string) {
  return h.calls.of(rpc.charAt(0).toLowerCase() + rpc.slice(1));
}

/** A blob's bytes on the coordinator. */
function blobOf(h: InMemoryCoordinator, blobId: string): Uint8Array | undefined {
  const size = h.storage.blobs.sizeOf(blobId);
  return size === undefined ? undefined : h.storage.blobs.read(blobId, 0, size).data;
}

/** Checks that a matrix's chunks were sent in order, contiguous, each within `limit`. */
function expectChunks(calls: { request: Record<string, unknown> }[], total: number, limit: number): number[] {
  const lengths = calls.map((c) => (c.request["data"] as Uint8Array).length);
  let offset = 0;
  for (const [i, c] of calls.entries()) {
    expect(c.request["offset"]).toBe(BigInt(offset));
    offset += lengths[i] as number;
  }
  expect(offset).toBe(total);
  for (const len of lengths) expect(len).toBeLessThanOrEqual(limit);
  return lengths;
}

describe("uploadMatrix", () => {
  it("splits into chunks no larger than the server's max_chunk_bytes", async () => {
    const { h, client } = await setup({ maxChunkBytes: 1000 });
    const m = matrix(30, 20); // 4800 bytes
    const ref = await client.uploadMatrix(m);
    const bytes = new Uint8Array(m.data.buffer);
    expect(ref).toEqual({ rows: 30, cols: 20, blobId: sha256Hex(bytes) });
    expect(expectChunks(callsOf(h, "UploadChunk"), 4800, 1000)).toEqual([1000, 1000, 1000, 1000, 800]);
    expect(blobOf(h, ref.blobId)).toEqual(bytes);
    // The first upload hopes for the local store, so it declares no hash: the coordinator names the blob.
    expect(callsOf(h, "BeginUpload")[0]?.request).toMatchObject({ sizeBytes: 4800n, sha256: "" });
  });

  it("splits into chunks no larger than maxMessageBytes - 64 KiB", async () => {
    const maxMessageBytes = 64 * KiB + 3000;
    const { h, client } = await setup({ maxChunkBytes: 1 << 20 }, maxMessageBytes);
    const m = matrix(100, 100); // 80_000 bytes
    const ref = await client.uploadMatrix(m);
    const lengths = expectChunks(callsOf(h, "UploadChunk"), 80_000, 3000);
    expect(lengths.length).toBe(27);
    expect(blobOf(h, ref.blobId)?.length).toBe(80_000);
  });

  it("uploads exactly the bytes of a view at an offset into a larger buffer", async () => {
    const { h, client } = await setup({ maxChunkBytes: 64 });
    const big = new Float64Array(40).map((_, i) => i);
    const view = big.subarray(5, 35);
    const ref = await client.uploadMatrix({ rows: 5, cols: 6, data: view });
    expect(new Float64Array(blobOf(h, ref.blobId)?.slice().buffer ?? new ArrayBuffer(0))).toEqual(
      Float64Array.from({ length: 30 }, (_, i) => i + 5),
    );
  });

  it("once the local store proved out of reach, hashes first and skips the chunks of a blob the coordinator holds", async () => {
    const { h, client } = await setup();
    const m = matrix(10, 10);
    const first = await client.uploadMatrix(m);
    const chunksAfterFirst = callsOf(h, "UploadChunk").length;
    const second = await client.uploadMatrix({ rows: 10, cols: 10, data: m.data.slice() });
    expect(second).toEqual(first);
    expect(chunksAfterFirst).toBe(1);
    expect(callsOf(h, "UploadChunk").length).toBe(1);
    expect(callsOf(h, "FinishUpload").length).toBe(1);
    expect(callsOf(h, "BeginUpload").map((c) => (c.request as { sha256: string }).sha256)).toEqual(["", first.blobId]);
  });

  it("without the local store (useLocalStore false) hashes first from the start", async () => {
    const { h, client } = await setup({}, undefined, { useLocalStore: false });
    const ref = await client.uploadMatrix(matrix(10, 10));
    expect(callsOf(h, "BeginUpload")[0]?.request).toMatchObject({ sha256: ref.blobId });
  });

  it.each([
    ["zero rows", { rows: 0, cols: 3, data: new Float64Array(0) }, /is 0x3/],
    ["fractional", { rows: 1.5, cols: 2, data: new Float64Array(3) }, /is 1\.5x2/],
    ["length mismatch", { rows: 2, cols: 2, data: new Float64Array(3) }, /data has 3 elements, expected 4/],
    ["not Float64Array", { rows: 1, cols: 2, data: new Float32Array(2) as unknown as Float64Array }, /Float64Array/],
  ])("rejects a malformed matrix (%s) before any RPC", async (_name, m, pattern) => {
    const { h, client } = await setup();
    expect(() => client.uploadMatrix(m)).toThrow(InvalidMatrixError);
    expect(() => client.uploadMatrix(m)).toThrow(pattern);
    expect(h.calls.all).toEqual([]);
  });
});

describe("submitMatMul and result", () => {
  it("sends the priority, which the job's status reports; a bad one fails before any RPC", async () => {
    const { h, client } = await setup({});
    const job = await client.submitMatMul(matrix(2, 2, 1), matrix(2, 2, 2), { priority: -100 });
    expect(callsOf(h, "SubmitJob")[0]?.request["priority"]).toBe(-100);
    expect((await job.status()).priority).toBe(-100);
    for (const priority of [101, -101, 0.5, Number.NaN]) {
      await expect(client.submitMatMul(matrix(2, 2, 1), matrix(2, 2, 2), { priority })).rejects.toThrow(
        /priority must be an integer from -100 to 100/,
      );
    }
    expect(callsOf(h, "SubmitJob")).toHaveLength(1);
  });

  it("multiplies end to end: uploads, submits, waits and assembles the result from chunks", async () => {
    // Server returns at most 500 bytes per ReadBlob, so the client must loop on short reads.
    const { h, client } = await setup({ maxChunkBytes: 4096, readChunkBytes: 500, inlineResults: false });
    const a = matrix(9, 7, 1);
    const b = matrix(7, 5, 2);
    const job = await client.submitMatMul(a, b, { tileSize: 3, kernel: "reference", idempotencyKey: "k1" });
    expect(job.id).toBe("job-1");
    const submit = callsOf(h, "SubmitJob")[0]?.request;
    expect(submit?.["idempotencyKey"]).toBe("k1");
    // Small enough to travel inline; the coordinator names them by their SHA-256.
    expect(submit?.["matmul"]).toMatchObject({
      a: { rows: 9, cols: 7, inlineData: new Uint8Array(a.data.buffer) },
      b: { rows: 7, cols: 5, inlineData: new Uint8Array(b.data.buffer) },
      tileRows: 3,
      tileCols: 3,
      kernel: "reference",
    });

    expect(h.job(job.id)?.spec).toMatchObject({
      a: { blobId: sha256Hex(new Uint8Array(a.data.buffer)) },
      b: { blobId: sha256Hex(new Uint8Array(b.data.buffer)) },
    });
    const c = await job.result({ minIntervalMs: 0 });
    expect(c.rows).toBe(9);
    expect(c.cols).toBe(5);
    expect(c.data).toEqual(matmul(a.data, b.data, 9, 7, 5));
    const reads = callsOf(h, "ReadBlob");
    expect(reads.length).toBe(Math.ceil((9 * 5 * 8) / 500));
    expect(reads.map((r) => r.request["offset"])).toEqual(reads.map((_, i) => BigInt(i * 500)));
  });

  it("requests ReadBlob chunks of at most maxMessageBytes - 64 KiB", async () => {
    const maxMessageBytes = 64 * KiB + 4000;
    const { h, client } = await setup({}, maxMessageBytes);
    const a = matrix(60, 10);
    const b = matrix(10, 50);
    const job = await client.submitMatMul(a, b, { tileSize: { rows: 30, cols: 25 } });
    const c = await job.result({ minIntervalMs: 0 });
    expect(c.data).toEqual(matmul(a.data, b.data, 60, 10, 50));
    const reads = callsOf(h, "ReadBlob");
    expect(reads.length).toBe(Math.ceil(24_000 / 4000));
    for (const r of reads) expect(r.request["maxBytes"]).toBeLessThanOrEqual(4000);
  });

  it("uploads once when A and B are the same object", async () => {
    const { h, client } = await setup({}, 64 * KiB + 3000); // chunks of 3000 bytes: only up to 750 go inline
    const a = matrix(40, 40); // 12 800 bytes: uploaded
    const job = await client.submitMatMul(a, a);
    expect(callsOf(h, "BeginUpload").length).toBe(1);
    const c = await job.result({ minIntervalMs: 0 });
    expect(c.data).toEqual(matmul(a.data, a.data, 40, 40, 40));
  });

  it("uploads again and resubmits once when the coordinator collected its upload before the submit (BLOB_NOT_FOUND)", async () => {
    const { h, client } = await setup({}, 64 * KiB + 3000); // only up to 750 bytes go inline
    const a = matrix(40, 40);
    const b = matrix(40, 30, 3);
    let collected = 0;
    h.faults.beforeCall("submitJob", (req) => {
      if (collected > 0) return;
      // As the blob collector does with an upload older than --blob-grace, or whose bytes were a deleted job's.
      const { matmul } = req as { matmul: { a: { blobId: string }; b: { blobId: string } } };
      for (const id of [matmul.a.blobId, matmul.b.blobId])
        if (h.storage.blobs.tombstone(id)) collected += h.storage.blobs.remove(id);
    });
    const job = await client.submitMatMul(a, b);
    expect(collected).toBe((40 * 40 + 40 * 30) * 8);
    expect(callsOf(h, "BeginUpload").length).toBe(4);
    expect(callsOf(h, "SubmitJob").length).toBe(2);
    const c = await job.result({ minIntervalMs: 0 });
    expect(c.data).toEqual(matmul(a.data, b.data, 40, 40, 30));
  });

  it("does not resubmit blob ids the caller passed in: BLOB_NOT_FOUND is theirs to handle", async () => {
    const { h, client } = await setup();
    const a = await client.uploadMatrix(matrix(2, 3));
    const b = await client.uploadMatrix(matrix(3, 2, 5));
    for (const id of [a.blobId, b.blobId]) if (h.storage.blobs.tombstone(id)) h.storage.blobs.remove(id);
    await expect(client.submitMatMul(a, b)).rejects.toMatchObject({ code: Code.NotFound });
    expect(callsOf(h, "SubmitJob").length).toBe(1);
  });

  it("sends small matrices inside SubmitJob, with no upload round trips", async () => {
    const { h, client } = await setup();
    const a = matrix(4, 3);
    const b = matrix(3, 5, 7);
    const job = await client.submitMatMul(a, b);
    expect(callsOf(h, "BeginUpload").length).toBe(0);
    const submit = callsOf(h, "SubmitJob")[0]?.request as { matmul: { a: { inlineData: Uint8Array } } };
    expect(submit.matmul.a.inlineData).toEqual(new Uint8Array(a.data.buffer));
    const c = await job.result({ minIntervalMs: 0 });
    expect(c.data).toEqual(matmul(a.data, b.data, 4, 3, 5));
  });

  it("accepts references from uploadMatrix without uploading again", async () => {
    const { h, client } = await setup();
    const a = await client.uploadMatrix(matrix(2, 3));
    const b = await client.uploadMatrix(matrix(3, 2, 5));
    const before = h.calls.all.length;
    await client.submitMatMul(a, b);
    expect(h.calls.all.slice(before).map((c) => c.method)).toEqual(["submitJob"]);
  });

  it("rejects mismatched inner dimensions locally, with a clear message", async () => {
    const { h, client } = await setup();
    const err = await client.submitMatMul(matrix(3, 4), matrix(5, 2)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DimensionMismatchError);
    expect(err).toBeInstanceOf(InvalidMatrixError);
    expect((err as Error).message).toBe("inner dimensions do not match: A is 3x4, B is 5x2");
    expect(h.calls.all).toEqual([]);
  });

  it.each([
    [{ tileSize: 0 }, /tileSize/],
    [{ tileSize: { rows: 2, cols: 1.5 } }, /tileSize/],
    [{ idempotencyKey: "x".repeat(129) }, /idempotencyKey/],
    [{ timeoutMs: -1 }, /timeoutMs/],
  ])("rejects bad options %o before any RPC", async (options, pattern) => {
    const { h, client } = await setup();
    await expect(client.submitMatMul(matrix(2, 2), matrix(2, 2), options)).rejects.toThrow(pattern);
    expect(h.calls.all).toEqual([]);
  });

  it("throws JobFailedError with jobId, status and cause when the job fails", async () => {
    const { h, client } = await setup({
      script: () => ["start", { fail: "shard 3 exhausted 5 attempts" }],
    });
    const job = await client.submitMatMul(matrix(2, 2), matrix(2, 2));
    const err = await job.result({ minIntervalMs: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobFailedError);
    expect(err).toBeInstanceOf(JobError);
    expect(err).toBeInstanceOf(DceError);
    expect(err).not.toBeInstanceOf(JobCancelledError);
    const failed = err as JobFailedError;
    expect(failed.name).toBe("JobFailedError");
    expect(failed.jobId).toBe(job.id);
    // The reason is the coordinator's, naming the worker's error.
    const reason = (await h.jobs.getJob({ jobId: job.id })).status?.error;
    expect(reason).toMatch(/shard 3 exhausted 5 attempts$/);
    expect(failed.reason).toBe(reason);
    expect(failed.status.state).toBe("failed");
    expect((failed.cause as Error).message).toBe(reason);
    expect(failed.message).toBe(`job ${job.id} failed: ${reason}`);
  });

  it("throws JobCancelledError when the job was cancelled", async () => {
    const { client } = await setup({ script: () => [] });
    const job = await client.submitMatMul(matrix(2, 2), matrix(2, 2));
    const status = await job.cancel({ reason: "user request" });
    expect(status.state).toBe("cancelled");
    expect(status.error).toBe("user request");
    const err = await job.result({ minIntervalMs: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobCancelledError);
    expect((err as JobCancelledError).jobId).toBe(job.id);
    expect((err as JobCancelledError).name).toBe("JobCancelledError");
  });

  it("rejects a result blob whose content does not match its SHA-256 with DataLoss", async () => {
    const { h, client } = await setup();
    const job = await client.submitMatMul(matrix(2, 2), matrix(2, 2));
    await job.result({ minIntervalMs: 0 });
    // The coordinator now serves other bytes under the result's id (inline or read).
    h.faults.rewriteReply("getJob", (reply) => {
      const inline = (reply.result as { inlineData: Uint8Array } | undefined) ?? { inlineData: new Uint8Array(0) };
      if (inline.inlineData.byteLength > 0) inline.inlineData = new Uint8Array(32).fill(7);
    });
    h.faults.rewriteReply("readBlob", (reply) => {
      reply.data = new Uint8Array(32).fill(7);
    });
    const err = await job.result({ minIntervalMs: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.DataLoss);
  });
});

describe("JobHandle", () => {
  it("getJobHandle makes no RPC, and status() converts the wire status", async () => {
    const { h, client } = await setup({ script: () => [] });
    const submitted = await client.submitMatMul(matrix(4, 2), matrix(2, 6));
    const callsBefore = h.calls.all.length;
    const handle = client.getJobHandle(submitted.id);
    expect(handle.id).toBe(submitted.id);
    expect(h.calls.all.length).toBe(callsBefore);

    const s = await handle.status();
    expect(s).toEqual({
      jobId: submitted.id,
      state: "queued",
      shardsTotal: 6,
      shardsDone: 0,
      shardsLeased: 0,
      shardsRetried: 0,
      createdAtMs: START_MS,
      kernel: "auto", // until a worker pins one
      rows: 4,
      cols: 6,
      tileRows: 2,
      tileCols: 2,
      priority: 0,
      version: 1,
      owner: "anonymous", // authentication is off in the in-memory coordinator
    });
    expect("startedAtMs" in s).toBe(false);
    expect("expiresAtMs" in s).toBe(false); // only once the job has finished
    expect(callsOf(h, "GetJob").at(-1)?.request["waitMs"]).toBe(0);
  });

  it("status() of an unknown job surfaces the RPC failure as ConnectError NotFound", async () => {
    const { client } = await setup();
    const err = await client
      .getJobHandle("nope")
      .status()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
  });

  it("progress() yields each new status with rate and ETA and ends at the terminal state", async () => {
    const { h, client } = await setup();
    const job = await client.submitMatMul(matrix(4, 3), matrix(3, 4)); // 2x2 tiles of 2x2: 4 shards
    const seen = [];
    for await (const p of job.progress()) seen.push(p);
    // A small C is sealed with its last tile, in the same commit: nobody sees "running, 4 done".
    expect(seen.map((p) => [p.state, p.shardsDone])).toEqual([
      ["queued", 0],
      ["running", 0],
      ["running", 1],
      ["running", 2],
      ["running", 3],
      ["succeeded", 4],
    ]);
    expect(seen.map((p) => p.version)).toEqual([1, 2, 3, 4, 5, 7]);
    expect(seen.at(-1)?.etaMs).toBe(0);
    // The worker took the shards one step in; the result was sealed when its last tile came, five steps in.
    expect(seen.at(-1)?.startedAtMs).toBe(START_MS + STEP_MS);
    expect(seen.at(-1)?.finishedAtMs).toBe(START_MS + 5 * STEP_MS);
    expect(seen[0]?.rateShardsPerSec).toBeUndefined();
    // Long-polls carry after_version and a deadline longer than the server wait.
    const polls = callsOf(h, "GetJob").filter((c) => (c.request["waitMs"] as number) > 0);
    expect(polls.length).toBe(5);
    expect(polls.map((c) => c.request["afterVersion"])).toEqual([1n, 2n, 3n, 4n, 5n]);
    for (const p of polls) {
      expect(p.request["waitMs"]).toBe(5_000);
      expect(p.timeoutMs).toBeGreaterThan(5_000);
    }
    expect(callsOf(h, "GetJob").length).toBe(6);
  });

  describe("when long-polls return with nothing new", () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it("does not yield the same version twice, and backs off instead of spinning", async () => {
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
      const { h, client } = await setup({
        idleReturns: 3,
        script: () => ["start", [{ complete: 1 }, "seal"]],
      });
      const job = await client.submitMatMul(matrix(2, 2), matrix(2, 2));
      const states: string[] = [];
      const run = (async () => {
        for await (const p of job.progress()) states.push(p.state);
      })();
      // Backoff doubles from 200 ms: 200 + 400 + 800 for the three idle returns.
      await vi.advanceTimersByTimeAsync(199);
      expect(callsOf(h, "GetJob").length).toBe(2);
      await vi.advanceTimersByTimeAsync(1_300);
      await run;
      expect(states).toEqual(["queued", "running", "succeeded"]);
      expect(callsOf(h, "GetJob").length).toBe(6);
    });
  });

  it("progress() with a long minIntervalMs reports the job's end at once, not after the pause", async () => {
    const { h, client } = await setup();
    const job = await client.submitMatMul(matrix(4, 3), matrix(3, 4));
    const startedMs = performance.now();
    const seen = [];
    for await (const p of job.progress({ minIntervalMs: 60_000 })) seen.push(p.state);
    // The pause after "queued" waited for the end only, and the end came during it.
    expect(seen).toEqual(["queued", "succeeded"]);
    expect(performance.now() - startedMs).toBeLessThan(10_000);
    const ends = callsOf(h, "GetJob").filter((c) => c.request["untilTerminal"] === true);
    expect(ends.length).toBe(1);
    expect(ends[0]?.request["waitMs"]).toBeGreaterThan(50_000);
  });

  it("progress() on a finished job yields once and ends", async () => {
    const { client } = await setup();
    const job = await client.submitMatMul(matrix(2, 2), matrix(2, 2));
    await job.result({ minIntervalMs: 0 });
    const states = [];
    for await (const p of client.getJobHandle(job.id).progress()) states.push(p.state);
    expect(states).toEqual(["succeeded"]);
  });

  it("aborting a wait rejects with Canceled and does not cancel the job", async () => {
    const { h, driver, client } = await setup({ script: () => ["start"] });
    const job = await client.submitMatMul(matrix(4, 4), matrix(4, 4));
    const controller = new AbortController();
    const blocked = driver.nextBlockedPoll();
    const waiting = job.result({ signal: controller.signal, minIntervalMs: 0 }).catch((e: unknown) => e);
    await blocked; // the long-poll is now held open by the coordinator
    controller.abort();
    const err = await waiting;
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Canceled);
    expect(callsOf(h, "CancelJob")).toEqual([]);
    expect(h.job(job.id)?.state).toBe("running");
    expect((await job.status()).state).toBe("running");
  });

  it("aborting progress() stops the iteration without cancelling the job", async () => {
    const { h, driver, client } = await setup({ script: () => [] });
    const job = await client.submitMatMul(matrix(2, 2), matrix(2, 2));
    const controller = new AbortController();
    const states: string[] = [];
    const blocked = driver.nextBlockedPoll();
    const run = (async () => {
      for await (const p of job.progress({ signal: controller.signal })) states.push(p.state);
    })().catch((e: unknown) => e);
    await blocked;
    controller.abort();
    const err = await run;
    expect((err as ConnectError).code).toBe(Code.Canceled);
    expect(states).toEqual(["queued"]);
    expect(callsOf(h, "CancelJob")).toEqual([]);
  });

  it("a long-poll wakes when the job changes", async () => {
    const { driver, client } = await setup({ script: () => [] });
    const job = await client.submitMatMul(matrix(2, 2), matrix(2, 2));
    const blocked = driver.nextBlockedPoll();
    const result = job.result({ minIntervalMs: 0 });
    await blocked;
    await driver.push(job.id, "start", { complete: 1 }, "seal");
    const c = await result;
    expect(c.rows).toBe(2);
  });

  it("cancel() of a succeeded job is FailedPrecondition", async () => {
    const { client } = await setup();
    const job = await client.submitMatMul(matrix(2, 2), matrix(2, 2));
    await job.result({ minIntervalMs: 0 });
    const err = await job.cancel().catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.FailedPrecondition);
  });
});

describe("createClient", () => {
  it.each([
    [{ baseUrl: "not a url" }, TypeError],
    [{ baseUrl: "ftp://x" }, TypeError],
    [{ baseUrl: "http://x", ca: "PEM" }, TypeError],
    [{ baseUrl: "https://x", maxMessageBytes: 64 * KiB }, RangeError],
    [{ baseUrl: "https://x", timeoutMs: Number.NaN }, RangeError],
    [{ baseUrl: "https://x", longPollWaitMs: 0 }, RangeError],
  ])("rejects bad options %o", (options, type) => {
    expect(() => createClient(options)).toThrow(type);
  });

  it("builds a real transport for http URLs without connecting (https with a CA: client-ca.test.ts)", () => {
    expect(() => createClient({ baseUrl: "http://127.0.0.1:1" })).not.toThrow();
  });
});
