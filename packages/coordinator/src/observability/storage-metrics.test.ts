import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { BlobService, JobService } from "@dce/proto";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Coordinator } from "../coordinator.js";
import { resolveConfig } from "../server.js";
import { submitInline } from "../test-support/inline-jobs.js";
import { createDashboard } from "./dashboard.js";
import { createCoordinatorMetrics } from "./metrics.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const GiB = 1024 ** 3;

async function start() {
  const dir = mkdtempSync(join(tmpdir(), "dce-storage-metrics-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const c = await Coordinator.open(
    resolveConfig({ dataDir: dir, verify: false, blobGraceMs: 0, gcIntervalMs: 0, minFreeBytes: 2 * GiB }),
    pino({ level: "silent" }),
    { statfs: () => ({ freeBytes: 50 * GiB, totalBytes: 100 * GiB }) },
  );
  cleanups.push(() => c.close());
  const t = createRouterTransport((r) => c.routes(r));
  return { c, jobs: createClient(JobService, t), blobs: createClient(BlobService, t) };
}

describe("storage metrics and dashboard figures", () => {
  it("show the store's bytes and blobs, the free bytes and watermark, and what the collector deleted", async () => {
    const s = await start();
    const metrics = createCoordinatorMetrics({ processMetrics: false });
    cleanups.push(metrics.attach(s.c));
    await submitInline(s.jobs, { m: 4, k: 2, n: 4, tile: 4 }); // A 64 B, B 64 B
    const orphan = new Uint8Array(256).fill(1);
    const up = await s.blobs.beginUpload({ sizeBytes: 256n, sha256: createHash("sha256").update(orphan).digest("hex") });
    await s.blobs.uploadChunk({ uploadId: up.uploadId, offset: 0n, data: orphan });
    await s.blobs.finishUpload({ uploadId: up.uploadId });
    let text = await metrics.scrape();
    expect(text).toContain("dce_store_bytes 384");
    expect(text).toContain("dce_store_blobs 3");
    expect(text).toContain(`dce_data_dir_free_bytes ${50 * GiB}`);
    expect(text).toContain(`dce_data_dir_min_free_bytes ${2 * GiB}`);
    expect(text).toContain("dce_gc_passes_total 0");

    expect(await s.c.gc.requestPass()).toEqual({ blobsDeleted: 1, bytesDeleted: 256, blobsKept: 0 });
    text = await metrics.scrape();
    expect(text).toContain("dce_store_bytes 128");
    expect(text).toContain("dce_store_blobs 2");
    expect(text).toContain("dce_gc_passes_total 1");
    expect(text).toContain("dce_gc_blobs_deleted_total 1");
    expect(text).toContain("dce_gc_bytes_deleted_total 256");
    expect(text).toContain("dce_gc_failures_total 0");

    const dashboard = createDashboard(s.c);
    cleanups.push(() => dashboard.close());
    expect(dashboard.snapshot().storage).toEqual({
      blobs: 2,
      bytes: 128,
      freeBytes: 50 * GiB,
      minFreeBytes: 2 * GiB,
      gcPasses: 1,
      gcBlobsDeleted: 1,
      gcBytesDeleted: 256,
    });
  });
});
