import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { ErrorReason, JobService, type LeaseRef, type ShardLease, WorkerService } from "@dce/proto";
import { stagedTileName } from "@dce/runtime/blob-layout";
import pino from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Coordinator } from "./coordinator.js";
import { createMemoryStorage } from "./memory/memory-storage.js";
import { VirtualClock } from "./ports/virtual-clock.js";
import { resolveConfig } from "./server.js";
import { bytes, type InlineJob, submitInline, tileOf } from "./test-support/inline-jobs.js";

// Result tiles that workers stage as files in the local store (ShardResult.staged), through
// a coordinator's services: fencing covers these bytes (a zombie's late file never reaches
// C, a file rewritten after its report was read changes nothing), and the staging folder
// leaks nothing (emptied at start, swept of ended jobs' files and of old ones).

const LEASE_TTL_MS = 1_000;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(opts: { before?: (stagingDir: string) => void; localStore?: boolean; stagingDir?: string } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "dce-staged-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const stagingDir = opts.stagingDir ?? join(dir, "staging");
  opts.before?.(stagingDir);
  const storage = { ...createMemoryStorage(), stagingDir };
  const clock = new VirtualClock(1_000_000);
  const config = resolveConfig({
    dataDir: "memory",
    leaseTtlMs: LEASE_TTL_MS,
    localStore: opts.localStore ?? true,
    verify: false,
    fsync: false,
  });
  const c = await Coordinator.open(config, pino({ level: "silent" }), { storage, clock });
  cleanups.push(() => c.close());
  const t = createRouterTransport((r) => c.routes(r));
  const jobs = createClient(JobService, t);
  const workers = createClient(WorkerService, t);
  const register = async (name: string) => {
    const res = await workers.registerWorker({ name, kernels: [{ name: "reference", fingerprint: "test/1" }], threads: 1 });
    return res;
  };
  /** Writes `data` into the staging file of `lease`, as a worker does. */
  const stage = (lease: LeaseRef | undefined, data: Uint8Array) => {
    const name = lease === undefined ? undefined : stagedTileName(lease);
    if (name === undefined) throw new Error("no lease");
    const path = join(stagingDir, name);
    writeFileSync(path, data);
    return path;
  };
  const report = async (workerId: string, lease: LeaseRef | undefined, sizeBytes: number) => {
    const res = await workers.completeShards({
      workerId,
      results: [{ lease, payload: { case: "staged", value: { sizeBytes: BigInt(sizeBytes) } }, computeMs: 1 }],
    });
    const o = res.outcomes[0];
    if (o === undefined) throw new Error("no outcome");
    return { code: o.code, reason: o.error?.reason, message: o.message };
  };
  /** C of a finished job, as stored. */
  const result = async (jobId: string) => {
    const r = await vi.waitFor(() => jobs.getResult({ jobId }));
    const blobId = r.result?.blobId ?? "";
    return new Float64Array(storage.blobs.read(blobId, 0, Number(r.sizeBytes)).data.slice().buffer);
  };
  return { c, clock, storage, jobs, workers, stagingDir, register, stage, report, result };
}

type Started = Awaited<ReturnType<typeof start>>;

/** A one-tile job and a lease of it held by a new worker. */
async function oneTile(s: Started, name = "w1"): Promise<{ job: InlineJob; workerId: string; lease: ShardLease }> {
  const job = await submitInline(s.jobs, { m: 4, k: 3, n: 4, tile: 4 });
  const { workerId } = await s.register(name);
  const { leases } = await s.workers.acquireShards({ workerId, maxShards: 1, waitMs: 0 });
  const lease = leases[0];
  if (lease === undefined) throw new Error("no lease granted");
  return { job, workerId, lease };
}

/** A tile of the right size whose every value is `x` (verification is off here). */
const filled = (lease: ShardLease, job: InlineJob, x: number) => {
  const t = tileOf(lease, job);
  return bytes(new Float64Array(t.byteLength / 8).fill(x));
};

describe("staged result tiles", () => {
  it("RegisterWorker says the coordinator takes staged tiles only while the local store is on", async () => {
    const on = await start();
    expect((await on.register("w")).localStore?.acceptsStagedTiles).toBe(true);
    const off = await start({ localStore: false });
    expect((await off.register("w")).localStore).toBeUndefined();
  });

  it("accepts a staged tile: C holds the file's bytes and the file is gone", async () => {
    const s = await start();
    const { job, workerId, lease } = await oneTile(s);
    const tile = tileOf(lease, job);
    const path = s.stage(lease.lease, tile);
    expect(await s.report(workerId, lease.lease, tile.byteLength)).toMatchObject({ code: 0 });
    expect(existsSync(path)).toBe(false);
    expect(await s.result(job.jobId)).toEqual(job.c);
  });

  it("a zombie whose lease expired writes its staged file late: ABORTED, its file deleted, C holds the accepted bytes", async () => {
    const s = await start();
    const { job, workerId: zombie, lease: old } = await oneTile(s, "zombie");
    // The zombie stalls past its TTL; the shard is granted again, to another worker.
    s.clock.advance(LEASE_TTL_MS + 500);
    const { workerId } = await s.register("w2");
    const { leases } = await s.workers.acquireShards({ workerId, maxShards: 1, waitMs: 0 });
    const current = leases[0];
    if (current === undefined) throw new Error("the shard was not granted again");
    expect(current.lease?.epoch).toBeGreaterThan(old.lease?.epoch ?? 0n);
    const good = tileOf(current, job);
    s.stage(current.lease, good);
    expect(await s.report(workerId, current.lease, good.byteLength)).toMatchObject({ code: 0 });
    // Now the zombie wakes up, writes its (different) bytes and reports them.
    const late = s.stage(old.lease, filled(old, job, 7));
    expect(await s.report(zombie, old.lease, good.byteLength)).toMatchObject({ code: Code.Aborted });
    await vi.waitFor(() => expect(existsSync(late)).toBe(false));
    expect(await s.result(job.jobId)).toEqual(job.c);
  });

  it("a zombie's late file is refused before it is read, even while the shard has no other holder", async () => {
    const s = await start();
    const { job, workerId, lease } = await oneTile(s);
    s.clock.advance(LEASE_TTL_MS + 500); // expired, not granted again
    // A file the coordinator would refuse if it looked at it (it holds one value too few):
    // ABORTED, not INVALID_ARGUMENT, says the lease was checked before the file was touched.
    const tile = tileOf(lease, job);
    const path = s.stage(lease.lease, tile.subarray(8));
    const out = await s.report(workerId, lease.lease, tile.byteLength);
    expect(out).toMatchObject({ code: Code.Aborted, reason: ErrorReason.LEASE_LOST });
    await vi.waitFor(() => expect(existsSync(path)).toBe(false));
  });

  it("a file rewritten after its report was read cannot change C", async () => {
    const s = await start();
    const { job, workerId, lease } = await oneTile(s);
    const tile = tileOf(lease, job);
    const path = s.stage(lease.lease, tile);
    // The report is read and waits for its group commit (a slow fsync): the worker rewrites
    // the file meanwhile, under the same name.
    s.storage.journal.hold();
    const pending = s.report(workerId, lease.lease, tile.byteLength);
    await vi.waitFor(() => expect(s.storage.journal.heldCommits).toBeGreaterThan(0));
    expect(existsSync(path)).toBe(false);
    writeFileSync(path, filled(lease, job, 9));
    s.storage.journal.release();
    expect(await pending).toMatchObject({ code: 0 });
    // And reported again: the lease's result was accepted; the new file is not read, only deleted.
    expect(await s.report(workerId, lease.lease, tile.byteLength)).toMatchObject({ code: Code.AlreadyExists });
    await vi.waitFor(() => expect(existsSync(path)).toBe(false));
    expect(await s.result(job.jobId)).toEqual(job.c);
  });

  it("a staged tile of the wrong size is INVALID_ARGUMENT and deleted; a missing one is NOT_FOUND, STAGED_TILE_NOT_FOUND", async () => {
    const s = await start();
    const { job, workerId, lease } = await oneTile(s);
    const tile = tileOf(lease, job);
    expect(await s.report(workerId, lease.lease, tile.byteLength)).toMatchObject({
      code: Code.NotFound,
      reason: ErrorReason.STAGED_TILE_NOT_FOUND,
    });
    // Declared size wrong.
    const p1 = s.stage(lease.lease, tile);
    expect(await s.report(workerId, lease.lease, tile.byteLength + 8)).toMatchObject({
      code: Code.InvalidArgument,
      reason: ErrorReason.INVALID_RESULT,
    });
    await vi.waitFor(() => expect(existsSync(p1)).toBe(false));
    // File shorter than declared.
    const p2 = s.stage(lease.lease, tile.subarray(0, tile.byteLength - 8));
    expect(await s.report(workerId, lease.lease, tile.byteLength)).toMatchObject({
      code: Code.InvalidArgument,
      reason: ErrorReason.INVALID_RESULT,
    });
    expect(existsSync(p2)).toBe(false);
    // The lease still holds: the right tile is accepted.
    s.stage(lease.lease, tile);
    expect(await s.report(workerId, lease.lease, tile.byteLength)).toMatchObject({ code: 0 });
    expect(await s.result(job.jobId)).toEqual(job.c);
  });

  it("a coordinator with the local store off answers a staged report FAILED_PRECONDITION, LOCAL_STORE_OFF", async () => {
    const s = await start({ localStore: false });
    const { job, workerId, lease } = await oneTile(s);
    expect(await s.report(workerId, lease.lease, tileOf(lease, job).byteLength)).toMatchObject({
      code: Code.FailedPrecondition,
      reason: ErrorReason.LOCAL_STORE_OFF,
    });
  });

  it("a staging folder it cannot make leaves staging off: RegisterWorker does not offer it, a staged report is refused", async () => {
    const parent = mkdtempSync(join(tmpdir(), "dce-staged-file-"));
    cleanups.push(() => rmSync(parent, { recursive: true, force: true }));
    writeFileSync(join(parent, "data"), ""); // a file where the data dir should be: mkdir fails (ENOTDIR)
    const s = await start({ stagingDir: join(parent, "data", "staging") });
    expect((await s.register("w")).localStore?.acceptsStagedTiles).toBe(false);
    const { job, workerId, lease } = await oneTile(s);
    expect(await s.report(workerId, lease.lease, tileOf(lease, job).byteLength)).toMatchObject({
      code: Code.FailedPrecondition,
      reason: ErrorReason.LOCAL_STORE_OFF,
    });
  });

  it("empties the staging folder when it starts", async () => {
    const s = await start({
      before: (dir) => {
        mkdirSync(dir, { recursive: true });
        writeFileSync(join(dir, "job.0.5.f64"), new Uint8Array(8));
        writeFileSync(join(dir, "leftover.tmp"), new Uint8Array(8));
      },
    });
    expect(readdirSync(s.stagingDir)).toEqual([]);
  });

  it("sweeps files of ended jobs, files older than twice the lease TTL and stray names; keeps a running lease's fresh file", async () => {
    const s = await start();
    const { job, workerId, lease } = await oneTile(s);
    const ended = await submitInline(s.jobs, { m: 2, k: 2, n: 2, tile: 2 });
    await s.jobs.cancelJob({ jobId: ended.jobId, reason: "test" });
    const fresh = s.stage(lease.lease, tileOf(lease, job));
    const ofEnded = s.stage({ jobId: ended.jobId, shardIndex: 0, epoch: 99n } as LeaseRef, new Uint8Array(32));
    const stray = join(s.stagingDir, "not-a-lease.tmp");
    writeFileSync(stray, new Uint8Array(8));
    const old = s.stage({ jobId: job.jobId, shardIndex: 0, epoch: 1_000n } as LeaseRef, new Uint8Array(32));
    const longAgo = (Date.now() - 3 * LEASE_TTL_MS) / 1000;
    utimesSync(old, longAgo, longAgo);
    // One sweep, after a TTL; the lease is renewed on the way.
    s.clock.advance(600);
    await s.workers.heartbeat({ workerId, leases: [lease.lease as LeaseRef] });
    s.clock.advance(LEASE_TTL_MS - 600);
    await vi.waitFor(() => expect(readdirSync(s.stagingDir).sort()).toEqual([stagedTileName(lease.lease as LeaseRef)]));
    expect(existsSync(ofEnded) || existsSync(stray) || existsSync(old)).toBe(false);
    // The file that stayed is still taken by its report.
    expect(await s.report(workerId, lease.lease, tileOf(lease, job).byteLength)).toMatchObject({ code: 0 });
    expect(existsSync(fresh)).toBe(false);
  });
});
