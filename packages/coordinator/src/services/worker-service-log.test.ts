import { Writable } from "node:stream";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { JobService, WorkerService } from "@dce/proto";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Coordinator, type CoordinatorConfig } from "../coordinator.js";
import type { Clock } from "../ports/clock.js";
import { VirtualClock } from "../ports/virtual-clock.js";
import { resolveConfig } from "../server.js";
import { submitInline, tileOf } from "../test-support/inline-jobs.js";
import { createMemoryStorage } from "../testing.js";

// The debug lines of CompleteShards that `pnpm bench --trace` reads to place a job's
// verification on its timeline.

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A clock that moves 5 ms forward at every reading (timers run on a virtual clock underneath). */
class SteppingClock implements Clock {
  readonly inner = new VirtualClock(1_000_000);
  #now = 1_000_000;
  nowMs(): number {
    this.#now += 5;
    return this.#now;
  }
  setTimer(ms: number, fn: () => void): () => void {
    return this.inner.setTimer(ms, fn);
  }
}

async function start() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const resolved = resolveConfig({ dataDir: "unused", leaseTtlMs: 60_000, localStore: false, verify: false });
  const config: CoordinatorConfig = { ...resolved, verify: { ...resolved.verify, threads: 0 } };
  const coordinator = await Coordinator.open(config, pino({ level: "debug" }, sink), {
    storage: createMemoryStorage({}),
    clock: new SteppingClock(),
  });
  cleanups.push(() => coordinator.close().catch(() => {}));
  const transport = createRouterTransport((r) => coordinator.routes(r));
  return { lines, jobs: createClient(JobService, transport), workers: createClient(WorkerService, transport) };
}

describe("CompleteShards' debug log", () => {
  it("'shard accepted' carries sinceArrivalMs: the coordinator's time from the report's arrival to its acceptance", async () => {
    const s = await start();
    const job = await submitInline(s.jobs, { m: 4, k: 4, n: 8, tile: 4 }); // 2 tiles
    const { workerId } = await s.workers.registerWorker({
      name: "w",
      kernels: [{ name: "reference", fingerprint: "test/1" }],
      threads: 1,
    });
    const { leases } = await s.workers.acquireShards({ workerId, maxShards: 2, waitMs: 0 });
    expect(leases).toHaveLength(2);
    const res = await s.workers.completeShards({
      workerId,
      results: leases.map((l) => ({ lease: l.lease, payload: { case: "data" as const, value: tileOf(l, job) }, computeMs: 1 })),
    });
    expect(res.outcomes.map((o) => o.code)).toEqual([0, 0]);
    const accepted = s.lines.filter((l) => l.msg === "shard accepted");
    expect(accepted.map((l) => l.shard).sort()).toEqual([0, 1]);
    for (const l of accepted) {
      expect(l.jobId).toBe(job.jobId);
      // The clock moved at least once between the arrival and the hand-over (reading the report, checking it).
      expect(l.sinceArrivalMs).toBeGreaterThanOrEqual(5);
      expect(Number.isInteger(l.sinceArrivalMs)).toBe(true);
    }
  });
});
