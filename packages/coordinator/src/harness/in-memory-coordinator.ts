import { create } from "@bufbuild/protobuf";
import { type Client, createClient, createRouterTransport, type Interceptor, type Transport } from "@connectrpc/connect";
import { asJobId, type CoreConfig, type JobRecord } from "@dce/core";
import { JobService, JobState, type MatrixRef, MatrixRefSchema, WorkerService } from "@dce/proto";
import pino from "pino";
import { ALL_ROLES } from "../access.js";
import { principalKey } from "../auth.js";
import { Coordinator, type CoordinatorConfig } from "../coordinator.js";
import { createMemoryStorage, type MemoryStorage } from "../memory/memory-storage.js";
import { type Clock, systemClock } from "../ports/clock.js";
import { type CoordinatorOptions, resolveConfig } from "../server.js";
import { CallLog } from "./call-log.js";
import { FaultInjector } from "./fault-injector.js";

/** Settings of {@link startInMemoryCoordinator}; each has a default. */
export interface InMemoryCoordinatorOptions {
  /**
   * The coordinator's clock. Default: the wall clock, which {@link InMemoryCoordinator.skipMs}
   * can move ahead. Pass a `VirtualClock` to drive time by hand.
   */
  readonly clock?: Clock;
  /** Coordinator settings, as for `startCoordinator` (lease TTL, limits, `verify`…). Default `leaseTtlMs` 5 000, `verify` off. */
  readonly coordinator?: CoordinatorOptions;
  /**
   * Limits the coordinator's replies tell callers, tighter than it enforces, so small data
   * exercises chunking: RegisterWorker's `maxMessageBytes` and `heartbeatIntervalMs`,
   * BeginUpload's `maxChunkBytes`.
   */
  readonly advertise?: { maxMessageBytes?: number; maxChunkBytes?: number; heartbeatIntervalMs?: number };
  /** Core tunables `coordinator` has no option for (retry delays, worker TTL…), over the resolved ones. */
  readonly core?: Partial<CoreConfig>;
  /** How often the coordinator ticks (expires leases, forgets workers), in ms. Default: from the lease TTL. */
  readonly tickIntervalMs?: number;
  /** Folder where blobs are written when verification reads them (needed with `verify` on). */
  readonly spillDir?: string;
  /** Fresh ids for jobs and workers, in the order the coordinator asks. Default `crypto.randomUUID`. */
  readonly newId?: () => string;
  /**
   * Whether grants carry small inputs inline, as the coordinator does (default true). False
   * strips them, so every input is read with ReadBlob (for tests about reading).
   */
  readonly inlineInputs?: boolean;
}

/**
 * The real `Coordinator` (services, shell, core) in memory, for tests of its clients: its
 * {@link transport} records every call ({@link calls}) and carries injected faults
 * ({@link faults}). Authentication is off: every caller acts as the development principal.
 */
export interface InMemoryCoordinator {
  /** The transport for the code under test: recorded, with faults. */
  readonly transport: Transport;
  /** The calls made through {@link transport}. */
  readonly calls: CallLog;
  /** Faults on {@link transport}. */
  readonly faults: FaultInjector;
  /** The coordinator now serving (a new one after {@link restart}). */
  readonly coordinator: Coordinator;
  /** Its storage, kept across restarts. */
  readonly storage: MemoryStorage;
  /** Clients on a plain transport (neither recorded nor faulty), for the test's own calls. */
  readonly jobs: Client<typeof JobService>;
  readonly workers: Client<typeof WorkerService>;
  /** Stores a row-major float64 matrix as a blob (no RPC); returns its reference. */
  putMatrix(rows: number, cols: number, values: Float64Array): MatrixRef;
  /** Submits C = A × B cut into tiles of at most tileRows × tileCols; returns the job id and its shard count. */
  submit(
    a: MatrixRef,
    b: MatrixRef,
    tileRows: number,
    tileCols: number,
    kernel?: string,
  ): Promise<{ jobId: string; shards: number }>;
  /** The job's record in the core state, or undefined. Read only. */
  job(jobId: string): Readonly<JobRecord> | undefined;
  /** The job's accepted tiles. */
  doneCount(jobId: string): number;
  /**
   * Waits for the job to end (a long-poll on the coordinator's clock: with a `VirtualClock`,
   * advance it) and returns C. @throws Error when it ends otherwise than succeeded.
   */
  result(jobId: string): Promise<Float64Array>;
  /** Moves the default clock `ms` ahead: leases and workers may expire at the next tick. */
  skipMs(ms: number): void;
  /** Closes the coordinator and opens a new one on the same storage (it forgets workers and leases). */
  restart(): Promise<void>;
  /** Closes the coordinator. Idempotent. */
  close(): Promise<void>;
}

/**
 * Request header naming the worker identity a call comes from, as a verified client
 * certificate's CN would (authentication is otherwise off). For tests about identities.
 */
export const WORKER_IDENTITY_HEADER = "x-dce-test-worker-identity";

/** Sets the caller's principal from {@link WORKER_IDENTITY_HEADER} when a call sends it. */
const workerIdentityFromHeader: Interceptor = (next) => (req) => {
  const identity = req.header.get(WORKER_IDENTITY_HEADER);
  if (identity !== null) req.contextValues.set(principalKey, { roles: new Set(ALL_ROLES), workerIdentity: identity });
  return next(req);
};

/** A wall clock that a test can move ahead. */
function skippableClock(): Clock & { skipMs(ms: number): void } {
  let skewMs = 0;
  return {
    nowMs: () => systemClock.nowMs() + skewMs,
    setTimer: (ms, fn) => systemClock.setTimer(ms, fn),
    skipMs(ms) {
      skewMs += ms;
    },
  };
}

/**
 * Opens the real coordinator in memory (see {@link InMemoryCoordinator}). Close it after
 * the test (`close()`); it holds no process, file or socket.
 */
export async function startInMemoryCoordinator(options: InMemoryCoordinatorOptions = {}): Promise<InMemoryCoordinator> {
  const skippable = options.clock === undefined ? skippableClock() : undefined;
  const clock = options.clock ?? (skippable as Clock);
  const resolved = resolveConfig({
    dataDir: "memory",
    leaseTtlMs: 5_000,
    verify: false,
    fsync: false,
    ...options.coordinator,
    localStore: false,
  });
  // Verification on the caller's thread: no worker_threads, so no build output is needed.
  const config: CoordinatorConfig = {
    ...resolved,
    verify: { ...resolved.verify, threads: 0 },
    core: { ...resolved.core, ...options.core },
    ...(options.tickIntervalMs === undefined ? {} : { tickIntervalMs: options.tickIntervalMs }),
  };
  const storage = createMemoryStorage({
    uploadIdleMs: config.uploadIdleMs,
    maxOpenUploads: config.maxOpenUploads,
    ...(options.spillDir === undefined ? {} : { spillDir: options.spillDir }),
  });
  const logger = pino({ level: "silent" });
  const open = () => Coordinator.open(config, logger, { storage, clock, ...(options.newId ? { newId: options.newId } : {}) });
  let coordinator = await open();
  const calls = new CallLog();
  const faults = new FaultInjector();
  shapeReplies(faults, options);
  const interceptors = [faults.networkInterceptor(), calls.interceptor(), faults.coordinatorInterceptor()];
  const router = {
    readMaxBytes: config.maxMessageBytes,
    writeMaxBytes: config.maxMessageBytes,
    interceptors: [workerIdentityFromHeader],
  };
  // Both transports route to whichever coordinator serves now (restart() opens another).
  const connect = () => ({
    traced: createRouterTransport((r) => coordinator.routes(r), { router, transport: { interceptors } }),
    plain: createRouterTransport((r) => coordinator.routes(r), { router }),
  });
  let inner = connect();
  const transport: Transport = {
    unary: (...args) => inner.traced.unary(...args),
    stream: (...args) => inner.traced.stream(...args),
  };
  const plain: Transport = {
    unary: (...args) => inner.plain.unary(...args),
    stream: (...args) => inner.plain.stream(...args),
  };
  const jobs = createClient(JobService, plain);
  const workers = createClient(WorkerService, plain);
  let closed: Promise<void> | undefined;

  return {
    transport,
    calls,
    faults,
    get coordinator() {
      return coordinator;
    },
    storage,
    jobs,
    workers,
    putMatrix(rows, cols, values) {
      const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
      return create(MatrixRefSchema, { rows, cols, blobId: storage.blobs.put(bytes) });
    },
    async submit(a, b, tileRows, tileCols, kernel = "reference") {
      const res = await jobs.submitJob({ matmul: { a, b, tileRows, tileCols, kernel } });
      return { jobId: res.jobId, shards: res.status?.shardsTotal ?? 0 };
    },
    job: (jobId) => coordinator.state.jobs.get(asJobId(jobId)),
    doneCount: (jobId) => coordinator.state.jobs.get(asJobId(jobId))?.doneCount ?? 0,
    async result(jobId) {
      const res = await jobs.getJob({ jobId, waitMs: config.maxLongPollMs, untilTerminal: true, inlineResultMaxBytes: 1 << 30 });
      if (res.status?.state !== JobState.SUCCEEDED) {
        throw new Error(`job ${jobId} is ${JobState[res.status?.state ?? 0]}: ${res.status?.error ?? ""}`);
      }
      const ref = res.result;
      let data = ref?.inlineData ?? new Uint8Array(0);
      // Over the inline limit, C is only named: read it from the blob store.
      if (data.byteLength === 0 && ref !== undefined && ref.blobId !== "") {
        data = storage.blobs.read(ref.blobId, 0, storage.blobs.sizeOf(ref.blobId) ?? 0).data;
      }
      return new Float64Array(data.slice().buffer);
    },
    skipMs(ms) {
      if (!skippable) throw new Error("skipMs needs the default clock; advance your own clock instead");
      skippable.skipMs(ms);
    },
    async restart() {
      await coordinator.close();
      coordinator = await open();
      inner = connect();
    },
    close() {
      closed ??= coordinator.close();
      return closed;
    },
  };
}

/** Applies {@link InMemoryCoordinatorOptions.advertise} and `inlineInputs` to the replies. */
function shapeReplies(faults: FaultInjector, options: InMemoryCoordinatorOptions): void {
  const ad = options.advertise ?? {};
  if (ad.maxMessageBytes !== undefined || ad.heartbeatIntervalMs !== undefined) {
    faults.rewriteReply("registerWorker", (reply) => {
      if (ad.maxMessageBytes !== undefined) reply.maxMessageBytes = ad.maxMessageBytes;
      if (ad.heartbeatIntervalMs !== undefined) reply.heartbeatIntervalMs = ad.heartbeatIntervalMs;
    });
  }
  if (ad.maxChunkBytes !== undefined) {
    const maxChunkBytes = ad.maxChunkBytes;
    faults.rewriteReply("beginUpload", (reply) => {
      if (reply.uploadId !== "") reply.maxChunkBytes = maxChunkBytes;
    });
  }
  if (options.inlineInputs === false) {
    faults.rewriteReply("acquireShards", (reply) => {
      for (const lease of reply.leases as { matmul?: { a?: MatrixRef; b?: MatrixRef } }[]) {
        for (const ref of [lease.matmul?.a, lease.matmul?.b]) if (ref) ref.inlineData = new Uint8Array(0);
      }
    });
  }
}
