import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { createClient } from "@dce/client-sdk";
import { BlobService, JobService, WorkerService } from "@dce/proto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { codeOf, logLines } from "../support/assertions.js";
import { type Cluster, naiveMultiply, type Proc, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";
import { bearer, getHttp1, parseScrape } from "../support/ops.js";

// The local store with real processes: a coordinator offers its blob directory
// (LocalStore, proven by <data dir>/store-id) and the SDK and workers on its host move
// matrix bytes through files instead of RPCs. dce_blob_bytes_total counts exactly the
// matrix bytes that cross the RPCs (UploadChunk and inline SubmitJob in; ReadBlob, inline
// grant inputs and inline GetJob C out; tile results inline in CompleteShards are not
// counted, tiles uploaded by workers are), so with the local store a large job moves none,
// and without it every input and C byte shows.
// Results are compared bit for bit with a naive multiply (the reference kernel's bytes,
// test/integration/e2e.test.ts).

/** 400x400 float64 is 1 280 000 bytes: over the 1 MiB inline limits (SubmitJob, GetJob). */
const N = 400;
const MATRIX_BYTES = N * N * 8;
/** 16 shards of 100x100; each tile result (80 KB) travels inline in CompleteShards. */
const TILE = 100;
const BLOB = "dce.v1.BlobService";

interface Counters {
  in: number;
  out: number;
  uploadChunks: number;
  readBlobs: number;
  finishUploads: number;
}

async function counters(cluster: Cluster): Promise<Counters> {
  const res = await getHttp1(`${cluster.url}/metrics`, cluster.ca, bearer(cluster.adminToken));
  expect(res.status).toBe(200);
  const m = parseScrape(res.body);
  const calls = (method: string) => m.sum("dce_rpc_handled_total", { service: BLOB, method });
  return {
    in: m.value("dce_blob_bytes_total", { direction: "in" }) ?? Number.NaN,
    out: m.value("dce_blob_bytes_total", { direction: "out" }) ?? Number.NaN,
    uploadChunks: calls("UploadChunk"),
    readBlobs: calls("ReadBlob"),
    finishUploads: calls("FinishUpload"),
  };
}

function delta(after: Counters, before: Counters): Counters {
  return {
    in: after.in - before.in,
    out: after.out - before.out,
    uploadChunks: after.uploadChunks - before.uploadChunks,
    readBlobs: after.readBlobs - before.readBlobs,
    finishUploads: after.finishUploads - before.finishUploads,
  };
}

/** JSON log lines of a process's stderr with the given `msg`. */
function logged(p: Proc, msg: string): Record<string, unknown>[] {
  return logLines(p.stderr).filter((l) => l.msg === msg);
}

/** Where a worker said its input blocks come from. */
const inputsOf = (w: Proc) => logged(w, "worker registered").map((l) => l.inputs);

/** Runs an N x N by N x N job through the SDK and checks C bit for bit. */
async function runJob(
  cluster: Cluster,
  seed: number,
  useLocalStore?: boolean,
  tile = TILE,
): Promise<{ jobId: string; c: Float64Array }> {
  const client = createClient({ ...cluster.clientOptions, ...(useLocalStore === undefined ? {} : { useLocalStore }) });
  const a = randomMatrix(N, N, seed);
  const b = randomMatrix(N, N, seed + 1);
  const job = await client.submitMatMul(a, b, { tileSize: tile, kernel: "reference" });
  const c = await job.result({ signal: AbortSignal.timeout(60_000) });
  expect([c.rows, c.cols]).toEqual([N, N]);
  expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
  const st = await job.status();
  expect(st.state).toBe("succeeded");
  expect(st.shardsTotal).toBe(Math.ceil(N / tile) ** 2);
  return { jobId: job.id, c: c.data };
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const offer = { name: "probe", fingerprint: "probe/1" };

describe("local store offered (coordinator default)", () => {
  let cluster: Cluster;
  let storeId: string;
  /** The job of the test with the defaults. */
  let localJobId = "";
  beforeAll(async () => {
    cluster = await startCluster({ workers: 0 });
    storeId = readFileSync(join(cluster.dataDir, "store-id"), "utf8").trim();
  });
  afterAll(async () => {
    await cluster?.close();
  });

  test("RegisterWorker, BeginUpload and GetResult name the data dir and its store id", async () => {
    expect(storeId).toMatch(/^[0-9a-f]{32}$/);
    // The gate of the local store: the data dir (made by `coordinator tokens add` before the
    // first start, as the README does it) is closed to group and others.
    expect(statSync(cluster.dataDir).mode & 0o077).toBe(0);
    const reg = await cluster.raw(WorkerService).registerWorker({ name: "probe", kernels: [offer], threads: 1 });
    expect(reg.localStore).toMatchObject({ dir: cluster.dataDir, storeId });
    const data = randomBytes(64);
    const begin = await cluster.raw(BlobService).beginUpload({ sizeBytes: 64n, sha256: sha256(data) });
    expect(begin.localStore).toMatchObject({ dir: cluster.dataDir, storeId });
    expect(begin.localPath).toBe(join(cluster.dataDir, "uploads", begin.uploadId));
    expect(existsSync(begin.localPath)).toBe(true);
    // GetResult is checked with the jobs below.
  });

  test("with the defaults a large job moves no matrix bytes over RPCs: uploads, worker inputs, tiles over a message and C go through files", async () => {
    // Messages of at most 1 MiB, so the one-tile job below has a tile too large for one.
    const small = ["--max-message-bytes", "1048576"];
    const workers = [await cluster.addWorker("local-1", small), await cluster.addWorker("local-2", small)];
    for (const w of workers) expect(inputsOf(w)).toEqual([`local store ${cluster.dataDir}`]);
    const before = await counters(cluster);
    localJobId = (await runJob(cluster, 11)).jobId;
    const d = delta(await counters(cluster), before);
    // A and B were written into their upload files (two FinishUpload calls, no chunk),
    // the workers read their blocks from the blob files (no ReadBlob) and the SDK read C
    // from its blob file (no ReadBlob either).
    expect(d).toEqual({ in: 0, out: 0, uploadChunks: 0, readBlobs: 0, finishUploads: 2 });

    // One shard whose tile is all of C (1.28 MB, more than the workers' 1 MiB messages): the
    // worker stages the tile in the store (ShardResult.staged) instead of uploading it, so
    // only A and B are finished uploads (test/integration/staged-tiles.test.ts).
    const beforeTile = await counters(cluster);
    await runJob(cluster, 13, undefined, N);
    expect(delta(await counters(cluster), beforeTile)).toEqual({
      in: 0,
      out: 0,
      uploadChunks: 0,
      readBlobs: 0,
      finishUploads: 2,
    });
    for (const w of workers) {
      expect(logged(w, "reading the local blob file failed; using ReadBlob")).toEqual([]);
      w.child.kill("SIGTERM");
      expect(await w.exited).toBe(0);
    }
  });

  test("with workers at --local-store off and the SDK at useLocalStore: false, the same bytes come back over RPCs", async () => {
    const workers = [
      await cluster.addWorker("rpc-1", ["--local-store", "off"]),
      await cluster.addWorker("rpc-2", ["--local-store", "off"]),
    ];
    for (const w of workers) expect(inputsOf(w)).toEqual(["ReadBlob"]);
    const before = await counters(cluster);
    await runJob(cluster, 21, false);
    const d = delta(await counters(cluster), before);
    // Both inputs as chunks; out: C once, plus A and B at least once (each worker reads B
    // whole when small, else the column panels of B and row panels of A it needs, usually
    // once; a load dropped with a revoked lease is read again, so there is no exact upper
    // bound).
    expect(d.in).toBe(2 * MATRIX_BYTES);
    expect(d.uploadChunks).toBeGreaterThanOrEqual(2);
    expect(d.out).toBeGreaterThanOrEqual(3 * MATRIX_BYTES);
    expect(d.readBlobs).toBeGreaterThanOrEqual(3);

    // The job of the previous test again: its inputs are stored (no upload at all), its
    // blocks and C cross ReadBlob now, and C is byte-identical to the naive multiply.
    const again = await counters(cluster);
    await runJob(cluster, 11, false);
    const d2 = delta(await counters(cluster), again);
    expect(d2.in).toBe(0);
    expect(d2.finishUploads).toBe(0);
    expect(d2.out).toBeGreaterThanOrEqual(3 * MATRIX_BYTES);
    for (const w of workers) expect(logged(w, "reading the local blob file failed; using ReadBlob")).toEqual([]);
  });

  test("GetResult carries the local store", async () => {
    const client = createClient(cluster.clientOptions);
    const a = randomMatrix(3, 3, 5);
    const job = await client.submitMatMul(a, a, { kernel: "reference" });
    await job.result();
    const res = await cluster.raw(JobService).getResult({ jobId: job.id });
    expect(res.localStore).toMatchObject({ dir: cluster.dataDir, storeId });
    const ref = res.result;
    if (ref === undefined) throw new Error("no result");
    // C's blob file is where LocalStore says it is, and holds C.
    const file = readFileSync(join(cluster.dataDir, "blobs", ref.blobId.slice(0, 2), ref.blobId));
    expect(file.byteLength).toBe(9 * 8);
    expect(sha256(file)).toBe(ref.blobId);
  });

  test("wrong bytes written locally are INVALID_ARGUMENT and leave nothing; a correct upload of the same content then succeeds", async () => {
    const blobs = cluster.raw(BlobService);
    const data = randomBytes(40_000);
    const id = sha256(data);
    const upload = async () => {
      const begin = await blobs.beginUpload({ sizeBytes: BigInt(data.byteLength), sha256: id });
      expect(begin.alreadyPresent).toBe(false);
      expect(dirname(begin.localPath)).toBe(join(cluster.dataDir, "uploads"));
      return begin;
    };

    // Same size, one bit off.
    const flipped = Buffer.from(data);
    flipped[123] = (flipped[123] ?? 0) ^ 0x10;
    const first = await upload();
    writeFileSync(first.localPath, flipped);
    const e1 = await blobs.finishUpload({ uploadId: first.uploadId, writtenLocally: true }).catch((e: unknown) => e);
    expect(ConnectError.from(e1).code).toBe(Code.InvalidArgument);
    expect(ConnectError.from(e1).rawMessage).toMatch(`not the declared sha256 ${id}`);
    expect(existsSync(first.localPath)).toBe(false);
    expect(await codeOf(blobs.finishUpload({ uploadId: first.uploadId, writtenLocally: true }))).toBe(Code.NotFound);

    // Too short.
    const second = await upload();
    writeFileSync(second.localPath, data.subarray(0, 8));
    const e2 = await blobs.finishUpload({ uploadId: second.uploadId, writtenLocally: true }).catch((e: unknown) => e);
    expect(ConnectError.from(e2).code).toBe(Code.InvalidArgument);
    expect(ConnectError.from(e2).rawMessage).toMatch("has 8 bytes; 40000 were declared");
    expect(existsSync(second.localPath)).toBe(false);

    // Chunks, then a local finish: refused, and the upload is still good for chunks.
    const third = await upload();
    await blobs.uploadChunk({ uploadId: third.uploadId, offset: 0n, data: data.subarray(0, 8000) });
    writeFileSync(third.localPath, data);
    expect(await codeOf(blobs.finishUpload({ uploadId: third.uploadId, writtenLocally: true }))).toBe(Code.InvalidArgument);

    // Nothing was stored under either id so far.
    const missing = await codeOf(blobs.readBlob({ blobId: id, offset: 0n, maxBytes: 8 }));
    expect(missing).toBe(Code.NotFound);
    expect(await codeOf(blobs.readBlob({ blobId: sha256(flipped), offset: 0n, maxBytes: 8 }))).toBe(Code.NotFound);

    // The right bytes, written locally.
    const fourth = await upload();
    writeFileSync(fourth.localPath, data);
    expect((await blobs.finishUpload({ uploadId: fourth.uploadId, writtenLocally: true })).blobId).toBe(id);
    const back = await blobs.readBlob({ blobId: id, offset: 0n, maxBytes: data.byteLength });
    expect(back.totalBytes).toBe(BigInt(data.byteLength));
    expect(Buffer.from(back.data).equals(data)).toBe(true);
    expect((await blobs.beginUpload({ sizeBytes: BigInt(data.byteLength), sha256: id })).alreadyPresent).toBe(true);
  });
  test("C read from its blob file is checked against its SHA-256: a damaged file is DATA_LOSS, not wrong numbers", async () => {
    expect(localJobId).not.toBe("");
    const res = await cluster.raw(JobService).getResult({ jobId: localJobId });
    const blobId = res.result?.blobId ?? "";
    const path = join(cluster.dataDir, "blobs", blobId.slice(0, 2), blobId);
    const bytes = readFileSync(path);
    expect(bytes.byteLength).toBe(MATRIX_BYTES);
    bytes[MATRIX_BYTES - 1] = (bytes[MATRIX_BYTES - 1] ?? 0) ^ 1;
    writeFileSync(path, bytes);
    const before = await counters(cluster);
    const e = await createClient(cluster.clientOptions)
      .getJobHandle(localJobId)
      .result()
      .catch((err: unknown) => err);
    expect(ConnectError.from(e).code).toBe(Code.DataLoss);
    expect(ConnectError.from(e).rawMessage).toMatch(`blob ${blobId} content has SHA-256`);
    // Found from the file: no ReadBlob was made.
    expect(delta(await counters(cluster), before)).toMatchObject({ out: 0, readBlobs: 0 });
  });
});

describe("local store refused by the coordinator (--local-store off)", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ workers: 2, extraCoordinatorArgs: ["--local-store", "off"] });
  });
  afterAll(async () => {
    await cluster?.close();
  });

  test("no response names a local store; workers and the SDK use the RPCs and get the same bytes", async () => {
    for (const w of cluster.workers) expect(inputsOf(w)).toEqual(["ReadBlob"]);
    const reg = await cluster.raw(WorkerService).registerWorker({ name: "probe", kernels: [offer], threads: 1 });
    expect(reg.localStore).toBeUndefined();
    const data = randomBytes(64);
    const begin = await cluster.raw(BlobService).beginUpload({ sizeBytes: 64n, sha256: sha256(data) });
    expect(begin.localStore).toBeUndefined();
    expect(begin.localPath).toBe("");

    const before = await counters(cluster);
    // useLocalStore is left at its default (true): nothing is offered, so nothing is tried.
    await runJob(cluster, 31);
    const d = delta(await counters(cluster), before);
    expect(d.in).toBe(2 * MATRIX_BYTES);
    expect(d.out).toBeGreaterThanOrEqual(3 * MATRIX_BYTES);

    const client = createClient(cluster.clientOptions);
    const small = randomMatrix(3, 3, 7);
    const job = await client.submitMatMul(small, small, { kernel: "reference" });
    await job.result();
    const res = await cluster.raw(JobService).getResult({ jobId: job.id });
    expect(res.result?.blobId).toMatch(/^[0-9a-f]{64}$/);
    expect(res.localStore).toBeUndefined();
  });

  test("FinishUpload with written_locally is FAILED_PRECONDITION, even for correct bytes, and the upload stays open for chunks", async () => {
    const blobs = cluster.raw(BlobService);
    const data = randomBytes(4096);
    const id = sha256(data);
    const begin = await blobs.beginUpload({ sizeBytes: BigInt(data.byteLength), sha256: id });
    // The upload file exists where a local store would have put it; write the right bytes there.
    const path = join(cluster.dataDir, "uploads", begin.uploadId);
    expect(existsSync(path)).toBe(true);
    writeFileSync(path, data);
    const e = await blobs.finishUpload({ uploadId: begin.uploadId, writtenLocally: true }).catch((err: unknown) => err);
    expect(ConnectError.from(e).code).toBe(Code.FailedPrecondition);
    expect(ConnectError.from(e).rawMessage).toMatch("--local-store off");
    // An unknown upload gets the same answer: the flag is refused before the upload is looked up.
    expect(await codeOf(blobs.finishUpload({ uploadId: "nope", writtenLocally: true }))).toBe(Code.FailedPrecondition);
    expect(await codeOf(blobs.readBlob({ blobId: id, offset: 0n, maxBytes: 8 }))).toBe(Code.NotFound);

    await blobs.uploadChunk({ uploadId: begin.uploadId, offset: 0n, data });
    expect((await blobs.finishUpload({ uploadId: begin.uploadId })).blobId).toBe(id);
  });
});

describe("a store whose store-id does not match (another host's directory of the same name)", () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster({ workers: 0 });
  });
  afterAll(async () => {
    await cluster?.close();
  });

  test("is not used: workers and the SDK fall back to the RPCs and get the same bytes", async () => {
    // The coordinator keeps offering the id it read at start; the directory now proves
    // another store, as a namesake directory on another machine would.
    const offered = readFileSync(join(cluster.dataDir, "store-id"), "utf8").trim();
    const reg = await cluster.raw(WorkerService).registerWorker({ name: "probe", kernels: [offer], threads: 1 });
    expect(reg.localStore?.storeId).toBe(offered);
    writeFileSync(join(cluster.dataDir, "store-id"), `${randomBytes(16).toString("hex")}\n`);

    const workers = [await cluster.addWorker("far-1"), await cluster.addWorker("far-2")];
    for (const w of workers) expect(inputsOf(w)).toEqual(["ReadBlob"]);
    const before = await counters(cluster);
    await runJob(cluster, 41);
    const d = delta(await counters(cluster), before);
    expect(d.in).toBe(2 * MATRIX_BYTES);
    expect(d.finishUploads).toBe(2);
    expect(d.out).toBeGreaterThanOrEqual(3 * MATRIX_BYTES);
  });
});
