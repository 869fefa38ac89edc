import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { InMemoryCoordinator } from "@dce/coordinator/testing";
import type { MatrixRef } from "@dce/proto";
import { blobPath, storeIdPath } from "@dce/runtime/blob-layout";
import { afterAll, afterEach, describe, expect, it } from "vitest";
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
