import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { BlobService, JobService, JobState, WorkerService } from "@dce/proto";
import pino from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Coordinator } from "./coordinator.js";
import { resolveConfig } from "./server.js";
import { faults } from "./test-support/disk-faults.js";
import { submitInline, tileOf } from "./test-support/inline-jobs.js";

vi.mock("node:fs", async (orig) => (await import("./test-support/disk-faults.js")).faultyFs(await orig()));
vi.mock("node:fs/promises", async (orig) => (await import("./test-support/disk-faults.js")).faultyFsPromises(await orig()));

// A coordinator whose data dir refuses writes, at each place it writes: a tile, the sealed
// C, the journal, a new job's result buffer. No acknowledged job loses data, none is failed
// or marked succeeded because of the disk, and callers learn what happened (a full disk is
// RESOURCE_EXHAUSTED naming the data dir). Real processes on a real full tmpfs:
// test/integration/disk-full.test.ts.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  faults.clear();
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(dataDir?: string) {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), "dce-coord-disk-"));
  if (dataDir === undefined) cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(chunk.toString());
      done();
    },
  });
  // As the bin does (cli.ts): a journal that cannot be written ends the process with code 70.
  const onFatal = () => setTimeout(() => process.exit(70), 200);
  const c = await Coordinator.open(
    resolveConfig({ dataDir: dir, verify: false, minFreeBytes: 0 }),
    pino({ level: "info" }, sink),
    { onFatal },
  );
  cleanups.push(() => c.close().catch(() => {}));
  const t = createRouterTransport((r) => c.routes(r));
  return {
    dir: c.config.dataDir,
    coordinator: c,
    logs,
    jobs: createClient(JobService, t),
    workers: createClient(WorkerService, t),
    blobs: createClient(BlobService, t),
  };
}
type Started = Awaited<ReturnType<typeof start>>;

/** Submits A (m × k) · B (k × n) inline with square tiles of `tile`. */
function submit(s: Started, m: number, k: number, n: number, tile: number, idempotencyKey = "") {
  return submitInline(s.jobs, { m, k, n, tile }, idempotencyKey);
}

/** Registers a worker and takes every lease on offer. */
async function leaseAll(s: Started) {
  const { workerId } = await s.workers.registerWorker({
    name: "w",
    kernels: [{ name: "reference", fingerprint: "test/1" }],
    threads: 1,
  });
  const { leases } = await s.workers.acquireShards({ workerId, maxShards: 64, waitMs: 0 });
  return { workerId, leases };
}

type Lease = Awaited<ReturnType<typeof leaseAll>>["leases"][number];

function complete(s: Started, workerId: string, leases: Lease[], job: { c: Float64Array; n: number }) {
  return s.workers.completeShards({
    workerId,
    results: leases.map((l) => ({ lease: l.lease, payload: { case: "data" as const, value: tileOf(l, job) }, computeMs: 1 })),
  });
}

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("the call succeeded; it was expected to fail");
}

/** Bit-for-bit equality of two results (toEqual walks 2 million elements one by one: seconds on a busy machine). */
function sameBytes(x: Float64Array | undefined, y: Float64Array): boolean {
  return (
    x !== undefined && Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength))
  );
}

/** Waits for the job's end and returns its C as stored by the coordinator. */
async function resultOf(s: Started, jobId: string): Promise<{ state: JobState; c?: Float64Array }> {
  const { status } = await s.jobs.getJob({ jobId, waitMs: 10_000, untilTerminal: true });
  if (status?.state !== JobState.SUCCEEDED) return { state: status?.state ?? JobState.UNSPECIFIED };
  const r = await s.jobs.getResult({ jobId });
  const c = new Uint8Array(Number(r.sizeBytes));
  for (let off = 0; off < c.byteLength; ) {
    const { data } = await s.blobs.readBlob({ blobId: r.result?.blobId ?? "", offset: BigInt(off), maxBytes: 0 });
    c.set(data, off);
    off += data.byteLength;
  }
  return { state: status.state, c: new Float64Array(c.buffer) };
}

describe("coordinator on a full or failing data dir", () => {
  it.each([
    ["a small C (assembled in memory)", 8, 6, 8, 4],
    ["a C over the in-memory limit (tiles written straight to its file)", 1500, 2, 1500, 750],
  ])(
    "%s: a tile the disk refuses is not accepted: RESOURCE_EXHAUSTED, the lease stays, and the retry once space is back completes C exactly",
    async (_label, m, k, n, tile) => {
      const exit = vi.spyOn(process, "exit").mockImplementation(() => undefined as never);
      const s = await start();
      const job = await submit(s, m, k, n, tile); // 2 x 2 tiles
      const { workerId, leases } = await leaseAll(s);
      expect(leases).toHaveLength(4);
      await complete(s, workerId, leases.slice(0, 1), job);

      faults.arm({ op: "write", path: /results\//, code: "ENOSPC" });
      const e = await failure(complete(s, workerId, leases.slice(1, 3), job));
      expect(e.code).toBe(Code.ResourceExhausted);
      expect(e.rawMessage).toMatch(
        new RegExp(`^data dir ${s.dir} is full \\(ENOSPC\\) while writing (tiles|a tile) of job ${job.jobId}`),
      );
      const { status } = await s.jobs.getJob({ jobId: job.jobId });
      expect(status).toMatchObject({ state: JobState.RUNNING, shardsDone: 1, shardsLeased: 3 });
      expect(s.logs.some((l) => l.includes("tiles refused by the disk; the worker retries"))).toBe(true);

      faults.clear();
      for (const l of leases.slice(1)) expect((await complete(s, workerId, [l], job)).outcomes[0]?.code).toBe(0);
      const r = await resultOf(s, job.jobId);
      expect(r.state).toBe(JobState.SUCCEEDED);
      expect(sameBytes(r.c, job.c)).toBe(true);
      expect(exit).not.toHaveBeenCalled();
    },
  );

  // A small C is stored through the journal's data frames (its file renamed into place), a
  // larger one linked from its buffer: each way, a refused seal is tried again.
  it.each([
    { what: "a small C (journal frame)", m: 6, n: 6, tile: 8, op: "rename" as const },
    { what: "a C over 256 KiB (linked)", m: 184, n: 184, tile: 184, op: "link" as const },
  ])(
    "$what that cannot be sealed leaves the job running (not failed) and is sealed again once the disk allows",
    async ({ m, n, tile, op }) => {
      const s = await start();
      const job = await submit(s, m, 5, n, tile); // one tile
      const { workerId, leases } = await leaseAll(s);
      faults.arm({ op, path: /blobs\//, code: "ENOSPC", times: 1 });
      await complete(s, workerId, leases, job);
      await vi.waitFor(() => expect(faults.hits).toBe(1));
      const { status } = await s.jobs.getJob({ jobId: job.jobId });
      expect(status?.state).toBe(JobState.RUNNING);
      const r = await resultOf(s, job.jobId); // the retry is due 1 s later
      expect(r.state).toBe(JobState.SUCCEEDED);
      expect(sameBytes(r.c, job.c)).toBe(true);
      const line = s.logs.find((l) => l.includes("result could not be sealed; trying again"));
      expect(line).toContain(`data dir ${s.dir} is full (ENOSPC) while storing the result of job ${job.jobId}`);
    },
  );

  it("a journal write the disk refuses: the waiting call gets RESOURCE_EXHAUSTED, the coordinator exits 70, and a restart has every acknowledged job and nothing of the failed one", async () => {
    const exit = vi.spyOn(process, "exit").mockImplementation(() => undefined as never);
    const s = await start();
    const kept = await submit(s, 4, 4, 4, 4);
    // The disk fills in the middle of the next commit: part of it reaches the file.
    faults.arm({ op: "write", path: /journal\/wal-/, code: "ENOSPC", partialBytes: 10 });
    const e = await failure(submit(s, 4, 4, 4, 4, "lost"));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.rawMessage).toMatch(
      new RegExp(
        `^data dir ${s.dir} is full \\(ENOSPC\\) while writing the journal \\(wal-\\d+\\.log\\), so nothing of this request was saved and the coordinator restarts`,
      ),
    );
    await vi.waitFor(() => expect(exit).toHaveBeenCalledWith(70));
    // Nothing more is acknowledged after it.
    expect((await failure(s.jobs.cancelJob({ jobId: kept.jobId }))).code).toBe(Code.ResourceExhausted);
    await s.coordinator.close().catch(() => {});

    faults.clear();
    const again = await start(s.dir);
    expect(again.coordinator.recovery).toMatchObject({ jobs: 1, truncatedBytes: 0 });
    expect((await again.jobs.getJob({ jobId: kept.jobId })).status?.state).toBe(JobState.QUEUED);
    const retried = await submit(again, 4, 4, 4, 4, "lost");
    expect(retried.jobId).not.toBe(kept.jobId);
  });

  it("a new job whose C does not fit is refused up front; a retry of a submitted one is still answered", async () => {
    const s = await start();
    const first = await submit(s, 4, 4, 4, 4, "key-1");
    faults.freeBytes = 5 << 20; // under the 4 MiB reserve + a 2 MiB C
    const e = await failure(submit(s, 512, 4, 512, 256));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.rawMessage).toMatch(
      new RegExp(
        `^data dir ${s.dir} has 5\\.0 MiB free \\(of .*\\), .* promised to running jobs and uploads: a new job's result \\(512x512\\) \\(2\\.0 MiB\\) would leave less than --min-free-bytes 4\\.0 MiB`,
      ),
    );
    expect((await submit(s, 4, 4, 4, 4, "key-1")).jobId).toBe(first.jobId);
  });

  it("a result buffer the disk refuses at submit: the job is acknowledged and its first tile makes the buffer", async () => {
    const s = await start();
    faults.arm({ op: "open", path: /results\/.*\.f64$/, code: "ENOSPC", times: 1 });
    const job = await submit(s, 6, 5, 6, 3);
    expect(faults.hits).toBe(1);
    const { workerId, leases } = await leaseAll(s);
    await complete(s, workerId, leases, job);
    const r = await resultOf(s, job.jobId);
    expect(r.state).toBe(JobState.SUCCEEDED);
    expect(sameBytes(r.c, job.c)).toBe(true);
  });
});
