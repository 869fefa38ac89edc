/**
 * Test support (not part of the build): the real coordinator in memory, on a virtual
 * clock, with a scripted worker that moves jobs along as a client watches them. Each
 * long-poll GetJob first applies the job's next step (every remaining step when it waits
 * for the end), then reaches the coordinator, which answers with what the step changed;
 * a poll with no step left blocks, as a real one does, until something changes.
 */
import {
  type InMemoryCoordinator,
  type InMemoryCoordinatorOptions,
  startInMemoryCoordinator,
  VirtualClock,
} from "@dce/coordinator/testing";
import type { ShardLease } from "@dce/proto";

/** One thing that happens to a job. */
export type JobAction =
  /** The scripted worker takes every shard: the job runs, all shards leased. */
  | "start"
  /** It reports this many more shards done (the right tiles, in one call). */
  | { complete: number }
  /** It reports a leased shard failed with this error (with `maxAttempts` 1 the job fails). */
  | { fail: string }
  /** The coordinator seals the result of a job whose shards are all done: the job succeeds. */
  | "seal";

/**
 * What happens to a job before a long-poll is answered: one action, or several. Virtual
 * time moves {@link STEP_MS} first, so a result due to be sealed is sealed then too.
 */
export type JobStep = JobAction | JobAction[];

/** Settings of {@link startJobDriver}. */
export interface JobDriverOptions {
  /** Script of every submitted job; default: start, then one shard done per step, then seal. */
  script?: (shardsTotal: number) => JobStep[];
  /** The first N long-polls return at once with nothing new, as when their wait ran out. */
  idleReturns?: number;
  /** Largest chunk BeginUpload advertises. */
  maxChunkBytes?: number;
  /** Largest ReadBlob reply, whatever max_bytes asked (a shorter read than asked). */
  readChunkBytes?: number;
  /** False: GetJob never carries C inline, so results are read with ReadBlob. Default true. */
  inlineResults?: boolean;
  /** Coordinator settings besides the defaults here (tile 2, lease TTL 10 min, 1 attempt). */
  coordinator?: InMemoryCoordinatorOptions["coordinator"];
}

export interface JobDriver {
  readonly h: InMemoryCoordinator;
  readonly clock: VirtualClock;
  /** Runs steps on a job now, after any step in progress. */
  push(jobId: string, ...steps: JobStep[]): Promise<void>;
  /** Resolves once a long-poll GetJob is held open by the coordinator with no step left to apply. */
  nextBlockedPoll(): Promise<void>;
  close(): Promise<void>;
}

/** The virtual clock starts here, so job times read like real ones. */
export const START_MS = 1_700_000_000_000;
/** Virtual time that passes before each step. */
export const STEP_MS = 1_000;

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

/**
 * Opens the coordinator and registers the scripted worker. Ids are predictable: the
 * worker is `worker-1`, and jobs are `job-1`, `job-2`, … in the order they are submitted.
 */
export async function startJobDriver(options: JobDriverOptions = {}): Promise<JobDriver> {
  const clock = new VirtualClock(START_MS);
  let ids = 0;
  const h = await startInMemoryCoordinator({
    clock,
    newId: () => (ids++ === 0 ? "worker-1" : `job-${ids - 1}`),
    coordinator: { defaultTile: 2, leaseTtlMs: 600_000, maxAttempts: 1, ...options.coordinator },
    ...(options.maxChunkBytes === undefined ? {} : { advertise: { maxChunkBytes: options.maxChunkBytes } }),
  });
  const readChunkBytes = options.readChunkBytes;
  if (readChunkBytes !== undefined) {
    h.faults.rewriteReply("readBlob", (reply) => {
      reply.data = (reply.data as Uint8Array).subarray(0, readChunkBytes);
    });
  }
  if (options.inlineResults === false) {
    h.faults.rewriteReply("getJob", (reply) => {
      const result = reply.result as { inlineData: Uint8Array } | undefined;
      if (result) result.inlineData = new Uint8Array(0);
    });
  }
  const script =
    options.script ?? ((n: number): JobStep[] => ["start", ...Array.from({ length: n }, () => ({ complete: 1 })), "seal"]);
  const steps = new Map<string, JobStep[]>();
  const leases = new Map<string, ShardLease[]>();
  const blocked: (() => void)[] = [];
  let idle = options.idleReturns ?? 0;
  const { workerId } = await h.workers.registerWorker({
    name: "scripted",
    kernels: [{ name: "reference", fingerprint: "reference/1" }],
    threads: 1,
  });
  let chain: Promise<void> = Promise.resolve();

  const stepsOf = (jobId: string): JobStep[] => {
    let list = steps.get(jobId);
    if (list === undefined) {
      list = script(h.job(jobId)?.shardStatus.length ?? 0);
      steps.set(jobId, list);
    }
    return list;
  };

  const act = async (jobId: string, action: JobAction) => {
    if (action === "seal") {
      // Sealing runs on 0 ms timers of the coordinator's clock.
      for (let i = 0; i < 3; i++) {
        clock.advance(0);
        await settle();
      }
    } else if (action === "start") {
      const res = await h.workers.acquireShards({ workerId, maxShards: 1024, waitMs: 0 });
      for (const l of res.leases) {
        const id = l.lease?.jobId ?? "";
        leases.set(id, [...(leases.get(id) ?? []), l]);
      }
    } else if ("complete" in action) {
      const mine = (leases.get(jobId) ?? []).splice(0, action.complete);
      await h.workers.completeShards({
        workerId,
        results: mine.map((l) => ({ lease: l.lease, payload: { case: "data" as const, value: tileOf(h, l) }, computeMs: 1 })),
      });
    } else {
      const [l] = (leases.get(jobId) ?? []).splice(0, 1);
      await h.workers.failShard({ workerId, lease: l?.lease, error: action.fail, release: false });
    }
  };

  const run = (jobId: string, list: JobStep[]) => {
    chain = chain.then(async () => {
      for (const step of list) {
        clock.advance(STEP_MS);
        for (const action of Array.isArray(step) ? step : [step]) await act(jobId, action);
      }
    });
    return chain;
  };

  h.faults.beforeCall("getJob", (req) => {
    if (req.waitMs === 0) return;
    if (idle > 0) {
      idle--;
      req.waitMs = 0;
      return;
    }
    const jobId = req.jobId as string;
    const list = stepsOf(jobId);
    const next = req.untilTerminal ? list.splice(0) : list.splice(0, 1);
    const ran = next.length > 0 ? run(jobId, next) : Promise.resolve();
    // Once the poll is in the coordinator and still unanswered, it is held open.
    void ran.then(settle).then(() => {
      const open = h.calls.of("getJob").some((c) => c.response === undefined && c.error === undefined);
      if (open) for (const resolve of blocked.splice(0)) resolve();
    });
    return ran;
  });

  return {
    h,
    clock,
    push: (jobId, ...more) => run(jobId, more),
    nextBlockedPoll: () => new Promise<void>((resolve) => blocked.push(resolve)),
    close: () => h.close(),
  };
}

/** The tile of C a lease asks for, computed from A and B as stored on the coordinator. */
function tileOf(h: InMemoryCoordinator, lease: ShardLease): Uint8Array {
  const t = lease.matmul;
  if (t?.a === undefined || t.b === undefined) throw new Error("lease without a task");
  const read = (blobId: string) =>
    new Float64Array(h.storage.blobs.read(blobId, 0, h.storage.blobs.sizeOf(blobId) ?? 0).data.slice().buffer);
  const a = read(t.a.blobId);
  const b = read(t.b.blobId);
  const [k, n] = [t.a.cols, t.b.cols];
  const out = new Float64Array((t.rowEnd - t.rowStart) * (t.colEnd - t.colStart));
  let o = 0;
  for (let i = t.rowStart; i < t.rowEnd; i++) {
    for (let j = t.colStart; j < t.colEnd; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += (a[i * k + p] as number) * (b[p * n + j] as number);
      out[o++] = sum;
    }
  }
  return new Uint8Array(out.buffer);
}
