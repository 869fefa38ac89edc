/**
 * An in-memory coordinator implementing JobService and BlobService over
 * `createRouterTransport`, for SDK and CLI tests. Not part of the build.
 *
 * Jobs advance by script: each long-poll `GetJob` that finds nothing new
 * applies the job's next scripted step, or blocks until one is pushed or the
 * call is aborted. No timers are involved.
 */
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createRouterTransport,
  type HandlerContext,
  type Transport,
} from "@connectrpc/connect";
import { BlobService, JobService, JobState, type JobStatus, JobStatusSchema } from "@dce/proto";

/** A change applied to a job's status (version is bumped automatically). */
export type JobStep = Partial<Pick<JobStatus, "state" | "shardsDone" | "shardsLeased" | "shardsRetried" | "error" | "kernel">>;

export interface RecordedCall {
  method: string;
  request: Record<string, unknown>;
  timeoutMs: number | undefined;
}

export interface FakeCoordinatorOptions {
  /** max_chunk_bytes announced by BeginUpload; default 1 MiB. */
  maxChunkBytes?: number;
  /** Largest chunk ReadBlob returns regardless of max_bytes; default unlimited. */
  readChunkBytes?: number;
  /** Server-side message limit (router readMaxBytes/writeMaxBytes). */
  maxMessageBytes?: number;
  /** The first N long-polls that find nothing new return the unchanged status at once, as if wait_ms ran out. */
  idleReturns?: number;
  /** Script each submitted job follows; default: run, then succeed with the true product. */
  script?: (spec: { rows: number; cols: number; shardsTotal: number }) => JobStep[];
}

interface FakeJob {
  status: JobStatus;
  steps: JobStep[];
  wake: Array<() => void>;
  spec: { aBlob: string; bBlob: string; m: number; k: number; n: number };
  resultBlob?: string;
}

export interface FakeCoordinator {
  transport: Transport;
  /** The same services, to mount on a real server (connectNodeAdapter). */
  routes: (router: ConnectRouter) => void;
  calls: RecordedCall[];
  blobs: Map<string, Uint8Array>;
  jobs: Map<string, FakeJob>;
  /** Adds scripted steps to a job and wakes pending long-polls. */
  push(jobId: string, ...steps: JobStep[]): void;
  /** Resolves once a long-poll GetJob is blocked waiting for news. */
  nextBlockedPoll(): Promise<void>;
  /** Stores bytes as a blob (e.g. to corrupt a result); returns its id. */
  putBlob(bytes: Uint8Array, id?: string): string;
  callsOf(method: string): RecordedCall[];
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function bytesOf(data: Float64Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Naive C = A x B, the oracle for result checks. */
export function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p] as number;
      for (let j = 0; j < n; j++) c[i * n + j] = (c[i * n + j] as number) + x * (b[p * n + j] as number);
    }
  return c;
}

export function createFakeCoordinator(options: FakeCoordinatorOptions = {}): FakeCoordinator {
  const maxChunkBytes = options.maxChunkBytes ?? 1 << 20;
  const calls: RecordedCall[] = [];
  const blobs = new Map<string, Uint8Array>();
  const uploads = new Map<string, { size: number; sha256: string; parts: Uint8Array[]; received: number }>();
  const jobs = new Map<string, FakeJob>();
  const blockedWaiters: Array<() => void> = [];
  let nextId = 1;
  let nextJobId = 1;
  let idleReturns = options.idleReturns ?? 0;

  const record = (method: string, request: object, ctx: HandlerContext): void => {
    calls.push({ method, request: { ...request } as Record<string, unknown>, timeoutMs: ctx.timeoutMs() });
  };

  const putBlob = (bytes: Uint8Array, id?: string): string => {
    const blobId = id ?? sha256Hex(bytes);
    blobs.set(blobId, bytes.slice());
    return blobId;
  };

  const getJob = (jobId: string): FakeJob => {
    const job = jobs.get(jobId);
    if (job === undefined) throw new ConnectError(`job ${jobId} not found`, Code.NotFound);
    return job;
  };

  const isTerminal = (s: JobState): boolean => s === JobState.SUCCEEDED || s === JobState.FAILED || s === JobState.CANCELLED;

  const apply = (job: FakeJob, step: JobStep): void => {
    const s = job.status;
    Object.assign(s, step);
    s.version += 1n;
    if (step.state === JobState.RUNNING && s.startedAtMs === 0n) s.startedAtMs = 1_700_000_001_000n;
    if (step.state !== undefined && isTerminal(step.state)) {
      s.finishedAtMs = 1_700_000_009_000n;
      if (step.state === JobState.SUCCEEDED) {
        const a = new Float64Array((blobs.get(job.spec.aBlob) as Uint8Array).slice().buffer);
        const b = new Float64Array((blobs.get(job.spec.bBlob) as Uint8Array).slice().buffer);
        job.resultBlob = putBlob(bytesOf(matmul(a, b, job.spec.m, job.spec.k, job.spec.n)));
      }
    }
    for (const w of job.wake.splice(0)) w();
  };

  const defaultScript = (spec: { shardsTotal: number }): JobStep[] => {
    const steps: JobStep[] = [{ state: JobState.RUNNING, shardsLeased: 1, kernel: "reference" }];
    for (let i = 1; i <= spec.shardsTotal; i++) steps.push({ shardsDone: i });
    steps.push({ state: JobState.SUCCEEDED, shardsLeased: 0 });
    return steps;
  };

  const routes = (router: ConnectRouter): void => {
    router.service(BlobService, {
      beginUpload(req, ctx) {
        record("BeginUpload", req, ctx);
        if (blobs.has(req.sha256)) return { alreadyPresent: true, maxChunkBytes };
        const uploadId = `up-${nextId++}`;
        uploads.set(uploadId, { size: Number(req.sizeBytes), sha256: req.sha256, parts: [], received: 0 });
        return { uploadId, maxChunkBytes };
      },
      uploadChunk(req, ctx) {
        record("UploadChunk", { uploadId: req.uploadId, offset: req.offset, length: req.data.length }, ctx);
        const up = uploads.get(req.uploadId);
        if (up === undefined) throw new ConnectError("unknown upload", Code.NotFound);
        if (req.data.length > maxChunkBytes) throw new ConnectError("chunk too large", Code.InvalidArgument);
        if (Number(req.offset) !== up.received) throw new ConnectError("out of order", Code.FailedPrecondition);
        up.parts.push(req.data.slice());
        up.received += req.data.length;
        return { receivedBytes: BigInt(up.received) };
      },
      finishUpload(req, ctx) {
        record("FinishUpload", req, ctx);
        const up = uploads.get(req.uploadId);
        if (up === undefined) throw new ConnectError("unknown upload", Code.NotFound);
        const all = new Uint8Array(up.received);
        let off = 0;
        for (const p of up.parts) {
          all.set(p, off);
          off += p.length;
        }
        if (all.length !== up.size || sha256Hex(all) !== up.sha256) {
          throw new ConnectError("size or sha256 mismatch", Code.InvalidArgument);
        }
        uploads.delete(req.uploadId);
        return { blobId: putBlob(all) };
      },
      readBlob(req, ctx) {
        record("ReadBlob", req, ctx);
        const blob = blobs.get(req.blobId);
        if (blob === undefined) throw new ConnectError("no blob", Code.NotFound);
        const limit = Math.min(req.maxBytes, options.readChunkBytes ?? Number.POSITIVE_INFINITY);
        const start = Number(req.offset);
        return { data: blob.subarray(start, start + limit), totalBytes: BigInt(blob.length) };
      },
    });
    router.service(JobService, {
      submitJob(req, ctx) {
        record("SubmitJob", req, ctx);
        const spec = req.matmul;
        const a = spec?.a;
        const b = spec?.b;
        if (spec === undefined || a === undefined || b === undefined) {
          throw new ConnectError("missing spec", Code.InvalidArgument);
        }
        // Small matrices arrive inline; like the real coordinator, store them and name them.
        for (const ref of [a, b]) if (ref.inlineData.byteLength > 0) ref.blobId = putBlob(ref.inlineData);
        if (!blobs.has(a.blobId) || !blobs.has(b.blobId)) throw new ConnectError("unknown blob", Code.InvalidArgument);
        if (a.cols !== b.rows) throw new ConnectError("inner dimensions", Code.InvalidArgument);
        const tileRows = spec.tileRows || 2;
        const tileCols = spec.tileCols || 2;
        const shardsTotal = Math.ceil(a.rows / tileRows) * Math.ceil(b.cols / tileCols);
        const jobId = `job-${nextJobId++}`;
        const status = create(JobStatusSchema, {
          jobId,
          state: JobState.QUEUED,
          shardsTotal,
          createdAtMs: 1_700_000_000_000n,
          version: 1n,
          kernel: spec.kernel,
          rows: a.rows,
          cols: b.cols,
          tileRows,
          tileCols,
        });
        const script = options.script ?? defaultScript;
        jobs.set(jobId, {
          status,
          steps: script({ rows: a.rows, cols: b.cols, shardsTotal }),
          wake: [],
          spec: { aBlob: a.blobId, bBlob: b.blobId, m: a.rows, k: a.cols, n: b.cols },
        });
        return { jobId, created: true, status };
      },
      async getJob(req, ctx) {
        record("GetJob", req, ctx);
        const job = getJob(req.jobId);
        if (req.waitMs === 0 || (!req.untilTerminal && job.status.version > req.afterVersion) || isTerminal(job.status.state)) {
          return { status: job.status };
        }
        if (idleReturns > 0) {
          idleReturns--;
          return { status: job.status };
        }
        if (req.untilTerminal) {
          // Like the real coordinator: progress is not news, only the end of the job is.
          for (let next = job.steps.shift(); next !== undefined; next = job.steps.shift()) {
            apply(job, next);
            if (isTerminal(job.status.state)) return { status: job.status };
          }
        }
        const step = job.steps.shift();
        if (step !== undefined) {
          apply(job, step);
          return { status: job.status };
        }
        // Nothing scripted: block like a real long-poll until news or abort.
        await new Promise<void>((resolve, reject) => {
          job.wake.push(resolve);
          ctx.signal.addEventListener("abort", () => reject(ConnectError.from(ctx.signal.reason)), { once: true });
          for (const w of blockedWaiters.splice(0)) w();
        });
        return { status: job.status };
      },
      getResult(req, ctx) {
        record("GetResult", req, ctx);
        const job = getJob(req.jobId);
        if (job.status.state !== JobState.SUCCEEDED || job.resultBlob === undefined) {
          throw new ConnectError("job has not succeeded", Code.FailedPrecondition);
        }
        const size = (blobs.get(job.resultBlob) as Uint8Array).length;
        return {
          result: { rows: job.spec.m, cols: job.spec.n, blobId: job.resultBlob },
          sizeBytes: BigInt(size),
        };
      },
      cancelJob(req, ctx) {
        record("CancelJob", req, ctx);
        const job = getJob(req.jobId);
        const s = job.status.state;
        if (s === JobState.CANCELLED) return { status: job.status };
        if (isTerminal(s)) throw new ConnectError("job already finished", Code.FailedPrecondition);
        job.steps = [];
        apply(job, { state: JobState.CANCELLED, error: req.reason, shardsLeased: 0 });
        return { status: job.status };
      },
    });
  };
  const transport = createRouterTransport(
    routes,
    options.maxMessageBytes === undefined
      ? {}
      : {
          router: { readMaxBytes: options.maxMessageBytes, writeMaxBytes: options.maxMessageBytes },
        },
  );

  return {
    transport,
    routes,
    calls,
    blobs,
    jobs,
    putBlob,
    push(jobId, ...steps) {
      const job = getJob(jobId);
      const [first, ...rest] = steps;
      job.steps.push(...rest);
      if (first !== undefined) apply(job, first);
    },
    nextBlockedPoll: () => new Promise<void>((resolve) => blockedWaiters.push(resolve)),
    callsOf: (method) => calls.filter((c) => c.method === method),
  };
}
