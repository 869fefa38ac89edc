import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@dce/client-sdk";
import { BlobService } from "@dce/proto";
import { describe, expect, onTestFinished, test } from "vitest";
import { naiveMultiply, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";

// The coordinator is killed (SIGKILL, by its own fault injection) at each step of a blob
// collection pass, with an upload half sent, then restarted on the same data dir. After
// the restart: no blob a job references is missing (the job's result reads back byte
// exact), nothing leaks (the orphans are collected by the next passes, the half-sent
// upload's file is gone), and nothing a job needs was deleted.

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const bytesOf = (m: Float64Array) => new Uint8Array(m.buffer, m.byteOffset, m.byteLength);

describe.each(["gc-after-tombstone", "gc-after-commit", "gc-mid-delete"])("crash at %s", (point) => {
  test("restarts with every referenced blob, and collects the orphans and the half-sent upload", async () => {
    const cluster = await startCluster({
      workers: 1,
      leaseTtlMs: 1500,
      extraCoordinatorArgs: ["--blob-grace", "0", "--gc-interval", "1s"],
      coordinatorEnv: { DCE_TEST_GC_CRASH_AT: point },
    });
    onTestFinished(() => cluster.close());
    const blobFile = (id: string) => join(cluster.dataDir, "blobs", id.slice(0, 2), id);
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(24, 16, 7);
    const b = randomMatrix(16, 20, 8);
    // Small inputs travel inline with the submit: referenced from the moment they are stored.
    const job = await client.submitMatMul(a, b, { tileSize: 8, kernel: "reference" });
    const c = await job.result();
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
    const referenced = [sha256(bytesOf(a.data)), sha256(bytesOf(b.data)), sha256(bytesOf(c.data))];
    for (const id of referenced) expect(existsSync(blobFile(id))).toBe(true);

    // An upload left half sent, and two finished uploads no submit names.
    const blobs = cluster.raw(BlobService);
    const half = new Uint8Array(4096).fill(9);
    const open = await blobs.beginUpload({ sizeBytes: 4096n, sha256: sha256(half) });
    await blobs.uploadChunk({ uploadId: open.uploadId, offset: 0n, data: half.subarray(0, 2048) });
    expect(readdirSync(join(cluster.dataDir, "uploads"))).toHaveLength(1);
    const orphans = [new Uint8Array(1024).fill(1), new Uint8Array(2048).fill(2)].map((data) => ({
      data,
      id: sha256(data),
    }));
    await Promise.all(
      orphans.map(async ({ data, id }) => {
        const up = await blobs.beginUpload({ sizeBytes: BigInt(data.byteLength), sha256: id });
        await blobs.uploadChunk({ uploadId: up.uploadId, offset: 0n, data });
        await blobs.finishUpload({ uploadId: up.uploadId });
      }),
    ).catch(() => {}); // the pass may kill the process between the two

    expect(await cluster.coordinator.exited).toBe("SIGKILL");
    for (const id of referenced) expect(existsSync(blobFile(id))).toBe(true);
    const left = orphans.filter((o) => existsSync(blobFile(o.id))).length;
    // Nothing is deleted before the journal commit; mid-delete stops after the first deletion.
    if (point !== "gc-mid-delete") expect(left).toBeGreaterThanOrEqual(1);

    await cluster.restartCoordinator();
    expect(readdirSync(join(cluster.dataDir, "uploads"))).toEqual([]);
    const deadline = Date.now() + 15_000;
    while (orphans.some((o) => existsSync(blobFile(o.id))) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(orphans.filter((o) => existsSync(blobFile(o.id)))).toEqual([]);
    for (const id of referenced) expect(existsSync(blobFile(id))).toBe(true);
    const again = await createClient(cluster.clientOptions).getJobHandle(job.id).result();
    expect(sameBytes(again.data, c.data)).toBe(true);
  });
});
