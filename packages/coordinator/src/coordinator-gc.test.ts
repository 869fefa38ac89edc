import { createHash } from "node:crypto";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { BlobService, ErrorReason, JobService } from "@dce/proto";
import { errorReasonOf } from "@dce/runtime/error-info";
import pino from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Coordinator } from "./coordinator.js";
import { createMemoryStorage } from "./memory/memory-storage.js";
import { VirtualClock } from "./ports/virtual-clock.js";
import { resolveConfig } from "./server.js";

// The collector inside a coordinator, through its services: while a pass waits for its
// journal commit, the blobs it decided to delete are already gone for every caller.

const closing: Coordinator[] = [];
afterEach(async () => {
  for (const c of closing.splice(0)) await c.close();
});

async function start() {
  const storage = createMemoryStorage();
  const c = await Coordinator.open(
    resolveConfig({ dataDir: "memory", verify: false, fsync: false, localStore: false, blobGraceMs: 0, gcIntervalMs: 0 }),
    pino({ level: "silent" }),
    { storage, clock: new VirtualClock(1_000_000) },
  );
  closing.push(c);
  const t = createRouterTransport((r) => c.routes(r));
  return { c, storage, jobs: createClient(JobService, t), blobs: createClient(BlobService, t) };
}

type Started = Awaited<ReturnType<typeof start>>;

async function upload(s: Started, data: Uint8Array): Promise<string> {
  const sha256 = createHash("sha256").update(data).digest("hex");
  const up = await s.blobs.beginUpload({ sizeBytes: BigInt(data.byteLength), sha256 });
  if (up.alreadyPresent) return sha256;
  await s.blobs.uploadChunk({ uploadId: up.uploadId, offset: 0n, data });
  return (await s.blobs.finishUpload({ uploadId: up.uploadId })).blobId;
}

const bytesOf = (seed: number) => new Uint8Array(new Float64Array([seed, seed, seed, seed]).buffer);

const submitNaming = (s: Started, a: string, b: string) =>
  s.jobs.submitJob({
    matmul: { a: { rows: 2, cols: 2, blobId: a }, b: { rows: 2, cols: 2, blobId: b }, tileRows: 0, tileCols: 0, kernel: "" },
  });

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("the call succeeded; it was expected to fail");
}

describe("garbage collection in a coordinator", () => {
  it("a submit naming a blob a pass is deleting gets BLOB_NOT_FOUND; an upload of the same bytes brings it back", async () => {
    const s = await start();
    const bytesA = new Uint8Array(new Float64Array([1, 2, 3, 4]).buffer);
    const bytesB = new Uint8Array(new Float64Array([5, 6, 7, 8]).buffer);
    const a = await upload(s, bytesA);
    const b = await upload(s, bytesB);
    // Another client's submit is being made durable (a slow fsync) when the pass decides:
    // the pass deletes nothing before that commit is done.
    const other = [await upload(s, bytesOf(9)), await upload(s, bytesOf(10))];
    s.storage.journal.hold();
    const otherSubmit = submitNaming(s, other[0] ?? "", other[1] ?? "");
    await vi.waitFor(() => expect(s.storage.journal.heldCommits).toBeGreaterThan(0));
    const pass = s.c.gc.requestPass();
    const e = await failure(submitNaming(s, a, b));
    expect(e.code).toBe(Code.NotFound);
    expect(errorReasonOf(e)).toBe(ErrorReason.BLOB_NOT_FOUND);
    expect(e.rawMessage).toMatch(/^matrix A: blob [0-9a-f]{64} not found; upload it first/);
    // The same bytes uploaded again are received in full (not "already present").
    const again = await s.blobs.beginUpload({ sizeBytes: 32n, sha256: a });
    expect(again.alreadyPresent).toBe(false);
    await s.blobs.uploadChunk({ uploadId: again.uploadId, offset: 0n, data: bytesA });
    expect((await s.blobs.finishUpload({ uploadId: again.uploadId })).blobId).toBe(a);
    expect(s.storage.blobs.list().map((x) => x.blobId)).toEqual(expect.arrayContaining([a]));
    s.storage.journal.release();
    expect((await otherSubmit).jobId).not.toBe("");
    // A was stored again meanwhile and stays; B goes.
    expect(await pass).toEqual({ blobsDeleted: 1, bytesDeleted: 32, blobsKept: 0 });
    expect(s.storage.blobs.sizeOf(a)).toBe(32);
    expect(s.storage.blobs.sizeOf(b)).toBeUndefined();
    await upload(s, bytesB);
    const { jobId } = await submitNaming(s, a, b);
    expect(jobId).not.toBe("");
    // Named by a job now: no pass deletes them.
    expect((await s.c.gc.requestPass()).blobsDeleted).toBe(0);
    expect(s.c.gc.stats()).toMatchObject({ blobs: 4, bytes: 128, gc: { passes: 2, blobsDeleted: 1, bytesDeleted: 32 } });
  });
});
