import { create } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import {
  type CompleteShardsRequest,
  type CompleteShardsResponse,
  CompleteShardsResponseSchema,
  LeaseRefSchema,
  ShardLeaseSchema,
  type WorkerService,
} from "@dce/proto";
import { describe, expect, it } from "vitest";
import { leaseKey, type ShardRun } from "../pull/shard.js";
import type { Session } from "../session/session.js";
import { ReportBatcher } from "./report-batcher.js";

// How many CompleteShards calls a worker keeps in flight, and what waits for them.

/** A CompleteShards stand-in that holds every call until released, counting the calls in flight. */
function heldRpc() {
  const calls: { req: CompleteShardsRequest; release: () => void }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const rpc = {
    completeShards(req: CompleteShardsRequest): Promise<CompleteShardsResponse> {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      return new Promise((resolve) => {
        calls.push({
          req,
          release: () => {
            inFlight--;
            resolve(
              create(CompleteShardsResponseSchema, {
                outcomes: req.results.map((r) => ({ lease: r.lease, code: 0 })),
              }),
            );
          },
        });
      });
    },
  } as unknown as Client<typeof WorkerService>;
  return { rpc, calls, maxInFlight: () => maxInFlight };
}

const session = {
  retry: <T>(_name: string, call: (workerId: string) => Promise<T>) => call("worker-1"),
  chunkLimitBytes: () => 4 * 1024 * 1024,
} as unknown as Session;

function run(shardIndex: number): ShardRun {
  const lease = create(LeaseRefSchema, { jobId: "job-1", shardIndex, epoch: BigInt(shardIndex + 1) });
  return {
    key: leaseKey(lease),
    lease,
    shard: create(ShardLeaseSchema, { lease }),
    abort: new AbortController(),
    phase: "completing",
    expiresAtMs: Date.now() + 60_000,
    done: Promise.resolve(),
  };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("Worker report window", () => {
  it("keeps 3 CompleteShards in flight, one result each, and sends what finished meanwhile together", async () => {
    const { rpc, calls, maxInFlight } = heldRpc();
    const batcher = new ReportBatcher({ rpc, session, rpcTimeoutMs: 10_000, stopSignal: new AbortController().signal });
    const outcomes = Array.from({ length: 10 }, (_, i) =>
      batcher.report(run(i), { lease: run(i).lease, payload: { case: "data", value: new Uint8Array(8) }, computeMs: 1 }),
    );
    await tick();
    // The first three results leave at once, each alone; the other seven wait.
    expect(calls.map((c) => c.req.results.map((r) => r.lease?.shardIndex))).toEqual([[0], [1], [2]]);
    calls[0]?.release();
    await tick();
    // The freed call takes everything that finished meanwhile, in one batch.
    expect(calls.length).toBe(4);
    expect(calls[3]?.req.results.map((r) => r.lease?.shardIndex)).toEqual([3, 4, 5, 6, 7, 8, 9]);
    for (const c of calls.slice(1)) c.release();
    const done = await Promise.all(outcomes);
    expect(done.map((o) => o?.lease?.shardIndex)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(maxInFlight()).toBe(3);
  });
});
