import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { step } from "@dce/core";
import { JobService, JobState, WorkerService } from "@dce/proto";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Coordinator, type CoordinatorConfig } from "./coordinator.js";
import type { CoordinatorPorts } from "./ports/coordinator-ports.js";
import { resolveConfig } from "./server.js";
import { bytes, submitInline, tileOf } from "./test-support/inline-jobs.js";
import { createMemoryStorage, type MemoryStorage, VirtualClock } from "./testing.js";

// The real Coordinator, its services and the core, with storage in memory and time on a
// virtual clock, driven through Connect's in-memory transport by plain clients.

const LEASE_TTL_MS = 1_000;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Options {
  verify?: boolean;
  storage?: MemoryStorage;
  clock?: VirtualClock;
  onFatal?: CoordinatorPorts["onFatal"];
  step?: CoordinatorPorts["step"];
  verifyRandomWords?: CoordinatorPorts["verifyRandomWords"];
}

async function start(o: Options = {}) {
  const clock = o.clock ?? new VirtualClock(1_000_000);
  let spillDir: string | undefined;
  if (o.verify) {
    const dir = mkdtempSync(join(tmpdir(), "dce-in-memory-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    spillDir = dir;
  }
  const storage = o.storage ?? createMemoryStorage(spillDir === undefined ? {} : { spillDir });
  const resolved = resolveConfig({ dataDir: "unused", leaseTtlMs: LEASE_TTL_MS, localStore: false, verify: o.verify ?? false });
  // Verification on the caller's thread: no worker_threads, so no build output is needed.
  const config: CoordinatorConfig = { ...resolved, verify: { ...resolved.verify, threads: 0 } };
  let ids = 0;
  const coordinator = await Coordinator.open(config, pino({ level: "silent" }), {
    storage,
    clock,
    random: () => 0.5,
    newId: () => `00000000-0000-4000-8000-${String(++ids).padStart(12, "0")}`,
    ...(o.onFatal ? { onFatal: o.onFatal } : {}),
    ...(o.step ? { step: o.step } : {}),
    ...(o.verifyRandomWords ? { verifyRandomWords: o.verifyRandomWords } : {}),
  });
  cleanups.push(() => coordinator.close().catch(() => {}));
  const transport = createRouterTransport((r) => coordinator.routes(r));
  return {
    coordinator,
    clock,
    storage,
    jobs: createClient(JobService, transport),
    workers: createClient(WorkerService, transport),
  };
}
type Started = Awaited<ReturnType<typeof start>>;

/** Lets promise continuations and the in-memory transport run (no virtual time passes). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Submits A (m × k) · B (k × n) inline with square tiles; returns the job and the naive product. */
function submit(s: Started, m: number, k: number, n: number, tile: number, idempotencyKey = "") {
  return submitInline(s.jobs, { m, k, n, tile }, idempotencyKey);
}

async function register(s: Started, name = "w") {
  const { workerId } = await s.workers.registerWorker({
    name,
    kernels: [{ name: "reference", fingerprint: "test/1" }],
    threads: 1,
  });
  return workerId;
}

type Lease = Awaited<ReturnType<Started["workers"]["acquireShards"]>>["leases"][number];

async function complete(s: Started, workerId: string, leases: Lease[], job: { c: Float64Array; n: number }, wrong = false) {
  const res = await s.workers.completeShards({
    workerId,
    results: leases.map((l) => ({
      lease: l.lease,
      payload: { case: "data" as const, value: tileOf(l, job, wrong) },
      computeMs: 1,
    })),
  });
  return res.outcomes.map((o) => o.code);
}

/** Seals results due now (0 ms timers) and returns the job's state and inline C. */
async function finish(s: Started, jobId: string) {
  s.clock.advance(0);
  await settle();
  const { status, result } = await s.jobs.getJob({ jobId, inlineResultMaxBytes: 1 << 20 });
  return { state: status?.state, c: result?.inlineData };
}

describe("the real coordinator in memory, on a virtual clock", () => {
  it("runs a job through the real services: inline A and B, leases, tiles; C is byte-identical to the naive product", async () => {
    const s = await start();
    const job = await submit(s, 6, 5, 7, 4); // 2 x 2 tiles
    const workerId = await register(s);
    const { leases } = await s.workers.acquireShards({ workerId, maxShards: 16, waitMs: 0 });
    expect(leases).toHaveLength(4);
    expect(await complete(s, workerId, leases.slice(0, 3), job)).toEqual([0, 0, 0]);
    expect((await s.jobs.getJob({ jobId: job.jobId })).status).toMatchObject({ state: JobState.RUNNING, shardsDone: 3 });
    expect(await complete(s, workerId, leases.slice(3), job)).toEqual([0]);
    const done = await finish(s, job.jobId);
    expect(done.state).toBe(JobState.SUCCEEDED);
    expect(done.c).toEqual(bytes(job.c));
    // The result is sealed into the memory blob store under its SHA-256.
    const r = await s.jobs.getResult({ jobId: job.jobId });
    expect(s.storage.blobs.read(r.result?.blobId ?? "", 0, 1 << 20).data).toEqual(bytes(job.c));
  });

  it("a lease that is not renewed expires when the virtual clock passes its TTL: the next acquire gets the shard with a higher epoch", async () => {
    const s = await start();
    await submit(s, 4, 4, 4, 4); // one tile
    const first = await register(s, "w1");
    const [granted] = (await s.workers.acquireShards({ workerId: first, maxShards: 1, waitMs: 0 })).leases;
    expect(granted?.lease).toBeDefined();
    const second = await register(s, "w2");
    expect((await s.workers.acquireShards({ workerId: second, maxShards: 1, waitMs: 0 })).leases).toHaveLength(0);

    s.clock.advance(LEASE_TTL_MS - 1);
    await settle();
    expect((await s.workers.acquireShards({ workerId: second, maxShards: 1, waitMs: 0 })).leases).toHaveLength(0);

    s.clock.advance(3 * LEASE_TTL_MS);
    await settle();
    const [again] = (await s.workers.acquireShards({ workerId: second, maxShards: 1, waitMs: 0 })).leases;
    expect(again?.lease?.shardIndex).toBe(granted?.lease?.shardIndex);
    expect(again?.lease?.epoch).toBeGreaterThan(granted?.lease?.epoch ?? Number.POSITIVE_INFINITY);
  });

  it("long-polls wait on the virtual clock: an empty AcquireShards returns once its wait has passed, and a new job wakes one at once", async () => {
    const s = await start();
    const workerId = await register(s);
    let answered = false;
    const empty = s.workers.acquireShards({ workerId, maxShards: 1, waitMs: 2_000 }).then((r) => {
      answered = true;
      return r;
    });
    await settle();
    s.clock.advance(1_999);
    await settle();
    expect(answered).toBe(false);
    s.clock.advance(1);
    expect((await empty).leases).toHaveLength(0);

    const waiting = s.workers.acquireShards({ workerId, maxShards: 1, waitMs: 2_000 });
    await settle();
    await submit(s, 4, 4, 4, 4);
    expect((await waiting).leases).toHaveLength(1);
  });

  it("with verification on, a wrong tile is rejected, the right ones accepted, and the job succeeds with C exact", async () => {
    const s = await start({ verify: true });
    expect(s.coordinator.verifying).toBe(true);
    const job = await submit(s, 6, 5, 7, 4);
    const workerId = await register(s);
    const { leases } = await s.workers.acquireShards({ workerId, maxShards: 16, waitMs: 0 });
    const [bad, ...good] = leases as [Lease, ...Lease[]];
    expect(await complete(s, workerId, [bad], job, true)).not.toEqual([0]);
    expect(await complete(s, workerId, good, job)).toEqual([0, 0, 0]);
    // The rejected shard goes back to the queue (after its retry delay, on the virtual clock).
    const other = await register(s, "w2");
    let again: Lease[] = [];
    for (let i = 0; i < 100 && again.length === 0; i++) {
      s.clock.advance(100);
      await settle();
      again = (await s.workers.acquireShards({ workerId: other, maxShards: 16, waitMs: 0 })).leases;
    }
    expect(again.map((l) => l.lease?.shardIndex)).toEqual([bad.lease?.shardIndex]);
    expect(await complete(s, other, again, job)).toEqual([0]);
    const done = await finish(s, job.jobId);
    expect(done.state).toBe(JobState.SUCCEEDED);
    expect(done.c).toEqual(bytes(job.c));
  });

  it("a coordinator opened again on the same storage recovers what was committed, accepted tiles included", async () => {
    const s = await start();
    const job = await submit(s, 6, 5, 7, 4);
    const workerId = await register(s);
    const { leases } = await s.workers.acquireShards({ workerId, maxShards: 16, waitMs: 0 });
    expect(await complete(s, workerId, leases.slice(0, 2), job)).toEqual([0, 0]);
    // A record appended but never committed is lost with the run (a crash).
    s.storage.journal.hold();
    const lost = s.jobs.submitJob({
      idempotencyKey: "lost",
      matmul: {
        a: { rows: 1, cols: 1, inlineData: bytes(new Float64Array([2])) },
        b: { rows: 1, cols: 1, inlineData: bytes(new Float64Array([3])) },
        kernel: "reference",
      },
    });
    await settle();

    const t = await start({ storage: s.storage, clock: s.clock });
    s.storage.journal.release();
    await expect(lost).rejects.toThrow();
    expect(t.coordinator.recovery).toMatchObject({ jobs: 1, activeJobs: 1 });
    expect((await t.jobs.getJob({ jobId: job.jobId })).status).toMatchObject({ state: JobState.RUNNING, shardsDone: 2 });
    const w = await register(t);
    const rest = (await t.workers.acquireShards({ workerId: w, maxShards: 16, waitMs: 0 })).leases;
    expect(rest).toHaveLength(2);
    expect(await complete(t, w, rest, job)).toEqual([0, 0]);
    const done = await finish(t, job.jobId);
    expect(done.state).toBe(JobState.SUCCEEDED);
    expect(done.c).toEqual(bytes(job.c));
  });

  it("a journal commit that fails answers the waiting call and calls the fatal handler once", async () => {
    const fatal: unknown[] = [];
    const s = await start({ onFatal: (e) => fatal.push(e) });
    await submit(s, 4, 4, 4, 4);
    s.storage.journal.failCommits(new ConnectError("disk full", Code.ResourceExhausted));
    const e = await submit(s, 4, 4, 4, 4, "second").catch((x: unknown) => ConnectError.from(x));
    expect(e).toBeInstanceOf(ConnectError);
    expect((e as ConnectError).code).toBe(Code.ResourceExhausted);
    const again = await s.jobs.cancelJob({ jobId: "nope" }).catch((x: unknown) => ConnectError.from(x));
    expect(again).toBeInstanceOf(ConnectError);
    expect(fatal).toHaveLength(1);
  });

  it("runs the core step and draws the verifier's probes from the ports it was given (the simulation's seams)", async () => {
    const events: string[] = [];
    let words = 0;
    const s = await start({
      verify: true,
      step: (state, event) => {
        events.push(event.type);
        return step(state, event);
      },
      verifyRandomWords: (n) => {
        words += n;
        return Uint32Array.from({ length: n }, (_, i) => i * 2654435761);
      },
    });
    const job = await submit(s, 4, 4, 4, 4);
    const workerId = await register(s);
    const { leases } = await s.workers.acquireShards({ workerId, maxShards: 1, waitMs: 0 });
    expect(await complete(s, workerId, leases, job)).toEqual([0]);
    expect(events).toEqual(expect.arrayContaining(["job-submitted", "worker-registered", "shards-requested", "shard-completed"]));
    expect(words).toBeGreaterThan(0);
  });
});
