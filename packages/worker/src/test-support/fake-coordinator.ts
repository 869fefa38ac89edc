// Test support (excluded from the build): an in-memory coordinator implementing
// WorkerService and BlobService with the semantics the worker relies on, served
// through createRouterTransport. Just enough state to check the worker's behaviour;
// not a model of the real coordinator's scheduling.
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createRouterTransport,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  BlobService,
  ErrorInfoSchema,
  ErrorReason,
  type LeaseRef,
  LeaseRefSchema,
  LeaseState,
  MatMulTaskSchema,
  type MatrixRef,
  MatrixRefSchema,
  type ShardLease,
  ShardLeaseSchema,
  WorkerService,
} from "@dce/proto";
import { float64ToBytes } from "../internal/bytes.js";

/** An error with the ErrorInfo reason the real coordinator sends (docs/errors.md). */
function reasoned(message: string, code: Code, reason: ErrorReason): ConnectError {
  return new ConnectError(message, code, undefined, [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason }) }]);
}

/** A result CompleteShards does not accept, with its reason (as `ShardOutcome.error`). */
function refused(lease: LeaseRef, code: Code, reason: ErrorReason, message: string) {
  return { lease, code, message, error: create(ErrorInfoSchema, { reason }) };
}

export type Method =
  | "registerWorker"
  | "acquireShards"
  | "heartbeat"
  | "completeShards"
  | "failShard"
  | "beginUpload"
  | "uploadChunk"
  | "finishUpload"
  | "readBlob";

interface Shard {
  readonly jobId: string;
  readonly shardIndex: number;
  readonly a: MatrixRef;
  readonly b: MatrixRef;
  readonly rowStart: number;
  readonly rowEnd: number;
  readonly colStart: number;
  readonly colEnd: number;
  readonly kernel: string;
  /** Epoch of the current grant; 0n while queued. */
  epoch: bigint;
  attempt: number;
  state: "queued" | "leased" | "done" | "cancelled" | "failed";
}

export interface FakeJob {
  readonly jobId: string;
  readonly shards: number;
  /** The accepted tiles assembled into the full m×n result (unfilled parts are NaN). */
  result(): Float64Array;
}

export interface FailShardCall {
  readonly workerId: string;
  readonly lease: LeaseRef;
  readonly error: string;
  readonly release: boolean;
}

export interface CompleteCall {
  readonly workerId: string;
  readonly lease: LeaseRef;
  readonly payload: "data" | "blobId" | undefined;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

export class FakeCoordinator {
  /** The services, for createRouterTransport or a real server (connectNodeAdapter). */
  readonly routes: (router: ConnectRouter) => void;
  /** An in-memory transport to {@link FakeCoordinator.routes}. */
  readonly transport: Transport;
  readonly leaseTtlMs: number;
  readonly heartbeatIntervalMs: number;
  readonly maxMessageBytes: number;
  /** Largest chunk BeginUpload advertises and ReadBlob returns. */
  readonly maxChunkBytes: number;

  readonly blobs = new Map<string, Uint8Array>();
  readonly calls: Record<Method, number> = {
    registerWorker: 0,
    acquireShards: 0,
    heartbeat: 0,
    completeShards: 0,
    failShard: 0,
    beginUpload: 0,
    uploadChunk: 0,
    finishUpload: 0,
    readBlob: 0,
  };
  /** Bytes served per blob id. */
  readonly bytesRead = new Map<string, number>();
  /** Every ReadBlob, in order. */
  readonly readCalls: { blobId: string; offset: number }[] = [];
  readonly failShardCalls: FailShardCall[] = [];
  readonly completeCalls: CompleteCall[] = [];
  /** Heartbeat requests: the lease keys each one carried. */
  readonly heartbeats: string[][] = [];
  /** Outcome override for a result: return a code (and message) instead of the normal decision. */
  completeOverride: ((lease: LeaseRef) => { code: number; message: string } | undefined) | undefined;
  /** The next this many chunks are refused as a full disk refuses them: RESOURCE_EXHAUSTED, and the upload is dropped. */
  refuseChunks = 0;

  readonly #workers = new Set<string>();
  #workerSeq = 0;
  #epochSeq = 0n;
  #jobSeq = 0;
  readonly #shards: Shard[] = [];
  readonly #tiles = new Map<string, Uint8Array>();
  readonly #uploads = new Map<string, { sizeBytes: number; sha256: string; parts: Uint8Array[]; received: number }>();
  #uploadSeq = 0;
  readonly #faults = new Map<Method, { code: Code; remaining: number }>();
  readonly #networkFaults = new Map<Method, { code: Code; remaining: number }>();
  #wake: (() => void)[] = [];

  constructor(
    options: { leaseTtlMs?: number; heartbeatIntervalMs?: number; maxMessageBytes?: number; maxChunkBytes?: number } = {},
  ) {
    this.leaseTtlMs = options.leaseTtlMs ?? 5_000;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 20;
    this.maxMessageBytes = options.maxMessageBytes ?? 4 * 1024 * 1024;
    this.maxChunkBytes = options.maxChunkBytes ?? 1024 * 1024;
    this.routes = ({ service }) => {
      service(WorkerService, {
        registerWorker: (req) => {
          this.#enter("registerWorker");
          const workerId = `w-${++this.#workerSeq}`;
          this.#workers.add(workerId);
          this.registered.push({
            workerId,
            name: req.name,
            threads: req.threads,
            kernels: req.kernels.map((k) => k.fingerprint),
          });
          return {
            workerId,
            leaseTtlMs: this.leaseTtlMs,
            heartbeatIntervalMs: this.heartbeatIntervalMs,
            maxMessageBytes: this.maxMessageBytes,
          };
        },
        acquireShards: async (req, ctx) => {
          this.#enter("acquireShards");
          this.#checkWorker(req.workerId);
          const deadline = Date.now() + req.waitMs;
          for (;;) {
            const queued = this.#shards.filter((s) => s.state === "queued").slice(0, req.maxShards);
            if (queued.length > 0) return { leases: queued.map((s) => this.#grant(s)) };
            const leftMs = deadline - Date.now();
            if (leftMs <= 0 || ctx.signal.aborted) return { leases: [] };
            await new Promise<void>((resolve) => {
              const t = setTimeout(resolve, leftMs);
              ctx.signal.addEventListener("abort", () => resolve(), { once: true });
              this.#wake.push(() => {
                clearTimeout(t);
                resolve();
              });
            });
          }
        },
        heartbeat: (req) => {
          this.#enter("heartbeat");
          this.#checkWorker(req.workerId);
          this.heartbeats.push(req.leases.map(keyOf));
          return {
            leases: req.leases.map((lease) => {
              const s = this.#find(lease);
              if (s?.state === "cancelled") return { lease, state: LeaseState.CANCELLED };
              if (s === undefined || s.state !== "leased" || s.epoch !== lease.epoch) {
                return { lease, state: LeaseState.LOST };
              }
              return { lease, state: LeaseState.ACTIVE, ttlMs: this.leaseTtlMs };
            }),
          };
        },
        completeShards: (req) => {
          this.#enter("completeShards");
          this.#checkWorker(req.workerId);
          return {
            outcomes: req.results.map((r) => {
              const lease = r.lease ?? create(LeaseRefSchema);
              this.completeCalls.push({ workerId: req.workerId, lease, payload: r.payload.case });
              const override = this.completeOverride?.(lease);
              if (override !== undefined) return { lease, ...override };
              const s = this.#find(lease);
              if (s === undefined) return refused(lease, Code.NotFound, ErrorReason.JOB_NOT_FOUND, "unknown job");
              if (s.state === "done" && s.epoch === lease.epoch) {
                return refused(lease, Code.AlreadyExists, ErrorReason.ALREADY_COMPLETED, "");
              }
              if (s.state !== "leased" || s.epoch !== lease.epoch) {
                return refused(lease, Code.Aborted, ErrorReason.STALE_FENCE, `stale epoch ${lease.epoch}`);
              }
              const bytes = r.payload.case === "data" ? r.payload.value : this.blobs.get(r.payload.value ?? "");
              const want = (s.rowEnd - s.rowStart) * (s.colEnd - s.colStart) * 8;
              if (bytes?.byteLength !== want) {
                const message = `tile has ${bytes?.byteLength} bytes, want ${want}`;
                return refused(lease, Code.InvalidArgument, ErrorReason.INVALID_RESULT, message);
              }
              this.#tiles.set(`${s.jobId}/${s.shardIndex}`, bytes.slice());
              s.state = "done";
              return { lease, code: 0, message: "" };
            }),
          };
        },
        failShard: (req) => {
          this.#enter("failShard");
          this.#checkWorker(req.workerId);
          const lease = req.lease ?? create(LeaseRefSchema);
          this.failShardCalls.push({ workerId: req.workerId, lease, error: req.error, release: req.release });
          const s = this.#find(lease);
          if (s !== undefined && s.state === "leased" && s.epoch === lease.epoch) {
            if (req.release) s.attempt--;
            // like the real coordinator, give up on a shard after 3 failed attempts
            s.state = s.attempt >= 3 ? "failed" : "queued";
          }
          return {};
        },
      });
      service(BlobService, {
        beginUpload: (req) => {
          this.#enter("beginUpload");
          if (this.blobs.has(req.sha256)) return { alreadyPresent: true };
          const uploadId = `u-${++this.#uploadSeq}`;
          this.#uploads.set(uploadId, { sizeBytes: Number(req.sizeBytes), sha256: req.sha256, parts: [], received: 0 });
          return { uploadId, maxChunkBytes: this.maxChunkBytes };
        },
        uploadChunk: (req) => {
          this.#enter("uploadChunk");
          if (this.refuseChunks > 0) {
            this.refuseChunks--;
            this.#uploads.delete(req.uploadId);
            throw new ConnectError("data dir /test is full (ENOSPC) while writing upload", Code.ResourceExhausted);
          }
          const u = this.#uploads.get(req.uploadId);
          if (u === undefined) throw reasoned("unknown upload", Code.NotFound, ErrorReason.UPLOAD_NOT_FOUND);
          if (Number(req.offset) !== u.received) throw new ConnectError("out of order", Code.InvalidArgument);
          if (req.data.byteLength > this.maxChunkBytes) throw new ConnectError("chunk too big", Code.InvalidArgument);
          u.parts.push(req.data.slice());
          u.received += req.data.byteLength;
          return { receivedBytes: BigInt(u.received) };
        },
        finishUpload: (req) => {
          this.#enter("finishUpload");
          const u = this.#uploads.get(req.uploadId);
          if (u === undefined) throw reasoned("unknown upload", Code.NotFound, ErrorReason.UPLOAD_NOT_FOUND);
          const all = Buffer.concat(u.parts);
          if (all.byteLength !== u.sizeBytes || sha256(all) !== u.sha256) {
            throw new ConnectError("size or sha256 mismatch", Code.InvalidArgument);
          }
          this.blobs.set(u.sha256, new Uint8Array(all));
          return { blobId: u.sha256 };
        },
        readBlob: (req) => {
          this.#enter("readBlob");
          const blob = this.blobs.get(req.blobId);
          if (blob === undefined) {
            throw reasoned(`blob ${req.blobId} not found`, Code.NotFound, ErrorReason.BLOB_NOT_FOUND);
          }
          const offset = Number(req.offset);
          this.readCalls.push({ blobId: req.blobId, offset });
          const data = blob.subarray(offset, offset + Math.min(req.maxBytes, this.maxChunkBytes));
          this.bytesRead.set(req.blobId, (this.bytesRead.get(req.blobId) ?? 0) + data.byteLength);
          return { data, totalBytes: BigInt(blob.byteLength) };
        },
      });
    };
    // Client-side faults: what connect-node raises when the connection breaks mid-call.
    const networkFaults: Interceptor = (next) => async (req) => {
      const fault = this.#networkFaults.get(req.method.localName as Method);
      if (fault !== undefined && fault.remaining > 0) {
        fault.remaining--;
        const reset = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET", syscall: "read" });
        const err = new ConnectError(reset.message, fault.code);
        err.cause = reset;
        throw err;
      }
      return next(req);
    };
    this.transport = createRouterTransport(this.routes, { transport: { interceptors: [networkFaults] } });
  }

  readonly registered: { workerId: string; name: string; threads: number; kernels: string[] }[] = [];

  /** Stores a matrix as a blob; returns its reference. */
  putMatrix(rows: number, cols: number, values: Float64Array): MatrixRef {
    const bytes = float64ToBytes(values).slice();
    const blobId = sha256(bytes);
    this.blobs.set(blobId, bytes);
    return create(MatrixRefSchema, { rows, cols, blobId });
  }

  /** Queues C = A × B cut into tiles of at most tileRows × tileCols. */
  addJob(a: MatrixRef, b: MatrixRef, tileRows: number, tileCols: number, kernel = "reference"): FakeJob {
    const jobId = `job-${++this.#jobSeq}`;
    let shardIndex = 0;
    for (let r = 0; r < a.rows; r += tileRows) {
      for (let c = 0; c < b.cols; c += tileCols) {
        this.#shards.push({
          jobId,
          shardIndex: shardIndex++,
          a,
          b,
          rowStart: r,
          rowEnd: Math.min(r + tileRows, a.rows),
          colStart: c,
          colEnd: Math.min(c + tileCols, b.cols),
          kernel,
          epoch: 0n,
          attempt: 0,
          state: "queued",
        });
      }
    }
    for (const wake of this.#wake.splice(0)) wake();
    const shards = shardIndex;
    return {
      jobId,
      shards,
      result: () => {
        const out = new Float64Array(a.rows * b.cols).fill(Number.NaN);
        for (const s of this.#shards.filter((x) => x.jobId === jobId)) {
          const tile = this.#tiles.get(`${jobId}/${s.shardIndex}`);
          if (tile === undefined) continue;
          const t = new Float64Array(tile.buffer, tile.byteOffset, tile.byteLength / 8);
          const n = s.colEnd - s.colStart;
          for (let i = s.rowStart; i < s.rowEnd; i++) {
            out.set(t.subarray((i - s.rowStart) * n, (i - s.rowStart + 1) * n), i * b.cols + s.colStart);
          }
        }
        return out;
      },
    };
  }

  /** Number of accepted tiles of a job. */
  doneCount(jobId: string): number {
    return this.#shards.filter((s) => s.jobId === jobId && s.state === "done").length;
  }

  /** The current grant of a shard, if leased. */
  leaseOf(jobId: string, shardIndex: number): LeaseRef | undefined {
    const s = this.#shards.find((x) => x.jobId === jobId && x.shardIndex === shardIndex);
    if (s === undefined || s.state !== "leased") return undefined;
    return create(LeaseRefSchema, { jobId, shardIndex, epoch: s.epoch });
  }

  /** Cancels a job: its leases report CANCELLED and nothing more is granted. */
  cancelJob(jobId: string): void {
    for (const s of this.#shards) if (s.jobId === jobId && s.state !== "done") s.state = "cancelled";
  }

  /** Expires a shard's lease: heartbeats report LOST, and the shard is queued for a new grant. */
  loseLease(jobId: string, shardIndex: number): void {
    const s = this.#shards.find((x) => x.jobId === jobId && x.shardIndex === shardIndex);
    if (s === undefined) return;
    s.state = "queued";
    for (const wake of this.#wake.splice(0)) wake();
  }

  /** Forgets every worker, as after a restart: their next call gets NOT_FOUND. */
  forgetWorkers(): void {
    this.#workers.clear();
  }

  /** Makes the next `times` calls of `method` fail with `code`. */
  failNext(method: Method, code: Code, times = 1): void {
    this.#faults.set(method, { code, remaining: times });
  }

  /**
   * Makes the next `times` calls of `method` fail on the client side as a reset
   * connection does in connect-node: `code` (ABORTED for ECONNRESET) with the Node.js
   * error as cause. The coordinator never sees these calls.
   */
  failNextOnNetwork(method: Method, code: Code, times = 1): void {
    this.#networkFaults.set(method, { code, remaining: times });
  }

  #enter(method: Method): void {
    this.calls[method]++;
    const fault = this.#faults.get(method);
    if (fault !== undefined && fault.remaining > 0) {
      fault.remaining--;
      throw new ConnectError(`injected ${Code[fault.code]}`, fault.code);
    }
  }

  #checkWorker(workerId: string): void {
    if (!this.#workers.has(workerId)) {
      // As the coordinator does: the reason, not the text, says which thing was not found.
      throw reasoned(`worker ${workerId} is not registered (register again)`, Code.NotFound, ErrorReason.WORKER_NOT_FOUND);
    }
  }

  #find(lease: LeaseRef): Shard | undefined {
    return this.#shards.find((s) => s.jobId === lease.jobId && s.shardIndex === lease.shardIndex);
  }

  #grant(s: Shard): ShardLease {
    s.state = "leased";
    s.epoch = ++this.#epochSeq;
    s.attempt++;
    return create(ShardLeaseSchema, {
      lease: { jobId: s.jobId, shardIndex: s.shardIndex, epoch: s.epoch },
      kernel: s.kernel,
      ttlMs: this.leaseTtlMs,
      attempt: s.attempt,
      matmul: create(MatMulTaskSchema, {
        a: s.a,
        b: s.b,
        rowStart: s.rowStart,
        rowEnd: s.rowEnd,
        colStart: s.colStart,
        colEnd: s.colEnd,
      }),
    });
  }
}

export function keyOf(lease: LeaseRef): string {
  return `${lease.jobId}/${lease.shardIndex}@${lease.epoch}`;
}
