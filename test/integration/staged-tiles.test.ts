import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { createClient } from "@dce/client-sdk";
import { ErrorReason, type LeaseRef, WorkerService } from "@dce/proto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { logLines } from "../support/assertions.js";
import { type Cluster, naiveMultiply, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";

// Result tiles through the local store with real processes: workers on the coordinator's
// host write each tile into <data dir>/staging/<job>.<shard>.<epoch>.f64 and report it as
// ShardResult.staged; the coordinator reads it once and deletes it. Fencing covers these
// bytes: a zombie's late file never reaches C, and the folder leaks nothing.

const N = 400;
/** 16 shards of 100x100: 80 000-byte tiles, over the worker's 64 KiB staging threshold. */
const TILE = 100;
const LEASE_TTL_MS = 1_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, pred: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe("staged result tiles", () => {
  let cluster: Cluster;
  const staging = () => join(cluster.dataDir, "staging");
  /** How the coordinator got each accepted tile of a job ("shard accepted" debug lines). */
  const viaOf = (jobId: string) =>
    logLines(cluster.coordinator.stderr)
      .filter((l) => l.msg === "shard accepted" && l.jobId === jobId)
      .map((l) => l.via);

  beforeAll(async () => {
    cluster = await startCluster({ workers: 0, leaseTtlMs: LEASE_TTL_MS, extraCoordinatorArgs: ["--log-level", "debug"] });
  });
  afterAll(async () => {
    await cluster?.close();
  });

  async function runJob(seed: number): Promise<{ jobId: string; c: Float64Array }> {
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(N, N, seed);
    const b = randomMatrix(N, N, seed + 1);
    const job = await client.submitMatMul(a, b, { tileSize: TILE, kernel: "reference" });
    const c = await job.result({ signal: AbortSignal.timeout(60_000) });
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
    return { jobId: job.id, c: c.data };
  }

  test("workers on the host stage every tile; C is byte-identical to the inline path's; the folder is left empty", async () => {
    const staged = [await cluster.addWorker("stage-1"), await cluster.addWorker("stage-2")];
    const viaFiles = await runJob(31);
    expect(viaOf(viaFiles.jobId)).toEqual(Array(16).fill("staged"));
    await until("an empty staging folder", () => readdirSync(staging()).length === 0);
    for (const w of staged) {
      w.child.kill("SIGTERM");
      expect(await w.exited).toBe(0);
    }
    // The same job from workers that do not use the local store: the tiles come inline.
    const inline = [
      await cluster.addWorker("inline-1", ["--local-store", "off"]),
      await cluster.addWorker("inline-2", ["--local-store", "off"]),
    ];
    const viaRpc = await runJob(31);
    expect(viaOf(viaRpc.jobId)).toEqual(Array(16).fill("inline"));
    expect(sameBytes(viaRpc.c, viaFiles.c)).toBe(true);
    for (const w of inline) {
      w.child.kill("SIGTERM");
      expect(await w.exited).toBe(0);
    }
  });

  test("a zombie whose lease expired writes its staged file late and reports: ABORTED, its file deleted, C holds the accepted bytes", async () => {
    const rpc = cluster.raw(WorkerService);
    const offer = [{ name: "reference", fingerprint: "probe/1" }];
    const client = createClient(cluster.clientOptions);
    const n = 64;
    const a = randomMatrix(n, n, 41);
    const b = randomMatrix(n, n, 42);
    const c = naiveMultiply(a, b);
    const tile = new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
    const job = await client.submitMatMul(a, b, { tileSize: n, kernel: "reference" });

    const zombie = await rpc.registerWorker({ name: "zombie", kernels: offer, threads: 1 });
    expect(zombie.localStore?.acceptsStagedTiles).toBe(true);
    const first = (await rpc.acquireShards({ workerId: zombie.workerId, maxShards: 1, waitMs: 5_000 })).leases[0];
    if (first?.lease === undefined) throw new Error("no lease");
    // The zombie stalls past its lease; another worker gets the shard and reports it staged.
    await sleep(LEASE_TTL_MS + 300);
    const live = await rpc.registerWorker({ name: "live", kernels: offer, threads: 1 });
    const second = (await rpc.acquireShards({ workerId: live.workerId, maxShards: 1, waitMs: 5_000 })).leases[0];
    if (second?.lease === undefined) throw new Error("the shard was not granted again");
    expect(second.lease.epoch).toBeGreaterThan(first.lease.epoch);
    const fileOf = (l: LeaseRef) => join(staging(), `${l.jobId}.${l.shardIndex}.${l.epoch}.f64`);
    writeFileSync(fileOf(second.lease), tile);
    const report = async (workerId: string, lease: LeaseRef) => {
      const res = await rpc.completeShards({
        workerId,
        results: [{ lease, payload: { case: "staged", value: { sizeBytes: BigInt(tile.byteLength) } }, computeMs: 1 }],
      });
      return res.outcomes[0];
    };
    expect((await report(live.workerId, second.lease))?.code).toBe(0);
    expect(existsSync(fileOf(second.lease))).toBe(false);

    // The zombie wakes, writes different bytes into its own lease's file, and reports.
    const wrong = new Float64Array(c).fill(13);
    writeFileSync(fileOf(first.lease), new Uint8Array(wrong.buffer));
    const late = await report(zombie.workerId, first.lease);
    expect(late?.code).toBe(Code.Aborted);
    await until("the zombie's file to be deleted", () => !existsSync(fileOf(first.lease as LeaseRef)));

    // The live worker rewrites its file after its report was read, and reports again:
    // ALREADY_EXISTS, the file is deleted unread.
    writeFileSync(fileOf(second.lease), new Uint8Array(wrong.buffer));
    expect((await report(live.workerId, second.lease))?.code).toBe(Code.AlreadyExists);
    await until("the rewritten file to be deleted", () => !existsSync(fileOf(second.lease as LeaseRef)));

    const result = await job.result({ signal: AbortSignal.timeout(30_000) });
    expect(sameBytes(result.data, c)).toBe(true);

    // A file for the ended job (a worker that never reported) is swept within a lease TTL or two.
    const stray = fileOf({ ...first.lease, epoch: first.lease.epoch + 1000n });
    writeFileSync(stray, tile);
    await until("the sweep", () => !existsSync(stray), 5 * LEASE_TTL_MS);

    // A report whose file is gone is told so, by reason.
    const third = await report(live.workerId, second.lease);
    expect(third?.code).toBe(Code.AlreadyExists); // the lease's result was accepted: checked first
    expect(third?.error?.reason).toBe(ErrorReason.ALREADY_COMPLETED);
  });

  test("the staging folder is emptied when the coordinator starts", async () => {
    const left = join(staging(), "left-by-a-crash.0.1.f64");
    writeFileSync(left, new Uint8Array(8));
    await cluster.restartCoordinator();
    expect(readdirSync(staging())).toEqual([]);
  });
});
