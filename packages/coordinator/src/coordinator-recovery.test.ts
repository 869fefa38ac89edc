import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { JobService, JobState, WorkerService } from "@dce/proto";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Coordinator } from "./coordinator.js";
import { resolveConfig } from "./server.js";

// Recovery when an active job's result buffer is gone after a restart: the core's
// `result-buffer-lost` event makes its accepted tiles run again, and journals that, so a
// second restart (which finds the new, empty buffer) does not take them as written.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function open(dir: string) {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(chunk.toString());
      done();
    },
  });
  const c = await Coordinator.open(resolveConfig({ dataDir: dir, verify: false }), pino({ level: "info" }, sink));
  cleanups.push(() => c.close().catch(() => {}));
  const t = createRouterTransport((r) => c.routes(r));
  return { coordinator: c, logs, jobs: createClient(JobService, t), workers: createClient(WorkerService, t) };
}
type Opened = Awaited<ReturnType<typeof open>>;

/** A 4 × 4 C of small integers in 2 × 2 tiles (4 shards); the worker returns the right tiles. */
const M = 4;
const A = Float64Array.from({ length: M * M }, (_, i) => (i % 5) - 2);
const B = Float64Array.from({ length: M * M }, (_, i) => (i % 3) - 1);
const bytes = (m: Float64Array) => new Uint8Array(m.buffer, m.byteOffset, m.byteLength);
function tile(rowStart: number, rowEnd: number, colStart: number, colEnd: number): Uint8Array {
  const out: number[] = [];
  for (let i = rowStart; i < rowEnd; i++)
    for (let j = colStart; j < colEnd; j++) {
      let sum = 0;
      for (let x = 0; x < M; x++) sum += (A[i * M + x] as number) * (B[x * M + j] as number);
      out.push(sum);
    }
  return bytes(Float64Array.from(out));
}

/** Submits A·B (inputs inline, 2 × 2 tiles); returns the job id. */
async function submitSmall(s: Opened): Promise<string> {
  const { jobId } = await s.jobs.submitJob({
    matmul: {
      a: { rows: M, cols: M, inlineData: bytes(A) },
      b: { rows: M, cols: M, inlineData: bytes(B) },
      tileRows: 2,
      tileCols: 2,
      kernel: "reference",
    },
  });
  return jobId;
}

/** Registers a worker, leases every shard on offer and completes the first `count`. */
async function completeSome(s: Opened, count: number): Promise<number> {
  const { workerId } = await s.workers.registerWorker({
    name: "w",
    kernels: [{ name: "reference", fingerprint: "t/1" }],
    threads: 1,
  });
  const { leases } = await s.workers.acquireShards({ workerId, maxShards: 64, waitMs: 0 });
  const results = leases.slice(0, count).map((l) => {
    const t = l.matmul;
    if (!t) throw new Error("lease without a task");
    return {
      lease: l.lease,
      payload: { case: "data" as const, value: tile(t.rowStart, t.rowEnd, t.colStart, t.colEnd) },
      computeMs: 1,
    };
  });
  const r = await s.workers.completeShards({ workerId, results });
  expect(r.outcomes.map((o) => o.code)).toEqual(results.map(() => 0));
  return leases.length;
}

describe("coordinator recovery of a lost result buffer", () => {
  it("recomputes the accepted tiles, and a second restart does not count them again", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dce-coord-recovery-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const first = await open(dir);
    const jobId = await submitSmall(first);
    expect(await completeSome(first, 2)).toBe(4);
    await first.coordinator.close();

    rmSync(join(dir, "results", `${jobId}.f64`));
    const second = await open(dir);
    expect(second.logs.some((l) => l.includes("result buffer missing after restart; recomputing its tiles"))).toBe(true);
    expect((await second.jobs.getJob({ jobId })).status).toMatchObject({ state: JobState.RUNNING, shardsDone: 0 });
    await second.coordinator.close();

    const third = await open(dir);
    expect(third.logs.some((l) => l.includes("result buffer missing"))).toBe(false);
    expect((await third.jobs.getJob({ jobId })).status).toMatchObject({ shardsDone: 0 });
    expect(await completeSome(third, 4)).toBe(4);
    const { status } = await third.jobs.getJob({ jobId, waitMs: 10_000, untilTerminal: true });
    expect(status?.state).toBe(JobState.SUCCEEDED);
  });

  it("brings back from the journal the input and result files of a small job that a crash took", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dce-coord-recovery-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const first = await open(dir);
    const jobId = await submitSmall(first);
    await completeSome(first, 4);
    const done = await first.jobs.getJob({ jobId, waitMs: 10_000, untilTerminal: true, inlineResultMaxBytes: 1024 });
    expect(done.status?.state).toBe(JobState.SUCCEEDED);
    const c = done.result?.inlineData as Uint8Array;
    const { result } = await first.jobs.getResult({ jobId });
    await first.coordinator.close();
    // A power cut: none of the three blob files reached the disk (each was made durable only
    // by its data frame in the journal's commit).
    const blobIds = [result?.blobId as string];
    for (const l of readdirSync(join(dir, "blobs"))) for (const f of readdirSync(join(dir, "blobs", l))) blobIds.push(f);
    const files = [...new Set(blobIds)].map((id) => join(dir, "blobs", id.slice(0, 2), id));
    expect(files.length).toBe(3);
    for (const f of files) rmSync(f);
    const second = await open(dir);
    expect(second.logs.some((l) => l.includes("rewrote inline matrices from the journal after a crash"))).toBe(true);
    for (const f of files) expect(existsSync(f)).toBe(true);
    const again = await second.jobs.getJob({ jobId, inlineResultMaxBytes: 1024 });
    expect(again.status?.state).toBe(JobState.SUCCEEDED);
    expect(Buffer.from(again.result?.inlineData as Uint8Array).equals(Buffer.from(c))).toBe(true);
    expect(Buffer.from(c).equals(Buffer.from(tileAll()))).toBe(true);
  });
});

/** All of C, row-major. */
function tileAll(): Uint8Array {
  return tile(0, M, 0, M);
}
