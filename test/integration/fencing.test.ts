import { createHash } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { BlobService, JobService, JobState, LeaseState, WorkerService } from "@dce/proto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { codeOf } from "../support/assertions.js";
import { type Cluster, randomMatrix, startCluster } from "../support/cluster.js";

// A real coordinator process with no real workers: the test plays the workers over
// raw Connect calls, so it can send duplicate, stale and malformed reports on purpose.
// Its tiles are placeholder bytes, so result verification is off here: this suite is
// about fencing (verification has its own, test/integration/verification.test.ts).

let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster({ workers: 0, leaseTtlMs: 600, extraCoordinatorArgs: ["--verify", "off"] });
});
afterAll(async () => {
  await cluster?.close();
});

function bytesOf(m: { data: Float64Array }): Uint8Array {
  return new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength);
}

async function upload(data: Uint8Array): Promise<string> {
  const blobs = cluster.raw(BlobService);
  const sha256 = createHash("sha256").update(data).digest("hex");
  const begin = await blobs.beginUpload({ sizeBytes: BigInt(data.byteLength), sha256 });
  if (begin.alreadyPresent) return sha256;
  for (let off = 0; off < data.byteLength; off += begin.maxChunkBytes) {
    await blobs.uploadChunk({
      uploadId: begin.uploadId,
      offset: BigInt(off),
      data: data.subarray(off, off + begin.maxChunkBytes),
    });
  }
  return (await blobs.finishUpload({ uploadId: begin.uploadId })).blobId;
}

async function submitSmall(tile = 2, seed = 1) {
  const a = randomMatrix(4, 3, seed);
  const b = randomMatrix(3, 4, seed + 1);
  const jobs = cluster.raw(JobService);
  const res = await jobs.submitJob({
    matmul: {
      a: { rows: 4, cols: 3, blobId: await upload(bytesOf(a)) },
      b: { rows: 3, cols: 4, blobId: await upload(bytesOf(b)) },
      tileRows: tile,
      tileCols: tile,
      kernel: "reference",
    },
  });
  return res.jobId;
}

async function registerFake(name: string, fingerprint = "test/1"): Promise<string> {
  const w = cluster.raw(WorkerService);
  const r = await w.registerWorker({ name, kernels: [{ name: "reference", fingerprint }], threads: 1 });
  return r.workerId;
}

describe("kernel fingerprint pinning through a real coordinator", () => {
  test("a worker with another fingerprint never gets a started job's shards; one with the same does", async () => {
    const jobId = await submitSmall(1, 40); // 16 shards of 1x1
    const workers = cluster.raw(WorkerService);
    const pinned = await registerFake("pin-1", "reference/build-A");
    const other = await registerFake("pin-2", "reference/build-B");
    const same = await registerFake("pin-3", "reference/build-A");
    const first = await workers.acquireShards({ workerId: pinned, maxShards: 1, waitMs: 1000 });
    expect(first.leases.map((l) => l.lease?.jobId)).toEqual([jobId]);
    // 15 shards are queued, but only for build-A now
    const refused = await workers.acquireShards({ workerId: other, maxShards: 8, waitMs: 300 });
    expect(refused.leases.filter((l) => l.lease?.jobId === jobId)).toEqual([]);
    const taken = await workers.acquireShards({ workerId: same, maxShards: 4, waitMs: 1000 });
    expect(taken.leases.filter((l) => l.lease?.jobId === jobId).length).toBe(4);
    const status = await cluster.raw(JobService).cancelJob({ jobId });
    expect(status.status?.state).toBe(JobState.CANCELLED);
  });
});

describe("fencing through a real coordinator", () => {
  test("a duplicate completion gets ALREADY_EXISTS and a stale epoch gets ABORTED", async () => {
    const jobId = await submitSmall();
    const workers = cluster.raw(WorkerService);
    const w1 = await registerFake("fake-1");
    const w2 = await registerFake("fake-2");
    const got = await workers.acquireShards({ workerId: w1, maxShards: 1, waitMs: 1000 });
    expect(got.leases).toHaveLength(1);
    const lease = got.leases[0]!.lease!;
    expect(lease.jobId).toBe(jobId);
    const tile = new Uint8Array(2 * 2 * 8);

    const first = await workers.completeShards({ workerId: w1, results: [{ lease, payload: { case: "data", value: tile } }] });
    expect(first.outcomes[0]!.code).toBe(0);
    const again = await workers.completeShards({ workerId: w1, results: [{ lease, payload: { case: "data", value: tile } }] });
    expect(again.outcomes[0]!.code).toBe(Code.AlreadyExists);

    // Let a second lease expire, re-grant the shard to w2 with a higher epoch, then report with the old one.
    const second = await workers.acquireShards({ workerId: w1, maxShards: 1, waitMs: 1000 });
    const old = second.leases[0]!.lease!;
    await new Promise((r) => setTimeout(r, 1400)); // ttl 600 ms + retry backoff
    let regrant = await workers.acquireShards({ workerId: w2, maxShards: 4, waitMs: 2000 });
    const deadline = Date.now() + 5000;
    while (!regrant.leases.some((l) => l.lease!.shardIndex === old.shardIndex) && Date.now() < deadline) {
      regrant = await workers.acquireShards({ workerId: w2, maxShards: 4, waitMs: 500 });
    }
    const fresh = regrant.leases.find((l) => l.lease!.shardIndex === old.shardIndex)!.lease!;
    expect(fresh.epoch).toBeGreaterThan(old.epoch);

    const stale = await workers.completeShards({
      workerId: w1,
      results: [{ lease: old, payload: { case: "data", value: tile } }],
    });
    expect(stale.outcomes[0]!.code).toBe(Code.Aborted);
    const hb = await workers.heartbeat({ workerId: w1, leases: [old] });
    expect(hb.leases[0]!.state).toBe(LeaseState.LOST);
    // w1 cannot complete w2's lease either.
    const foreign = await workers.completeShards({
      workerId: w1,
      results: [{ lease: fresh, payload: { case: "data", value: tile } }],
    });
    expect(foreign.outcomes[0]!.code).toBe(Code.PermissionDenied);
    // A wrong-sized tile is refused and the lease stays valid.
    const wrong = await workers.completeShards({
      workerId: w2,
      results: [{ lease: fresh, payload: { case: "data", value: new Uint8Array(8) } }],
    });
    expect(wrong.outcomes[0]!.code).toBe(Code.InvalidArgument);
    const ok = await workers.completeShards({
      workerId: w2,
      results: [{ lease: fresh, payload: { case: "data", value: tile } }],
    });
    expect(ok.outcomes[0]!.code).toBe(0);
    const jobs = cluster.raw(JobService);
    await jobs.cancelJob({ jobId });
  });

  test("cancel tells the lease holder through its heartbeat and rejects its result", async () => {
    const jobId = await submitSmall(1, 7);
    const workers = cluster.raw(WorkerService);
    const w = await registerFake("fake-cancel");
    const got = await workers.acquireShards({ workerId: w, maxShards: 2, waitMs: 1000 });
    const mine = got.leases.filter((l) => l.lease!.jobId === jobId);
    expect(mine.length).toBeGreaterThan(0);
    const jobs = cluster.raw(JobService);
    const c = await jobs.cancelJob({ jobId, reason: "test" });
    expect(c.status!.state).toBe(JobState.CANCELLED);
    const hb = await workers.heartbeat({ workerId: w, leases: mine.map((l) => l.lease!) });
    expect(hb.leases.every((l) => l.state === LeaseState.CANCELLED)).toBe(true);
    const late = await workers.completeShards({
      workerId: w,
      results: [{ lease: mine[0]!.lease!, payload: { case: "data", value: new Uint8Array(8) } }],
    });
    expect(late.outcomes[0]!.code).toBe(Code.Aborted);
    expect(await codeOf(jobs.getResult({ jobId }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(jobs.cancelJob({ jobId }))).toBe("ok");
  });

  test("bad input gets a clear code and the coordinator keeps serving", async () => {
    const jobs = cluster.raw(JobService);
    const blobs = cluster.raw(BlobService);
    const a = await upload(bytesOf(randomMatrix(3, 2, 11)));
    const b = await upload(bytesOf(randomMatrix(5, 2, 12)));
    const cases: [string, () => Promise<unknown>, Code][] = [
      [
        "inner mismatch",
        () => jobs.submitJob({ matmul: { a: { rows: 3, cols: 2, blobId: a }, b: { rows: 5, cols: 2, blobId: b } } }),
        Code.InvalidArgument,
      ],
      [
        "zero rows",
        () => jobs.submitJob({ matmul: { a: { rows: 0, cols: 2, blobId: a }, b: { rows: 2, cols: 5, blobId: b } } }),
        Code.InvalidArgument,
      ],
      [
        "length mismatch",
        () => jobs.submitJob({ matmul: { a: { rows: 2, cols: 2, blobId: a }, b: { rows: 2, cols: 5, blobId: b } } }),
        Code.InvalidArgument,
      ],
      [
        "unknown blob",
        () => jobs.submitJob({ matmul: { a: { rows: 3, cols: 2, blobId: "0".repeat(64) }, b: { rows: 2, cols: 5, blobId: b } } }),
        Code.NotFound,
      ],
      [
        "unknown kernel",
        () =>
          jobs.submitJob({
            matmul: { a: { rows: 3, cols: 2, blobId: a }, b: { rows: 2, cols: 5, blobId: b }, kernel: "rm -rf /" },
          }),
        Code.InvalidArgument,
      ],
      ["missing spec", () => jobs.submitJob({}), Code.InvalidArgument],
      [
        "over maxDim (checked before the blobs are looked up)",
        () =>
          jobs.submitJob({
            matmul: { a: { rows: 2_000_000, cols: 2, blobId: "0".repeat(64) }, b: { rows: 2, cols: 5, blobId: b } },
          }),
        Code.ResourceExhausted,
      ],
      [
        "result C over maxMatrixBytes",
        () =>
          jobs.submitJob({
            matmul: { a: { rows: 1_000_000, cols: 2, blobId: a }, b: { rows: 2, cols: 1_000_000, blobId: b } },
          }),
        Code.ResourceExhausted,
      ],
      ["unknown job", () => jobs.getJob({ jobId: "nope" }), Code.NotFound],
      ["unknown job result", () => jobs.getResult({ jobId: "nope" }), Code.NotFound],
      ["unknown job cancel", () => jobs.cancelJob({ jobId: "nope" }), Code.NotFound],
      ["bad sha", () => blobs.beginUpload({ sizeBytes: 8n, sha256: "xyz" }), Code.InvalidArgument],
      ["odd size", () => blobs.beginUpload({ sizeBytes: 7n, sha256: "a".repeat(64) }), Code.InvalidArgument],
      ["huge size", () => blobs.beginUpload({ sizeBytes: 1n << 40n, sha256: "a".repeat(64) }), Code.ResourceExhausted],
      ["unknown upload", () => blobs.uploadChunk({ uploadId: "nope", offset: 0n, data: new Uint8Array(8) }), Code.NotFound],
      ["unknown blob read", () => blobs.readBlob({ blobId: "f".repeat(64), offset: 0n, maxBytes: 8 }), Code.NotFound],
      ["unknown worker", () => cluster.raw(WorkerService).acquireShards({ workerId: "nope", maxShards: 1 }), Code.NotFound],
    ];
    for (const [name, p, want] of cases) {
      expect({ name, code: await codeOf(p()) }).toEqual({ name, code: want });
    }
    // A message over the 4 MiB read limit is refused by the transport with RESOURCE_EXHAUSTED.
    const big = cluster.raw(BlobService, { maxMessageBytes: 16 * 1024 * 1024 });
    const begin = await big.beginUpload({ sizeBytes: 8n * 1024n * 1024n, sha256: "b".repeat(64) });
    expect(await codeOf(big.uploadChunk({ uploadId: begin.uploadId, offset: 0n, data: new Uint8Array(5 * 1024 * 1024) }))).toBe(
      Code.ResourceExhausted,
    );
    // Still serving: a well-formed submit works.
    const jobId = await submitSmall(2, 21);
    const st = await jobs.getJob({ jobId });
    expect(st.status!.state).toBe(JobState.QUEUED);
    await jobs.cancelJob({ jobId });
  });
});
