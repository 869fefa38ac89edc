import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { JobService, JobState, WorkerService } from "@dce/proto";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Coordinator } from "../coordinator.js";
import { resolveConfig } from "../server.js";
import { submitInline, tileOf } from "../test-support/inline-jobs.js";
import { VirtualClock } from "../testing.js";

// When a job's C is sealed: a small one in the step that accepts its last tile, so its
// success record shares that tile's group commit; a large one on a 0 ms timer, after the
// reply (it reads the whole buffer). On the disk journal, with a virtual clock that fires
// no timer unless advanced; `commits` lists how many records each group commit wrote.

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start() {
  const clock = new VirtualClock(1_000_000);
  const dataDir = mkdtempSync(join(tmpdir(), "dce-finalizer-"));
  const commits: number[] = [];
  const config = {
    ...resolveConfig({ dataDir, leaseTtlMs: 60_000, localStore: false, verify: false, minFreeBytes: 0 }),
    onJournalCommit: (_ms: number, records: number) => commits.push(records),
  };
  const coordinator = await Coordinator.open(config, pino({ level: "silent" }), { clock, random: () => 0.5 });
  cleanups.push(async () => {
    await coordinator.close().catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
  });
  const transport = createRouterTransport((r) => coordinator.routes(r));
  return { clock, commits, jobs: createClient(JobService, transport), workers: createClient(WorkerService, transport) };
}

/** Submits a one-tile job, leases it and reports its exact tile; returns the job's state right after the reply. */
async function runOneTile(s: Awaited<ReturnType<typeof start>>, m: number, k: number, n: number) {
  const job = await submitInline(s.jobs, { m, k, n, tile: Math.max(m, n) });
  const { workerId } = await s.workers.registerWorker({
    name: "w",
    kernels: [{ name: "reference", fingerprint: "t/1" }],
    threads: 1,
  });
  const { leases } = await s.workers.acquireShards({ workerId, maxShards: 1, waitMs: 0 });
  expect(leases).toHaveLength(1);
  const [lease] = leases;
  if (lease === undefined) throw new Error("no lease");
  const res = await s.workers.completeShards({
    workerId,
    results: [{ lease: lease.lease, payload: { case: "data", value: tileOf(lease, job) }, computeMs: 1 }],
  });
  expect(res.outcomes[0]?.code).toBe(0);
  // The reply waited for the commit that made the acceptance durable: the last one so far.
  const lastCommitRecords = s.commits.at(-1);
  return { jobId: job.jobId, state: (await s.jobs.getJob({ jobId: job.jobId })).status?.state, lastCommitRecords };
}

describe("ResultFinalizer", () => {
  it("a small C is sealed with its last tile: one group commit holds the acceptance and the success", async () => {
    const s = await start();
    const { state, lastCommitRecords } = await runOneTile(s, 16, 8, 16);
    // Succeeded when CompleteShards answered, with no timer fired: shard-accepted and
    // job-succeeded went to disk in one write and one fdatasync.
    expect(state).toBe(JobState.SUCCEEDED);
    expect(lastCommitRecords).toBe(2);
  });

  it("a C over 1 MiB is sealed on a timer after the reply, in a later commit", async () => {
    const s = await start();
    const { jobId, state, lastCommitRecords } = await runOneTile(s, 363, 1, 363); // C is 1,054,152 bytes
    expect(state).toBe(JobState.RUNNING);
    expect(lastCommitRecords).toBe(1);
    s.clock.advance(0);
    const { status } = await s.jobs.getJob({ jobId, waitMs: 1_000, untilTerminal: true });
    expect(status?.state).toBe(JobState.SUCCEEDED);
  });
});
