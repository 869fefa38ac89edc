import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { create } from "@bufbuild/protobuf";
import type { InMemoryCoordinator } from "@dce/coordinator/testing";
import { type MatrixRef, MatrixRefSchema, ShardLeaseSchema } from "@dce/proto";
import { blobPath, storeIdPath } from "@dce/runtime/blob-layout";
import type { BlobTransfer } from "@dce/runtime/blob-transfer";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../log-scope.js";
import { planShard } from "../pull/shard.js";
import type { Session } from "../session/session.js";
import { removeCompiledThreadScript } from "../test-support/compile-thread.js";
import {
  bits,
  bytesRead,
  cleanUpWorkers,
  failShardCalls,
  HeldPool,
  newWorker,
  product,
  randomMatrix,
  startCoordinator,
  waitFor,
} from "../test-support/worker-fixtures.js";
import { createBlobCache } from "./blob-cache.js";
import { InputFetcher } from "./input-fetcher.js";
import { colPanelKey } from "./panel-key.js";

// Over the network a large B comes by column panels: a worker reads only the columns its
// shards use, each panel once, as a strided ReadBlob.

afterAll(() => removeCompiledThreadScript());
const dirs: string[] = [];
afterEach(async () => {
  await cleanUpWorkers();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The ReadBlob requests that reached the coordinator for blob `ref`. */
function readsOf(h: InMemoryCoordinator, ref: MatrixRef) {
  return h.calls
    .of("readBlob")
    .map((c) => c.request as { blobId: string; offset: bigint; strideBytes: bigint; segmentBytes: number })
    .filter((r) => r.blobId === ref.blobId);
}

// A 12x30 by 30x40 product in 4x10 tiles: 3 row bands x 4 column bands. With a 20 kB cache
// B (9 600 bytes) is over a quarter of it, so it is fetched by panels; A (2 880) whole.
const [m, k, n] = [12, 30, 40];
const cacheBytes = 20_000;

async function panelJob() {
  const h = await startCoordinator();
  const a = randomMatrix(m, k, 21);
  const b = randomMatrix(k, n, 22);
  const aRef = h.putMatrix(m, k, a);
  const bRef = h.putMatrix(k, n, b);
  const job = await h.submit(aRef, bRef, 4, 10);
  return { h, a, b, aRef, bRef, job };
}

describe("Worker input fetcher: column panels of B", () => {
  it("a worker given the tiles of one column band reads only that band's bytes of B", async () => {
    const { h, bRef, job } = await panelJob();
    // This worker is granted the shards of columns [10, 20) only.
    h.faults.rewriteReply("acquireShards", (reply) => {
      const leases = reply.leases as { matmul?: { colStart: number } }[];
      reply.leases = leases.filter((l) => l.matmul?.colStart === 10);
    });
    const worker = newWorker(h, { pool: new HeldPool(2), cacheBytes });
    await worker.start();
    await waitFor("the band's 3 tiles", () => h.doneCount(job.jobId) === 3);
    expect(bytesRead(h, bRef)).toBe(k * 10 * 8);
    // one strided read of the panel, shared by the band's three shards
    expect(readsOf(h, bRef)).toEqual([expect.objectContaining({ offset: 80n, strideBytes: 320n, segmentBytes: 80 })]);
  });

  it("the shards of every column band read each panel once, with the same bits as whole B", async () => {
    const { h, a, b, bRef, job } = await panelJob();
    const worker = newWorker(h, { pool: new HeldPool(2), cacheBytes });
    await worker.start();
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
    expect(bytesRead(h, bRef)).toBe(k * n * 8);
    expect(
      readsOf(h, bRef)
        .map((r) => Number(r.offset))
        .sort((x, y) => x - y),
    ).toEqual([0, 80, 160, 240]);
    expect(readsOf(h, bRef).every((r) => r.segmentBytes === 80)).toBe(true);
  });

  it("a B small enough to cache whole is read whole, once", async () => {
    const { h, a, b, bRef, job } = await panelJob();
    const worker = newWorker(h, { pool: new HeldPool(2) }); // the default cache: B is small
    await worker.start();
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
    expect(readsOf(h, bRef)).toEqual([expect.objectContaining({ offset: 0n, segmentBytes: 0 })]);
  });

  it("a shard that needs every column of B reads B whole", async () => {
    const h = await startCoordinator();
    const [a, b] = [randomMatrix(m, k, 1), randomMatrix(k, n, 2)];
    const aRef = h.putMatrix(m, k, a);
    const bRef = h.putMatrix(k, n, b);
    const job = await h.submit(aRef, bRef, 4, n); // one column band
    const worker = newWorker(h, { pool: new HeldPool(1), cacheBytes });
    await worker.start();
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
    expect(readsOf(h, bRef).every((r) => r.segmentBytes === 0)).toBe(true);
    expect(bytesRead(h, bRef)).toBe(k * n * 8);
  });

  it("with the coordinator's store on this host, B is read whole from its file, not by ReadBlob", async () => {
    const { h, a, b, aRef, bRef, job } = await panelJob();
    const dir = mkdtempSync(join(tmpdir(), "dce-panels-store-"));
    dirs.push(dir);
    const storeId = `panels-${Date.now()}`;
    writeFileSync(storeIdPath(dir), storeId);
    for (const [ref, values] of [
      [aRef, a],
      [bRef, b],
    ] as const) {
      mkdirSync(dirname(blobPath(dir, ref.blobId)), { recursive: true });
      writeFileSync(blobPath(dir, ref.blobId), new Uint8Array(values.buffer));
    }
    h.faults.rewriteReply("registerWorker", (reply) => {
      reply.localStore = { ...(reply.localStore as object), dir, storeId };
    });
    const worker = newWorker(h, { pool: new HeldPool(2), cacheBytes: 100_000 });
    await worker.start();
    await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
    expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
    expect(h.calls.count("readBlob")).toBe(0);
  });

  it("reports a B blob whose panel view does not fit its shape as a data error", async () => {
    const { h } = await panelJob();
    // The grant claims B has 50 columns; its blob holds 30x40 float64, so the view of
    // columns [10, 20) with a 400-byte stride is 24 rows long, not 30.
    h.faults.rewriteReply("acquireShards", (reply) => {
      for (const lease of reply.leases as { matmul?: { b?: { rows: number; cols: number } } }[]) {
        if (lease.matmul?.b) lease.matmul.b = { ...lease.matmul.b, cols: 50 };
      }
    });
    const worker = newWorker(h, { pool: new HeldPool(1), cacheBytes });
    await worker.start();
    await waitFor("failure report", () => failShardCalls(h).length >= 1);
    expect(failShardCalls(h)[0]).toMatchObject({ release: false });
    expect(failShardCalls(h)[0]?.error).toMatch(
      /does not hold a 30x50 float64 matrix: a strided view of blob \w+ has \d+ bytes, expected \d+/,
    );
  });
});

describe("InputFetcher: which reads it makes for B", () => {
  /** A transfer that records each read (zeros for content) instead of moving bytes. */
  function recordingTransfer() {
    const reads: string[] = [];
    const transfer = {
      readRange: async (blobId: string, offset: number, target: Uint8Array) =>
        void reads.push(`range ${blobId.slice(0, 1)} ${offset} ${target.byteLength}`),
      readStrided: async (blobId: string, view: { offsetBytes: number }, target: Uint8Array) =>
        void reads.push(`strided ${blobId.slice(0, 1)} ${view.offsetBytes} ${target.byteLength}`),
    } as unknown as BlobTransfer;
    return { reads, transfer };
  }

  const plan = planShard(
    create(ShardLeaseSchema, {
      kernel: "reference",
      matmul: {
        a: create(MatrixRefSchema, { rows: m, cols: k, blobId: "a".repeat(64) }),
        b: create(MatrixRefSchema, { rows: k, cols: n, blobId: "b".repeat(64) }),
        rowStart: 4,
        rowEnd: 8,
        colStart: 10,
        colEnd: 20,
      },
    }),
    "reference",
  );

  function fetcher(localStore: boolean) {
    const { reads, transfer } = recordingTransfer();
    const session = {
      localStore: localStore ? { dir: "/store", storeId: "s", blobPath: () => "/store/blob" } : undefined,
      retry: (_name: string, rpc: () => Promise<unknown>) => rpc(),
    } as unknown as Session;
    const cache = createBlobCache({ budgetBytes: cacheBytes });
    const inputs = new InputFetcher({ session, transfer, cache, cacheBytes, rpcTimeoutMs: 1000, log: silentLogger });
    return { reads, cache, inputs };
  }

  it("over the network: the shard's column panel, cached under its panel key, handed over as a k x width matrix", async () => {
    const { reads, cache, inputs } = fetcher(false);
    const got = await inputs.load(plan, new AbortController().signal);
    expect(reads).toContain(`strided b 80 ${k * 10 * 8}`);
    expect(reads.filter((r) => r.includes(" b "))).toHaveLength(1);
    expect(got).toMatchObject({ bColStart: 0, ldb: 10 });
    expect(got.b).toHaveLength(k * 10);
    expect(cache.get(colPanelKey(plan.b.blobId, 10, 20))).toBe(got.b);
  });

  it("with the local store: all of B from its file (the page cache, no network), the kernel picking the columns", async () => {
    const { reads, inputs } = fetcher(true);
    const got = await inputs.load(plan, new AbortController().signal);
    expect(reads).toContain(`range b 0 ${k * n * 8}`);
    expect(reads.some((r) => r.startsWith("strided"))).toBe(false);
    expect(got).toMatchObject({ bColStart: 10, ldb: n });
    expect(got.b).toHaveLength(k * n);
  });
});
