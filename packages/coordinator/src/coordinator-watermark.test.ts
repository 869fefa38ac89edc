import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { BlobService, ErrorReason, JobService, JobState, WorkerService } from "@dce/proto";
import { errorReasonOf as errorReason } from "@dce/runtime/error-info";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { ALL_ROLES } from "./access.js";
import { principalKey } from "./auth.js";
import { Coordinator } from "./coordinator.js";
import { resolveConfig } from "./server.js";
import { submitInline, tileOf } from "./test-support/inline-jobs.js";

// The --min-free-bytes watermark, on a real data dir whose free space the test decides
// (the statfs port): below it, new uploads and submits are refused with RESOURCE_EXHAUSTED
// naming the data dir and its free bytes, while a running job still gets its tiles
// accepted and its C sealed.

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Makes every call act as a worker with a certificate (no client token). */
const asWorker: Interceptor = (next) => (req) => {
  req.contextValues.set(principalKey, { roles: new Set(ALL_ROLES), workerIdentity: "w-1" });
  return next(req);
};

async function start(minFreeBytes?: number) {
  const dir = mkdtempSync(join(tmpdir(), "dce-watermark-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const disk = { freeBytes: 100 * GiB, totalBytes: 200 * GiB };
  const c = await Coordinator.open(
    resolveConfig({ dataDir: dir, verify: false, ...(minFreeBytes !== undefined ? { minFreeBytes } : {}) }),
    pino({ level: "silent" }),
    { statfs: () => ({ ...disk }) },
  );
  cleanups.push(() => c.close());
  const client = createRouterTransport((r) => c.routes(r));
  const worker = createRouterTransport((r) => c.routes(r), { router: { interceptors: [asWorker] } });
  return {
    dir: c.config.dataDir,
    coordinator: c,
    disk,
    jobs: createClient(JobService, client),
    blobs: createClient(BlobService, client),
    workers: createClient(WorkerService, worker),
    workerBlobs: createClient(BlobService, worker),
  };
}

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("the call succeeded; it was expected to fail");
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("the --min-free-bytes watermark", () => {
  it("defaults to the larger of 1 GiB and 5% of the file system", async () => {
    const s = await start();
    expect(s.coordinator.gc.stats()).toMatchObject({ freeBytes: 100 * GiB, totalBytes: 200 * GiB, minFreeBytes: 10 * GiB });
    s.disk.totalBytes = 4 * GiB;
    expect(s.coordinator.gc.stats().minFreeBytes).toBe(GiB);
  });

  it("below it, a client's upload and submit get RESOURCE_EXHAUSTED naming the data dir, while a running job finishes", async () => {
    const s = await start(2 * GiB);
    const job = await submitInline(s.jobs, { m: 8, k: 4, n: 8, tile: 4 });
    const { workerId } = await s.workers.registerWorker({
      name: "w",
      kernels: [{ name: "reference", fingerprint: "test/1" }],
      threads: 1,
    });
    const { leases } = await s.workers.acquireShards({ workerId, maxShards: 64, waitMs: 0 });
    expect(leases).toHaveLength(4);

    s.disk.freeBytes = 2 * GiB - 1; // clients filled the disk down past the watermark
    const data = new Uint8Array(4096).fill(3);
    const up = await failure(s.blobs.beginUpload({ sizeBytes: 4096n, sha256: sha(data) }));
    expect(up.code).toBe(Code.ResourceExhausted);
    expect(errorReason(up)).toBe(ErrorReason.DATA_DIR_FULL);
    expect(up.rawMessage).toContain(`data dir ${s.dir} has 2.0 GiB free (of 200.0 GiB)`);
    expect(up.rawMessage).toContain("would leave less than --min-free-bytes 2.0 GiB");
    const sub = await failure(submitInline(s.jobs, { m: 2, k: 2, n: 2, tile: 2 }));
    expect(sub.code).toBe(Code.ResourceExhausted);
    expect(errorReason(sub)).toBe(ErrorReason.DATA_DIR_FULL);
    expect(sub.rawMessage).toMatch(new RegExp(`^data dir ${s.dir} has 2\\.0 GiB free`));

    // The running job's worker still uploads a tile and reports; the job succeeds.
    const [first, ...rest] = leases;
    if (!first) throw new Error("no lease");
    const tile = tileOf(first, job);
    const begun = await s.workerBlobs.beginUpload({ sizeBytes: BigInt(tile.byteLength), sha256: sha(tile) });
    await s.workerBlobs.uploadChunk({ uploadId: begun.uploadId, offset: 0n, data: tile });
    const { blobId } = await s.workerBlobs.finishUpload({ uploadId: begun.uploadId });
    const results = [
      { lease: first.lease, payload: { case: "blobId" as const, value: blobId }, computeMs: 1 },
      ...rest.map((l) => ({ lease: l.lease, payload: { case: "data" as const, value: tileOf(l, job) }, computeMs: 1 })),
    ];
    const done = await s.workers.completeShards({ workerId, results });
    expect(done.outcomes.map((o) => o.code)).toEqual([0, 0, 0, 0]);
    const { status } = await s.jobs.getJob({ jobId: job.jobId, waitMs: 10_000, untilTerminal: true });
    expect(status?.state).toBe(JobState.SUCCEEDED);

    // Above the watermark again, clients are served.
    s.disk.freeBytes = 3 * GiB;
    expect((await s.blobs.beginUpload({ sizeBytes: 4096n, sha256: sha(data) })).uploadId).not.toBe("");
    expect((await submitInline(s.jobs, { m: 2, k: 2, n: 2, tile: 2 })).jobId).not.toBe("");
  });

  it("counts the space promised to running jobs' results against it", async () => {
    const s = await start(GiB);
    s.disk.freeBytes = GiB + (4 << 20);
    // A 1024×512 C (4 MiB) is promised to its job once admitted: nothing more fits.
    await submitInline(s.jobs, { m: 1024, k: 1, n: 512, tile: 256 });
    const e = await failure(submitInline(s.jobs, { m: 2, k: 2, n: 2, tile: 2 }));
    expect(e.code).toBe(Code.ResourceExhausted);
    expect(e.rawMessage).toContain("4.0 MiB of it promised to running jobs and uploads");
  });
});
