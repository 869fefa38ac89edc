import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { DescService, MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { BlobService, ErrorInfoSchema, ErrorReason, JobService, type ShardResultSchema, WorkerService } from "@dce/proto";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ALL_ROLES, type Role } from "./access.js";
import { createAuthenticator, type Principal, principalKey } from "./auth.js";
import { Coordinator } from "./coordinator.js";
import { createErrorBoundary } from "./error-boundary.js";
import { Health } from "./gen/grpc/health/v1/health_pb.js";
import { registerHealthService } from "./observability/health.js";
import { resolveConfig } from "./server.js";
import { createMemoryStorage, VirtualClock } from "./testing.js";

// Every error the coordinator answers carries exactly one dce.v1.ErrorInfo with a reason
// (issue 13 item 4): callers branch on the reason, never on the message text. The real
// coordinator, in memory, behind the server's error boundary and access check, is driven
// down every error path a single request can reach, each with the reason docs/errors.md
// names for it (a case without one accepts any reason but UNSPECIFIED).

/** The caller of a request, chosen by the test through the `x-test-caller` header. */
const CALLERS: Record<string, Principal | undefined> = {
  everyone: { roles: new Set<Role>(ALL_ROLES), workerIdentity: "test", clientId: "test" },
  nobody: { roles: new Set<Role>() },
  "revoked-token": { roles: new Set<Role>(), clientId: "someone" },
  "another-worker": { roles: new Set<Role>(ALL_ROLES), workerIdentity: "another", clientId: "test" },
};
const callerOf: Interceptor = (next) => (req) => {
  req.contextValues.set(principalKey, CALLERS[req.header.get("x-test-caller") ?? "everyone"]);
  return next(req);
};

/** One request that fails, and the reason it must carry (undefined: any but UNSPECIFIED). */
interface Case {
  readonly name: string;
  readonly call: () => Promise<unknown>;
  readonly code: Code;
  readonly reason?: ErrorReason;
  readonly metadata?: Record<string, string>;
}

const bytes = (m: Float64Array) => new Uint8Array(m.buffer, m.byteOffset, m.byteLength);
const inline = (rows: number, cols: number) => ({ rows, cols, blobId: "", inlineData: bytes(new Float64Array(rows * cols)) });
/** The blob id of `n` zero bytes. */
const sha256Hex = (n: number) => createHash("sha256").update(new Uint8Array(n)).digest("hex");

let dir: string;
let coordinator: Coordinator;
let client: <S extends DescService>(s: S) => ReturnType<typeof createClient<S>>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dce-error-info-"));
  const quiet = pino({ level: "silent" }, new Writable({ write: (_c, _e, done) => done() }));
  coordinator = await Coordinator.open(resolveConfig({ dataDir: dir, verify: false, localStore: false }), quiet);
  const auth = createAuthenticator({ enabled: false });
  const transport = createRouterTransport(
    (r) => {
      coordinator.routes(r);
      registerHealthService(r, coordinator);
    },
    {
      router: {
        interceptors: [createErrorBoundary(quiet), callerOf, auth.interceptor],
      },
    },
  );
  client = (s) => createClient(s, transport);
});

afterAll(async () => {
  await coordinator?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("the call succeeded");
}

function cases(): Case[] {
  const jobs = client(JobService);
  const blobs = client(BlobService);
  const workers = client(WorkerService);
  const health = client(Health);
  const unknownJob = "no-such-job";
  const unknownWorker = "no-such-worker";
  const lease = { jobId: unknownJob, shardIndex: 0, epoch: 1n };
  return [
    // Authorization (auth.ts).
    {
      name: "no credential",
      call: () => jobs.getJob({ jobId: unknownJob }, { headers: { "x-test-caller": "nobody" } }),
      code: Code.Unauthenticated,
      reason: ErrorReason.UNAUTHENTICATED,
      metadata: { method: "dce.v1.JobService/GetJob" },
    },
    {
      name: "a token whose role may not call",
      call: () => jobs.getJob({ jobId: unknownJob }, { headers: { "x-test-caller": "revoked-token" } }),
      code: Code.PermissionDenied,
      reason: ErrorReason.PERMISSION_DENIED,
    },
    // Core errors (wire.ts REASON_OF_ERROR), with their fields as metadata.
    {
      name: "unknown job",
      call: () => jobs.getJob({ jobId: unknownJob }),
      code: Code.NotFound,
      reason: ErrorReason.JOB_NOT_FOUND,
      metadata: { job_id: unknownJob },
    },
    {
      name: "result of an unknown job",
      call: () => jobs.getResult({ jobId: unknownJob }),
      code: Code.NotFound,
      reason: ErrorReason.JOB_NOT_FOUND,
    },
    {
      name: "cancel an unknown job",
      call: () => jobs.cancelJob({ jobId: unknownJob }),
      code: Code.NotFound,
      reason: ErrorReason.JOB_NOT_FOUND,
    },
    {
      name: "inner dimensions differ",
      call: () => jobs.submitJob({ matmul: { a: inline(2, 3), b: inline(2, 2) } }),
      code: Code.InvalidArgument,
      reason: ErrorReason.INVALID_SPEC,
    },
    {
      name: "a matrix over the size limit",
      call: () =>
        jobs.submitJob({
          matmul: {
            a: { rows: 1_000_000, cols: 1_000_000, blobId: "0".repeat(64) },
            b: { rows: 1_000_000, cols: 1, blobId: "0".repeat(64) },
          },
        }),
      code: Code.ResourceExhausted,
      reason: ErrorReason.OVER_LIMIT,
    },
    {
      name: "heartbeat of an unknown worker",
      call: () => workers.heartbeat({ workerId: unknownWorker, leases: [] }),
      code: Code.NotFound,
      reason: ErrorReason.WORKER_NOT_FOUND,
      metadata: { worker_id: unknownWorker },
    },
    {
      name: "acquire for an unknown worker",
      call: () => workers.acquireShards({ workerId: unknownWorker, maxShards: 1 }),
      code: Code.NotFound,
      reason: ErrorReason.WORKER_NOT_FOUND,
    },
    {
      name: "fail a shard of an unknown worker",
      call: () => workers.failShard({ workerId: unknownWorker, lease }),
      code: Code.NotFound,
      reason: ErrorReason.WORKER_NOT_FOUND,
    },
    // Request checks of wire.ts.
    {
      name: "FailShard without a lease",
      call: () => workers.failShard({ workerId: unknownWorker }),
      code: Code.InvalidArgument,
      reason: ErrorReason.MALFORMED_REQUEST,
    },
    {
      name: "a lease epoch out of range",
      call: () => workers.heartbeat({ workerId: unknownWorker, leases: [{ ...lease, epoch: 2n ** 60n }] }),
      code: Code.InvalidArgument,
      reason: ErrorReason.MALFORMED_REQUEST,
    },
    // Health (observability/health.ts).
    {
      name: "health of an unknown service",
      call: () => health.check({ service: "no.such.Service" }),
      code: Code.NotFound,
      reason: ErrorReason.SERVICE_NOT_FOUND,
    },
    // Request checks of the services (services/*.ts) and the shell (shell/*.ts).
    {
      name: "SubmitJob without a spec",
      call: () => jobs.submitJob({}),
      code: Code.InvalidArgument,
      reason: ErrorReason.MALFORMED_REQUEST,
    },
    {
      name: "a long idempotency key",
      call: () => jobs.submitJob({ idempotencyKey: "k".repeat(200) }),
      code: Code.InvalidArgument,
      reason: ErrorReason.MALFORMED_REQUEST,
    },
    {
      name: "a matrix never uploaded",
      call: () => jobs.submitJob({ matmul: { a: { rows: 1, cols: 1, blobId: "1".repeat(64) }, b: inline(1, 1) } }),
      code: Code.NotFound,
      reason: ErrorReason.BLOB_NOT_FOUND,
      metadata: { blob_id: "1".repeat(64) },
    },
    {
      name: "inline data of the wrong length",
      call: () => jobs.submitJob({ matmul: { a: { ...inline(1, 1), rows: 2 }, b: inline(1, 1) } }),
      code: Code.InvalidArgument,
      reason: ErrorReason.INVALID_SPEC,
    },
    {
      name: "inline data over maxInlineBytes",
      call: () => jobs.submitJob({ matmul: { a: inline(512, 512), b: inline(512, 1) } }),
      code: Code.ResourceExhausted,
      reason: ErrorReason.OVER_LIMIT,
      metadata: { limit: "maxInlineBytes" },
    },
    {
      name: "a blob id that is not the SHA-256 of the inline data",
      call: () => jobs.submitJob({ matmul: { a: { ...inline(1, 1), blobId: "4".repeat(64) }, b: inline(1, 1) } }),
      code: Code.InvalidArgument,
      reason: ErrorReason.INVALID_SPEC,
    },
    {
      name: "an uploaded matrix of the wrong length",
      // A's 16 zero bytes are stored first; B names them as a 2x2 matrix (32 bytes).
      call: () => jobs.submitJob({ matmul: { a: inline(1, 2), b: { rows: 2, cols: 2, blobId: sha256Hex(16) } } }),
      code: Code.InvalidArgument,
      reason: ErrorReason.INVALID_SPEC,
    },
    {
      name: "an upload with a bad sha256",
      call: () => blobs.beginUpload({ sizeBytes: 8n, sha256: "x" }),
      code: Code.InvalidArgument,
      reason: ErrorReason.BLOB_INVALID,
    },
    {
      name: "an upload over the size limit",
      call: () => blobs.beginUpload({ sizeBytes: 2n ** 50n, sha256: "0".repeat(64) }),
      code: Code.ResourceExhausted,
      reason: ErrorReason.OVER_LIMIT,
      metadata: { limit: "maxMatrixBytes" },
    },
    {
      name: "size_bytes out of range",
      call: () => blobs.beginUpload({ sizeBytes: 2n ** 60n }),
      code: Code.InvalidArgument,
      reason: ErrorReason.MALFORMED_REQUEST,
    },
    {
      name: "a chunk of an unknown upload",
      call: () => blobs.uploadChunk({ uploadId: "gone", offset: 0n }),
      code: Code.NotFound,
      reason: ErrorReason.UPLOAD_NOT_FOUND,
      metadata: { upload_id: "gone" },
    },
    {
      name: "a chunk at an offset out of range",
      call: () => blobs.uploadChunk({ uploadId: "gone", offset: 2n ** 60n }),
      code: Code.InvalidArgument,
      reason: ErrorReason.MALFORMED_REQUEST,
    },
    {
      name: "finish an unknown upload",
      call: () => blobs.finishUpload({ uploadId: "gone" }),
      code: Code.NotFound,
      reason: ErrorReason.UPLOAD_NOT_FOUND,
    },
    {
      name: "a local upload without the local store",
      call: () => blobs.finishUpload({ uploadId: "gone", writtenLocally: true }),
      code: Code.FailedPrecondition,
      reason: ErrorReason.LOCAL_STORE_OFF,
    },
    {
      name: "read an unknown blob",
      call: () => blobs.readBlob({ blobId: "2".repeat(64) }),
      code: Code.NotFound,
      reason: ErrorReason.BLOB_NOT_FOUND,
      metadata: { blob_id: "2".repeat(64) },
    },
    {
      name: "read at an offset out of range",
      call: () => blobs.readBlob({ offset: 2n ** 60n }),
      code: Code.InvalidArgument,
      reason: ErrorReason.MALFORMED_REQUEST,
    },
    {
      name: "register without kernels",
      call: () => workers.registerWorker({ name: "w" }),
      code: Code.InvalidArgument,
      reason: ErrorReason.MALFORMED_REQUEST,
    },
    {
      name: "a registration too large",
      call: () => workers.registerWorker({ name: "w".repeat(300), kernels: [{ name: "reference" }] }),
      code: Code.InvalidArgument,
      reason: ErrorReason.MALFORMED_REQUEST,
    },
    {
      name: "acquire zero shards",
      call: () => workers.acquireShards({ workerId: unknownWorker }),
      code: Code.InvalidArgument,
      reason: ErrorReason.MALFORMED_REQUEST,
    },
    {
      name: "complete shards of an unknown worker",
      call: () => workers.completeShards({ workerId: unknownWorker, results: [] }),
      code: Code.NotFound,
      reason: ErrorReason.WORKER_NOT_FOUND,
      metadata: { worker_id: unknownWorker },
    },
    {
      name: "a call naming another identity's worker",
      call: async () => {
        const { workerId } = await workers.registerWorker({ name: "w", kernels: [{ name: "reference", fingerprint: "test/1" }] });
        return workers.heartbeat({ workerId, leases: [] }, { headers: { "x-test-caller": "another-worker" } });
      },
      code: Code.PermissionDenied,
      reason: ErrorReason.WRONG_IDENTITY,
      metadata: { worker_id: expect.any(String) },
    },
  ];
}

describe("every error the coordinator answers carries exactly one ErrorInfo with a reason", () => {
  it("on every error path a single request reaches", async () => {
    const seen: string[] = [];
    for (const c of cases()) {
      const e = await errorOf(c.call());
      const infos = e.findDetails(ErrorInfoSchema);
      const reasons = infos.map((i) => ErrorReason[i.reason]);
      seen.push(`${c.name}: ${Code[e.code]} ${reasons.join(",") || "(no ErrorInfo)"}`);
      expect({ name: c.name, code: e.code, infos: infos.length }, e.rawMessage).toEqual({ name: c.name, code: c.code, infos: 1 });
      const info = infos[0];
      expect(info?.reason, c.name).not.toBe(ErrorReason.UNSPECIFIED);
      if (c.reason !== undefined) expect(ErrorReason[info?.reason ?? 0], c.name).toBe(ErrorReason[c.reason]);
      if (c.metadata !== undefined) expect(info?.metadata, c.name).toMatchObject(c.metadata);
    }
    expect(seen.length).toBeGreaterThanOrEqual(32);
  });

  it("a job's own errors name the job and its state", async () => {
    const jobs = client(JobService);
    const submitted = await jobs.submitJob({ matmul: { a: inline(2, 2), b: inline(2, 2) } });
    const notReady = await errorOf(jobs.getResult({ jobId: submitted.jobId }));
    expect(notReady.code).toBe(Code.FailedPrecondition);
    expect(notReady.findDetails(ErrorInfoSchema)).toEqual([
      expect.objectContaining({ reason: ErrorReason.RESULT_NOT_READY, metadata: { job_id: submitted.jobId, state: "queued" } }),
    ]);
    await jobs.cancelJob({ jobId: submitted.jobId });
    const cancelled = await errorOf(jobs.getResult({ jobId: submitted.jobId }));
    expect(cancelled.findDetails(ErrorInfoSchema)).toEqual([
      expect.objectContaining({
        reason: ErrorReason.RESULT_NOT_READY,
        metadata: { job_id: submitted.jobId, state: "cancelled" },
      }),
    ]);
  });
});

describe("every result CompleteShards does not accept has an ErrorInfo in its outcome", () => {
  let verifyDir: string;
  let verifying: Coordinator;
  afterAll(async () => {
    await verifying?.close();
    if (verifyDir) rmSync(verifyDir, { recursive: true, force: true });
  });

  it("with the reason of each way a result is refused", async () => {
    verifyDir = mkdtempSync(join(tmpdir(), "dce-error-info-outcomes-"));
    const quiet = pino({ level: "silent" });
    const resolved = resolveConfig({ dataDir: verifyDir, localStore: false, verify: true });
    // Verification on the caller's thread: no worker_threads, so no build output is needed.
    verifying = await Coordinator.open({ ...resolved, verify: { ...resolved.verify, threads: 0 } }, quiet);
    const transport = createRouterTransport((r) => verifying.routes(r));
    const jobs = createClient(JobService, transport);
    const workers = createClient(WorkerService, transport);
    const kernels = [{ name: "reference", fingerprint: "test/1" }];
    // A and B are zero, so every tile of C is one zero float64 (1x1 tiles).
    const { jobId } = await jobs.submitJob({
      matmul: { a: inline(2, 2), b: inline(2, 2), tileRows: 1, tileCols: 1, kernel: "reference" },
    });
    const { workerId } = await workers.registerWorker({ name: "w", kernels, threads: 4 });
    const { workerId: other } = await workers.registerWorker({ name: "w2", kernels, threads: 1 });
    const { leases } = await workers.acquireShards({ workerId, maxShards: 4, waitMs: 0 });
    const [l0, l1, l2] = leases.map((l) => l.lease);
    if (!l0 || !l1 || !l2) throw new Error(`expected three leases, got ${leases.length}`);
    const zero = new Uint8Array(8);
    const one = bytes(new Float64Array([1]));
    const outcomeOf = async (result: MessageInitShape<typeof ShardResultSchema>, by = workerId) => {
      const { outcomes } = await workers.completeShards({ workerId: by, results: [result] });
      const [o] = outcomes;
      return { code: Code[o?.code ?? -1] ?? o?.code, reason: ErrorReason[o?.error?.reason ?? 0], metadata: o?.error?.metadata };
    };
    const missing = "3".repeat(64);
    expect(await outcomeOf({ lease: l0, payload: { case: "blobId", value: missing } })).toEqual({
      code: "NotFound",
      reason: "BLOB_NOT_FOUND",
      metadata: { blob_id: missing },
    });
    expect(await outcomeOf({ lease: l0 })).toEqual({ code: "InvalidArgument", reason: "MALFORMED_REQUEST", metadata: {} });
    expect(await outcomeOf({ lease: { ...l0, jobId: "no-such-job" }, payload: { case: "data", value: zero } })).toMatchObject({
      code: "NotFound",
      reason: "JOB_NOT_FOUND",
      metadata: { job_id: "no-such-job" },
    });
    expect(await outcomeOf({ lease: l0, payload: { case: "data", value: new Uint8Array(16) } })).toMatchObject({
      code: "InvalidArgument",
      reason: "INVALID_RESULT",
      metadata: { job_id: jobId, shard_index: String(l0.shardIndex) },
    });
    expect(await outcomeOf({ lease: { ...l0, epoch: l0.epoch + 1000n }, payload: { case: "data", value: zero } })).toMatchObject({
      code: "Aborted",
      reason: "LEASE_LOST",
      metadata: { job_id: jobId },
    });
    expect(await outcomeOf({ lease: l2, payload: { case: "data", value: zero } }, other)).toMatchObject({
      code: "PermissionDenied",
      reason: "NOT_LEASE_HOLDER",
    });
    expect(await outcomeOf({ lease: l1, payload: { case: "data", value: one } })).toMatchObject({
      code: "FailedPrecondition",
      reason: "RESULT_REJECTED",
      metadata: { job_id: jobId, shard_index: String(l1.shardIndex) },
    });
    // Accepted: no ErrorInfo; the same result again was accepted before.
    expect(await outcomeOf({ lease: l0, payload: { case: "data", value: zero } })).toEqual({
      code: 0,
      reason: "UNSPECIFIED",
      metadata: undefined,
    });
    expect(await outcomeOf({ lease: l0, payload: { case: "data", value: zero } })).toMatchObject({
      code: "AlreadyExists",
      reason: "ALREADY_COMPLETED",
    });
    // Another epoch of a shard already done.
    expect(await outcomeOf({ lease: { ...l0, epoch: l0.epoch + 1000n }, payload: { case: "data", value: zero } })).toMatchObject({
      code: "Aborted",
      reason: "STALE_FENCE",
      metadata: { job_id: jobId, epoch: String(l0.epoch + 1000n), current_epoch: String(l0.epoch) },
    });
  });
});

describe("a journal that cannot be written", () => {
  it("answers the waiting call UNAVAILABLE with JOURNAL_FAILED", async () => {
    const storage = createMemoryStorage();
    const quiet = pino({ level: "silent" });
    const c = await Coordinator.open(resolveConfig({ dataDir: "unused", localStore: false, verify: false }), quiet, {
      storage,
      clock: new VirtualClock(1_000_000),
    });
    try {
      const jobs = createClient(
        JobService,
        createRouterTransport((r) => c.routes(r)),
      );
      storage.journal.failCommits(new Error("the write failed"));
      const e = await errorOf(jobs.submitJob({ matmul: { a: inline(1, 1), b: inline(1, 1), kernel: "reference" } }));
      expect({ code: Code[e.code], reasons: e.findDetails(ErrorInfoSchema).map((i) => ErrorReason[i.reason]) }).toEqual({
        code: "Unavailable",
        reasons: ["JOURNAL_FAILED"],
      });
    } finally {
      await c.close().catch(() => {});
    }
  });
});
