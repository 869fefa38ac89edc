import { AsyncLocalStorage } from "node:async_hooks";
import { hostname } from "node:os";
import { type Client, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  BlobService,
  type LeaseRef,
  LeaseState,
  type MatrixRef,
  type ShardLease,
  type ShardOutcome,
  type ShardResult,
  WorkerService,
} from "@dce/proto";
import { WideWindowSessionManager } from "@dce/runtime/http2";
import { accessLocalStore, type LocalStoreAccess, readFileRange, writeUploadLocally } from "@dce/runtime/local-store";
import { isTlsMisconfiguration } from "@dce/runtime/tls";
import { type BlobCache, createBlobCache } from "./blob-cache.js";
import { raceAbort, sleepMs } from "./internal/abort.js";
import { backoffDelayMs } from "./internal/backoff.js";
import { bytesToFloat64, float64ToBytes, sha256Hex } from "./internal/bytes.js";
import { corruptTile } from "./internal/corrupt.js";
import { createKernel, listKernels } from "./kernels/kernel.js";
import { defaultCacheBytes, defaultMaxMessageBytes, defaultShutdownGraceMs, minMaxMessageBytes } from "./limits.js";
import { type ComputePool, createThreadPool } from "./pool.js";

/**
 * Where the worker writes its structured logs. A pino `Logger` fits as it is; so does
 * anything with these four methods. Every call passes a fields object, then a message.
 */
export interface WorkerLogger {
  debug(fields: Record<string, unknown>, msg: string): void;
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

/** Options for {@link Worker}. Only `coordinatorUrl` is required. */
export interface WorkerOptions {
  /**
   * Coordinator base URL. `https://HOST:PORT` uses TLS verified against `ca` (or the
   * system trust store when `ca` is absent); `http://` is plaintext, for development.
   */
  readonly coordinatorUrl: string;
  /** PEM certificate(s) of the CA that signed the coordinator's certificate. */
  readonly ca?: string | Buffer | undefined;
  /**
   * PEM client certificate presented to the coordinator: signed by its CA with
   * `OU=worker`, its CN is this worker's identity. A coordinator with authentication on
   * refuses worker calls without one (UNAUTHENTICATED). Needs `key`.
   */
  readonly cert?: string | Buffer | undefined;
  /** PEM private key of `cert`. */
  readonly key?: string | Buffer | undefined;
  /** Display name sent on registration; default: the host name. Need not be unique. */
  readonly name?: string | undefined;
  /** Compute threads (and so shards held at once); default `os.availableParallelism()`. Ignored with `pool`. */
  readonly threads?: number | undefined;
  /**
   * Largest gRPC message, in bytes, this worker sends or reads; default 4 MiB. The
   * smaller of this and the coordinator's limit, less 64 KiB of headroom, sizes blob
   * chunks and decides when a tile is uploaded as a blob instead of sent inline.
   */
  readonly maxMessageBytes?: number | undefined;
  /** Byte budget of the input-matrix cache (LRU by blob id); default 1 GiB. 0 disables it. */
  readonly cacheBytes?: number | undefined;
  /**
   * Read input blocks straight from the coordinator's blob files when it offers its store
   * and this process can read it (same host, permission on the data dir); default true.
   * Otherwise, and on any error reading a file, blocks come by ReadBlob.
   */
  readonly useLocalStore?: boolean | undefined;
  /**
   * Leases held beyond one per thread, whose inputs are fetched while the threads
   * compute (pipelining); default adaptive: 1 for large shards, up to 256 for tiny ones.
   * 0 holds exactly one lease per thread.
   */
  readonly prefetch?: number | undefined;
  /**
   * On {@link Worker.close}, how long running shards may take to finish, in
   * milliseconds, before they are aborted and handed back; default 10 000.
   */
  readonly shutdownGraceMs?: number | undefined;
  /**
   * How long, in milliseconds, the coordinator may stay unreachable before the worker
   * gives up with a {@link RetryBudgetExceededError}; default 0, which retries forever.
   */
  readonly retryBudgetMs?: number | undefined;
  /** Long-poll wait sent with AcquireShards, in milliseconds; default 20 000. */
  readonly acquireWaitMs?: number | undefined;
  /** Deadline of every other RPC, in milliseconds; default 30 000. */
  readonly rpcTimeoutMs?: number | undefined;
  /** Structured logger; default: discard. */
  readonly logger?: WorkerLogger | undefined;
  /** Transport to use instead of a gRPC-over-HTTP/2 one to `coordinatorUrl` (tests: `createRouterTransport`). */
  readonly transport?: Transport | undefined;
  /** Compute pool to use instead of a thread pool; the caller keeps ownership and closes it. */
  readonly pool?: ComputePool | undefined;
  /** Uniform random numbers in [0, 1) for backoff jitter; default `Math.random`. */
  readonly random?: (() => number) | undefined;
  /** Built-in fault injection, to watch the engine survive faults. Off by default. */
  readonly chaos?: ChaosOptions | undefined;
}

/** Faults a worker can inject into its own shards (`worker --chaos-*`). */
export interface ChaosOptions {
  /** Probability of dying abruptly mid-shard, after computing and before reporting. */
  readonly crashRate?: number;
  /** A random delay of up to this many ms before each report. */
  readonly delayMs?: number;
  /** Probability of losing a completion (the report is never sent; the lease expires). */
  readonly dropRate?: number;
  /**
   * Probability of returning a wrong result: one entry of the tile is corrupted (a high
   * exponent or mantissa bit flipped, or scaled by 1 ± 2^-9…2^-8; see `internal/corrupt.ts`)
   * before it is reported. The coordinator's verification must catch every one.
   */
  readonly corruptRate?: number;
  /** Die, like `crashRate`, whenever the shard with this index (of any job) is run: a poison shard. */
  readonly crashOnShard?: number;
  /** How to die; the CLI passes an immediate SIGKILL of its own process. */
  readonly crash: () => void;
}

/** {@link WorkerOptions} with every default filled in. */
interface WorkerConfig {
  readonly coordinatorUrl: string;
  readonly ca: string | Buffer | undefined;
  readonly cert: string | Buffer | undefined;
  readonly key: string | Buffer | undefined;
  readonly name: string;
  readonly threads: number | undefined;
  readonly maxMessageBytes: number;
  readonly cacheBytes: number;
  readonly useLocalStore: boolean;
  readonly prefetch: number | undefined;
  readonly shutdownGraceMs: number;
  readonly retryBudgetMs: number;
  readonly acquireWaitMs: number;
  readonly rpcTimeoutMs: number;
  readonly random: () => number;
  readonly chaos: ChaosOptions | undefined;
}

/** Room left in each message for everything but the payload bytes. */
const messageHeadroomBytes = 64 * 1024;
/** Extra time an AcquireShards call gets beyond its long-poll wait before it times out. */
const acquireSlackMs = 10_000;
/** Deadline of each FailShard call that hands a lease back while draining. */
const releaseTimeoutMs = 5_000;
/** Most leases held beyond one per thread (tiny shards). */
const maxSpareLeases = 256;
/** Running average for the pipeline figures: the first sample, then 80% old, 20% new. */
function ewma(old: number, x: number): number {
  return old === 0 ? x : old * 0.8 + x * 0.2;
}

/** A matrix A up to this size is fetched whole rather than by row panels. */
const wholeMatrixMaxBytes = 4 * 1024 * 1024;

/** Most results in one CompleteShards. */
const maxReportBatch = 512;

/**
 * Thrown (and returned by {@link Worker.wait}) when the coordinator stayed
 * unreachable for longer than `retryBudgetMs`.
 */
export class RetryBudgetExceededError extends Error {
  override readonly name = "RetryBudgetExceededError";
  /** The budget that ran out, in milliseconds. */
  readonly retryBudgetMs: number;
  constructor(retryBudgetMs: number, cause: unknown) {
    super(
      `coordinator unreachable for longer than the retry budget of ${retryBudgetMs} ms: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
    this.retryBudgetMs = retryBudgetMs;
  }
}

/** Why a shard's work was stopped before it finished. */
class ShardStopped extends Error {
  override readonly name = "ShardStopped";
}

/** The shard's inputs do not fit its task (bad shape, wrong blob size): report, don't retry. */
class ShardDataError extends Error {
  override readonly name = "ShardDataError";
}

/** A shard this worker holds, from its lease to its completion. */
interface ShardRun {
  readonly key: string;
  readonly lease: LeaseRef;
  readonly shard: ShardLease;
  /** Aborted when the lease ends (CANCELLED/LOST), on drain timeout, or on a fatal error. */
  readonly abort: AbortController;
  phase: "fetching" | "computing" | "completing";
  /** When the lease runs out unless renewed again (local clock). */
  expiresAtMs: number;
  done: Promise<void>;
}

/** The validated geometry of one shard. */
interface ShardPlan {
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly a: MatrixRef;
  readonly b: MatrixRef;
  readonly rowStart: number;
  readonly colStart: number;
  readonly colEnd: number;
  readonly kernel: string;
}

/** A shard result as CompleteShards carries it. */
type ShardResultInit = { lease: LeaseRef; payload: ShardResult["payload"]; computeMs: number };

/** A result waiting to be reported, with the promise of its outcome. */
interface PendingReport {
  readonly run: ShardRun;
  readonly result: ShardResultInit;
  resolve(outcome: ShardOutcome | undefined): void;
  reject(e: unknown): void;
}

interface RetryPolicy {
  /** Aborting stops the retries (the last error is thrown). */
  readonly signal: AbortSignal;
  /** The call carries the worker id: NOT_FOUND means "register again", then retry. */
  readonly workerScoped: boolean;
  /** For workerScoped calls: whether this NOT_FOUND is about the worker (default: always). */
  readonly notFoundIsWorker?: (e: ConnectError) => boolean;
  /** Stop retrying transient errors once this returns true. */
  readonly giveUp?: () => boolean;
  /** Most attempts, counting the first; default unlimited. */
  readonly maxAttempts?: number;
}

const silentLogger: WorkerLogger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * The job and shard the current async flow works on. Each shard runs inside it, so every
 * line logged on its behalf, down to a retried ReadBlob, carries `jobId` and `shard`
 * (pinned by test/integration/logs.test.ts). Work for the worker as a whole (registering,
 * stopping) leaves it with `exit`.
 */
const shardScope = new AsyncLocalStorage<Record<string, unknown>>();

/** `log`, with the fields of the current {@link shardScope} added to every line. */
function scopedLogger(log: WorkerLogger): WorkerLogger {
  const at =
    (level: keyof WorkerLogger) =>
    (fields: Record<string, unknown>, msg: string): void => {
      const scope = shardScope.getStore();
      log[level](scope === undefined ? fields : { ...scope, ...fields }, msg);
    };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

/**
 * A dce worker: registers with a coordinator, pulls shard leases (one per compute
 * thread), fetches the input rows and column panel, multiplies them in a
 * `worker_threads` pool, and reports each tile. Leases are renewed by heartbeat;
 * a lease the coordinator reports CANCELLED or LOST is abandoned at once (its thread
 * is terminated). Connection failures are retried with capped, jittered exponential
 * backoff, and a coordinator restart (NOT_FOUND for the worker id) leads to a fresh
 * registration. The event loop only moves bytes; all arithmetic runs in threads.
 *
 * Lifecycle: `start()` → runs until `close()` (drain) or a fatal error; `wait()`
 * tells which.
 *
 * @example
 * ```ts
 * const worker = new Worker({ coordinatorUrl: "https://coord:7443", ca: pem, logger });
 * await worker.start();
 * process.once("SIGTERM", () => void worker.close());
 * await worker.wait();
 * ```
 */
export class Worker {
  readonly #config: WorkerConfig;
  readonly #log: WorkerLogger;
  readonly #transport: Transport | undefined;
  readonly #injectedPool: ComputePool | undefined;
  #pool: ComputePool | undefined;
  #workerClient: Client<typeof WorkerService> | undefined;
  #blobClient: Client<typeof BlobService> | undefined;
  readonly #cache: BlobCache;

  #workerId: string | undefined;
  #leaseTtlMs = 0;
  #heartbeatIntervalMs = 0;
  #coordinatorMaxMessageBytes = 0;
  /** The coordinator's blob store, when it is offered and readable from here. */
  #localStore: LocalStoreAccess | undefined;
  #registering: Promise<void> | undefined;

  readonly #runs = new Map<string, ShardRun>();
  /** Results waiting for the next CompleteShards, and whether one is in flight. */
  readonly #reports: PendingReport[] = [];
  #reporting = false;
  /** Running averages (ms, 0 until a shard is timed): time a shard holds a thread, and time it spends outside one (inputs, report, grant). */
  #shardWorkMs = 0;
  #shardLatencyMs = 0;
  /** Running average of how long AcquireShards takes when it returns work at once (ms). */
  #grantMs = 0;
  #slotWaiters: (() => void)[] = [];
  /** Aborted by close(): stop acquiring, abort a pending long-poll. */
  readonly #drain = new AbortController();
  /** Aborted when everything must stop now: after the drain, or on a fatal error. */
  readonly #stop = new AbortController();
  #loops: Promise<void>[] = [];
  #unreachableSinceMs: number | undefined;
  #fatal: Error | undefined;

  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  readonly #stopped: Promise<void>;
  #settleStopped!: (error: Error | undefined) => void;

  /**
   * Creates a worker; it does nothing until {@link Worker.start}.
   *
   * @throws TypeError if `coordinatorUrl` is not an `http:` or `https:` URL, or
   *   RangeError if a numeric option is out of range.
   */
  constructor(options: WorkerOptions) {
    this.#config = resolveConfig(options);
    this.#log = scopedLogger(options.logger ?? silentLogger);
    this.#transport = options.transport;
    this.#injectedPool = options.pool;
    this.#cache = createBlobCache({ budgetBytes: this.#config.cacheBytes });
    this.#stopped = new Promise<void>((resolve, reject) => {
      this.#settleStopped = (error) => (error === undefined ? resolve() : reject(error));
    });
    this.#stopped.catch(() => {}); // observed through wait(); never an unhandled rejection
  }

  /** The id the coordinator gave this worker; `undefined` before registration. Opaque. */
  get workerId(): string | undefined {
    return this.#workerId;
  }

  /** Number of shards held right now (fetching, computing, or reporting). */
  get activeShards(): number {
    return this.#runs.size;
  }

  /**
   * Connects, registers (retrying while the coordinator is unreachable), and starts the
   * pull and heartbeat loops in the background. Resolves once registered, or without
   * registering if {@link Worker.close} is called first. Calling it again returns the
   * same promise.
   *
   * @throws RetryBudgetExceededError if the coordinator stays unreachable past the
   *   budget, or the ConnectError of a registration the coordinator refuses (e.g.
   *   PERMISSION_DENIED). The worker is then stopped.
   */
  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  /**
   * Drains and stops: no new leases are taken and a pending long-poll is aborted;
   * running shards get `shutdownGraceMs` to finish and report, after which they are
   * aborted and their leases handed back (FailShard `release: true`); then the
   * heartbeat stops and the threads end. Never rejects; every step runs even if one
   * fails. Idempotent: every call returns the same promise.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /**
   * Resolves when the worker has stopped after {@link Worker.close}; rejects with the
   * error that stopped it otherwise (e.g. {@link RetryBudgetExceededError}).
   */
  wait(): Promise<void> {
    return this.#stopped;
  }

  async #start(): Promise<void> {
    if (this.#drain.signal.aborted) return;
    const transport = this.#transport ?? createTransport(this.#config);
    this.#workerClient = createClient(WorkerService, transport);
    this.#blobClient = createClient(BlobService, transport);
    this.#pool = this.#injectedPool ?? createThreadPool(threadsOption(this.#config.threads));
    try {
      await this.#register(this.#drain.signal);
    } catch (e) {
      if (this.#drain.signal.aborted && this.#fatal === undefined) return; // closed while connecting
      const error = toError(e);
      this.#fail(error);
      throw error;
    }
    this.#loops = [this.#pullLoop(), this.#heartbeatLoop()];
  }

  // ---- registration ----------------------------------------------------------------

  async #register(signal: AbortSignal): Promise<void> {
    const pool = this.#requirePool();
    const kernels = listKernels().map((k) => ({ name: k.name, fingerprint: k.fingerprint }));
    const res = await this.#retry(
      "RegisterWorker",
      () =>
        this.#wc().registerWorker(
          { name: this.#config.name, kernels, threads: pool.size },
          { signal, timeoutMs: this.#config.rpcTimeoutMs },
        ),
      { signal, workerScoped: false },
    );
    this.#workerId = res.workerId;
    this.#leaseTtlMs = res.leaseTtlMs;
    this.#heartbeatIntervalMs = res.heartbeatIntervalMs;
    this.#coordinatorMaxMessageBytes = res.maxMessageBytes;
    this.#localStore = this.#config.useLocalStore ? accessLocalStore(res.localStore) : undefined;
    this.#log.info(
      {
        workerId: res.workerId,
        workerName: this.#config.name,
        threads: pool.size,
        kernels: kernels.map((k) => k.fingerprint),
        coordinator: this.#config.coordinatorUrl,
        leaseTtlMs: res.leaseTtlMs,
        heartbeatIntervalMs: res.heartbeatIntervalMs,
        maxMessageBytes: this.#messageLimitBytes(),
        // Where input blocks come from: the coordinator's files on this host, or ReadBlob.
        inputs: this.#localStore ? `local store ${this.#localStore.dir}` : "ReadBlob",
      },
      "worker registered",
    );
  }

  /**
   * Registers again after the coordinator forgot `staleWorkerId` (it restarted). Calls
   * that saw the same NOT_FOUND share one registration; one that arrives after it
   * already happened returns at once and simply retries with the new id.
   */
  async #reregister(staleWorkerId: string): Promise<void> {
    if (this.#workerId !== staleWorkerId && this.#registering === undefined) return;
    if (this.#registering === undefined) {
      // About the worker, not the shard whose call noticed it.
      shardScope.exit(() => {
        this.#log.info({ workerId: staleWorkerId }, "coordinator does not know this worker; registering again");
        this.#registering = this.#register(this.#stop.signal).finally(() => {
          this.#registering = undefined;
        });
      });
    }
    await this.#registering;
  }

  // ---- pull loop ---------------------------------------------------------------------

  async #pullLoop(): Promise<void> {
    const signal = this.#drain.signal;
    try {
      while (!signal.aborted) {
        await this.#idleSlot();
        if (signal.aborted) break;
        // The limit moves with the measured shard time, so it can have dropped meanwhile.
        const maxShards = this.#holdLimit() - this.#runs.size;
        if (maxShards < 1) continue;
        const waitMs = this.#config.acquireWaitMs;
        const askedAt = performance.now();
        const res = await this.#retry(
          "AcquireShards",
          (workerId) => this.#wc().acquireShards({ workerId, maxShards, waitMs }, { signal, timeoutMs: waitMs + acquireSlackMs }),
          { signal, workerScoped: true },
        );
        const grantMs = performance.now() - askedAt;
        // Only a grant that came back at once measures latency; a long-poll that waited for work measures idleness.
        if (res.leases.length > 0 && grantMs < 50) this.#grantMs = ewma(this.#grantMs, grantMs);
        for (const shard of res.leases) {
          // A grant that raced with close() goes straight back.
          if (signal.aborted) void this.#handBack(shard.lease, "worker is draining");
          else this.#startShard(shard);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      this.#fail(toError(e, "AcquireShards failed"));
    }
  }

  /**
   * How many leases to hold: one per thread, plus spares whose inputs are fetched and
   * whose reports travel while the threads compute (pipelining). Little's law: to keep
   * `threads` busy while each shard also spends `latency` ms outside its thread (reading
   * inputs, reporting, being granted), hold `threads × latency / work` spares, where
   * `work` is the time a shard holds a thread. Large shards get one or two; tiny ones up
   * to {@link maxSpareLeases}.
   */
  #holdLimit(): number {
    const threads = this.#requirePool().size;
    if (this.#config.prefetch !== undefined) return threads + this.#config.prefetch;
    // Until a shard has been timed, one spare: a job's first shards may be large.
    if (this.#shardWorkMs === 0) return threads + 1;
    const spare = Math.ceil((threads * this.#shardLatencyMs) / Math.max(this.#shardWorkMs, 0.01));
    return threads + Math.max(1, Math.min(maxSpareLeases, spare));
  }

  /** Folds one shard's timings into the running averages {@link #holdLimit} uses. */
  #observeShard(workMs: number, latencyMs: number): void {
    this.#shardWorkMs = ewma(this.#shardWorkMs, Math.max(workMs, 0.001));
    this.#shardLatencyMs = ewma(this.#shardLatencyMs, latencyMs);
  }

  /** Resolves when fewer shards are held than {@link #holdLimit}, or on drain. */
  #idleSlot(): Promise<void> {
    if (this.#runs.size < this.#holdLimit() || this.#drain.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => this.#slotWaiters.push(resolve));
  }

  #wakeSlotWaiters(): void {
    for (const wake of this.#slotWaiters.splice(0)) wake();
  }

  #startShard(shard: ShardLease): void {
    const lease = shard.lease;
    if (lease === undefined) {
      this.#log.warn({}, "coordinator sent a shard without a lease; ignoring it");
      return;
    }
    const key = leaseKey(lease);
    if (this.#runs.has(key)) return; // the same grant twice: already working on it
    const run: ShardRun = {
      key,
      lease,
      shard,
      abort: new AbortController(),
      phase: "fetching",
      expiresAtMs: Date.now() + (shard.ttlMs || this.#leaseTtlMs),
      done: Promise.resolve(),
    };
    this.#runs.set(key, run);
    this.#log.debug({ ...leaseFields(lease), attempt: shard.attempt }, "shard leased");
    run.done = shardScope
      .run(leaseFields(lease), () => this.#runShard(run))
      .catch((e: unknown) => {
        this.#log.error({ ...leaseFields(lease), err: errorMessage(e) }, "unexpected error in shard");
      })
      .finally(() => {
        this.#runs.delete(key);
        this.#wakeSlotWaiters();
      });
  }

  async #runShard(run: ShardRun): Promise<void> {
    const { lease, shard } = run;
    const signal = run.abort.signal;
    try {
      const startedAt = performance.now();
      const plan = planShard(shard, listKernels()[0]?.name ?? "reference");
      // Both inputs arrive in shared memory and are cached: the kernel thread reads
      // them in place, and B's columns are picked out there, off the event loop.
      const inlineA = this.#adoptInline(plan.a, signal);
      const inlineB = this.#adoptInline(plan.b, signal);
      const from = plan.rowStart * plan.k;
      const [a, bFull] = await Promise.all([
        inlineA?.subarray(from, from + plan.m * plan.k) ?? this.#fetchRows(plan, signal),
        inlineB ?? this.#cache.getOrLoad(plan.b.blobId, (s) => this.#fetchMatrix(plan.b, s), signal),
      ]);
      const fetchMs = performance.now() - startedAt;
      run.phase = "computing";
      const { c, computeMs, threadMs } = await this.#requirePool().run(
        { kernel: plan.kernel, m: plan.m, n: plan.n, k: plan.k, a, b: bFull, bColStart: plan.colStart, ldb: plan.b.cols },
        signal,
      );
      run.phase = "completing";
      if (await this.#chaos(run, c, plan.n)) return;
      const reportStart = performance.now();
      await this.#complete(run, c, computeMs);
      // Queueing behind other shards counts in neither figure: it is the effect, not the cause.
      this.#observeShard(threadMs, fetchMs + (performance.now() - reportStart) + this.#grantMs);
    } catch (e) {
      if (signal.aborted) {
        this.#log.debug({ ...leaseFields(lease), reason: errorMessage(signal.reason) }, "shard stopped; result dropped");
        return;
      }
      if (this.#fatal !== undefined) return;
      // Kernel errors, dead threads, bad inputs, refused reads: the coordinator decides
      // whether to retry elsewhere, so report without releasing (counts an attempt).
      const message = errorMessage(e);
      this.#log.warn({ ...leaseFields(lease), err: message }, "shard failed");
      await this.#failShard(lease, message, false, this.#stop.signal, this.#config.rpcTimeoutMs);
    }
  }

  /**
   * Applies `--chaos-*` faults before a report. Returns true when the completion is to
   * be lost on purpose (the lease then expires and the shard runs elsewhere).
   */
  async #chaos(run: ShardRun, c: Float64Array, n: number): Promise<boolean> {
    const chaos = this.#config.chaos;
    if (chaos === undefined) return false;
    const fields = leaseFields(run.lease);
    if (c.length > 0 && this.#config.random() < (chaos.corruptRate ?? 0)) {
      const what = corruptTile(c, n, this.#config.random);
      this.#log.warn({ ...fields, corruption: what.kind, index: what.index }, "chaos: corrupting the result");
    }
    if ((chaos.delayMs ?? 0) > 0) await sleepMs(Math.floor(this.#config.random() * (chaos.delayMs ?? 0)), run.abort.signal);
    if (run.lease.shardIndex === chaos.crashOnShard) {
      this.#log.warn(fields, "chaos: crashing on the poison shard");
      chaos.crash();
    }
    if (this.#config.random() < (chaos.crashRate ?? 0)) {
      this.#log.warn(fields, "chaos: crashing mid-shard");
      chaos.crash();
    }
    if (this.#config.random() < (chaos.dropRate ?? 0)) {
      this.#log.warn(fields, "chaos: dropping the completion");
      return true;
    }
    return false;
  }

  // ---- input data --------------------------------------------------------------------

  /** Rows `[rowStart, rowStart + m)` of A: one contiguous byte range (or a slice of a cached A). */
  async #fetchRows(plan: ShardPlan, signal: AbortSignal): Promise<Float64Array> {
    const from = plan.rowStart * plan.k;
    const cached = this.#cache.get(plan.a.blobId);
    if (cached !== undefined && cached.length === plan.a.rows * plan.a.cols) {
      return cached.subarray(from, from + plan.m * plan.k);
    }
    if (plan.a.rows * plan.a.cols * 8 <= Math.min(wholeMatrixMaxBytes, this.#config.cacheBytes / 4)) {
      // A small A is cheaper to fetch once whole than panel by panel.
      const whole = await this.#cache.getOrLoad(plan.a.blobId, (s) => this.#fetchMatrix(plan.a, s), signal);
      return whole.subarray(from, from + plan.m * plan.k);
    }
    // A row panel is a block of its own in the cache: the shards of one row band (the
    // same rows, other columns) fetch it once per worker.
    const block = `${plan.a.blobId}:rows:${plan.rowStart}-${plan.rowStart + plan.m}`;
    return this.#cache.getOrLoad(
      block,
      async (s) => bytesToFloat64(await this.#readRange(plan.a, from * 8, plan.m * plan.k * 8, s)),
      signal,
    );
  }

  /** Caches a matrix that came inline with its lease (small inputs), so no read is needed. */
  #adoptInline(ref: MatrixRef, signal: AbortSignal): Float64Array | undefined {
    const bytes = ref.inlineData;
    if (bytes.byteLength === 0 || bytes.byteLength !== ref.rows * ref.cols * 8) return undefined;
    const cached = this.#cache.get(ref.blobId);
    if (cached !== undefined) return cached;
    const shared = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
    shared.set(bytes);
    const matrix = bytesToFloat64(shared);
    void this.#cache.getOrLoad(ref.blobId, async () => matrix, signal).catch(() => {});
    return matrix;
  }

  /** A whole matrix (B), for the cache. */
  async #fetchMatrix(ref: MatrixRef, signal: AbortSignal): Promise<Float64Array> {
    const sizeBytes = ref.rows * ref.cols * 8;
    this.#log.debug({ blobId: ref.blobId, sizeBytes }, "fetching matrix");
    return bytesToFloat64(await this.#readRange(ref, 0, sizeBytes, signal));
  }

  /** Reads `lengthBytes` bytes at `offsetBytes` of a matrix blob, in chunks that fit a message. */
  async #readRange(ref: MatrixRef, offsetBytes: number, lengthBytes: number, signal: AbortSignal): Promise<Uint8Array> {
    const expectedTotal = BigInt(ref.rows) * BigInt(ref.cols) * 8n;
    // Shared memory: kernel threads read it in place, without a copy per shard.
    const out = new Uint8Array(new SharedArrayBuffer(lengthBytes));
    const local = this.#localStore;
    if (local !== undefined) {
      try {
        await readFileRange(local.blobPath(ref.blobId), offsetBytes, out, Number(expectedTotal));
        return out;
      } catch (e) {
        // The file may have gone (or never been readable): ReadBlob still works.
        this.#log.warn({ blobId: ref.blobId, err: e }, "reading the local blob file failed; using ReadBlob");
      }
    }
    let pos = 0;
    while (pos < lengthBytes) {
      const maxBytes = Math.min(this.#chunkLimitBytes(), lengthBytes - pos);
      const offset = BigInt(offsetBytes + pos);
      const res = await this.#retry(
        "ReadBlob",
        () => this.#bc().readBlob({ blobId: ref.blobId, offset, maxBytes }, { signal, timeoutMs: this.#config.rpcTimeoutMs }),
        { signal, workerScoped: false },
      );
      if (res.totalBytes !== expectedTotal) {
        throw new ShardDataError(
          `blob ${ref.blobId} holds ${res.totalBytes} bytes but a ${ref.rows}x${ref.cols} float64 matrix needs ${expectedTotal}`,
        );
      }
      if (res.data.byteLength === 0) throw new ShardDataError(`blob ${ref.blobId} returned no data at offset ${offset}`);
      const take = Math.min(res.data.byteLength, lengthBytes - pos);
      out.set(res.data.subarray(0, take), pos);
      pos += take;
    }
    return out;
  }

  // ---- reporting ---------------------------------------------------------------------

  async #complete(run: ShardRun, c: Float64Array, computeMs: number): Promise<void> {
    const { lease } = run;
    const signal = run.abort.signal;
    // The coordinator treats a repeated CompleteShards as ALREADY_EXISTS, so retrying is
    // safe; it is only pointless once the lease has certainly run out.
    const giveUp = () => Date.now() >= run.expiresAtMs;
    const bytes = float64ToBytes(c);
    // A tile too large for one message goes as a blob (written into the upload file when
    // the local store is reachable, else by chunks). Smaller ones stay inline: measured at
    // n=4096, sending 2 MiB tiles through the local store did not make jobs faster, and
    // every tile blob stays in the store.
    const asBlob = bytes.byteLength > this.#chunkLimitBytes();
    const payload: ShardResult["payload"] = asBlob
      ? { case: "blobId", value: await this.#uploadTile(bytes, signal, giveUp) }
      : { case: "data", value: bytes };
    let outcome: ShardOutcome | undefined;
    try {
      outcome = await this.#report(run, { lease, payload, computeMs: clampUint32(Math.round(computeMs)) });
    } catch (e) {
      if (signal.aborted || this.#fatal !== undefined) throw e;
      const fields = { ...leaseFields(lease), err: errorMessage(e) };
      if (giveUp()) this.#log.info(fields, "lease expired while the coordinator was unreachable; result dropped");
      else this.#log.warn(fields, "CompleteShards refused; result dropped");
      return;
    }
    const fields = { ...leaseFields(lease), computeMs: Math.round(computeMs) };
    if (outcome === undefined) {
      this.#log.warn(fields, "CompleteShards returned no outcome for the result; dropped");
      return;
    }
    switch (outcome.code) {
      case 0: // OK (the Code enum has no member for it)
        this.#log.debug(fields, "shard completed");
        return;
      case Code.AlreadyExists:
        this.#log.debug(fields, "shard completed (accepted earlier)");
        return;
      case Code.Aborted:
        this.#log.info({ ...fields, reason: outcome.message }, "result not accepted (lease no longer current); dropped");
        return;
      default:
        this.#log.warn(
          { ...fields, code: Code[outcome.code] ?? outcome.code, reason: outcome.message },
          "result rejected by the coordinator; dropped",
        );
    }
  }

  /**
   * Sends one shard result. Results that finish while a report is in flight go out
   * together in the next CompleteShards (at most one message of data), so tiny shards
   * cost one RPC per batch rather than one each.
   */
  #report(run: ShardRun, result: ShardResultInit): Promise<ShardOutcome | undefined> {
    return new Promise((resolve, reject) => {
      this.#reports.push({ run, result, resolve, reject });
      // The flush serves every shard's report, not only this one's: it runs outside this shard's scope.
      if (!this.#reporting) void shardScope.exit(() => this.#flushReports());
    });
  }

  async #flushReports(): Promise<void> {
    this.#reporting = true;
    try {
      while (this.#reports.length > 0) {
        const batch: PendingReport[] = [];
        let bytes = 0;
        while (this.#reports.length > 0 && batch.length < maxReportBatch) {
          const next = this.#reports[0] as PendingReport;
          const size = next.result.payload.case === "data" ? next.result.payload.value.byteLength : 128;
          if (batch.length > 0 && bytes + size > this.#chunkLimitBytes()) break;
          this.#reports.shift();
          if (next.run.abort.signal.aborted) {
            next.reject(next.run.abort.signal.reason);
            continue;
          }
          batch.push(next);
          bytes += size;
        }
        if (batch.length === 0) continue;
        // The coordinator treats a repeated CompleteShards as ALREADY_EXISTS, so retrying is
        // safe; it is pointless once every lease in the batch has certainly run out.
        const giveUp = () => batch.every((b) => b.run.abort.signal.aborted || Date.now() >= b.run.expiresAtMs);
        const signal = this.#stop.signal;
        try {
          // A retry of this call is logged with the shards it reports.
          const res = await shardScope.run(batchFields(batch.map((b) => b.run.lease)), () =>
            this.#retry(
              "CompleteShards",
              (workerId) =>
                this.#wc().completeShards(
                  { workerId, results: batch.map((b) => b.result) },
                  { signal, timeoutMs: this.#config.rpcTimeoutMs },
                ),
              { signal, workerScoped: true, giveUp },
            ),
          );
          const byKey = new Map<string, ShardOutcome>();
          for (const o of res.outcomes) if (o.lease !== undefined) byKey.set(leaseKey(o.lease), o);
          for (const b of batch) b.resolve(byKey.get(b.run.key) ?? (batch.length === 1 ? res.outcomes[0] : undefined));
        } catch (e) {
          for (const b of batch) b.reject(e);
        }
      }
    } finally {
      this.#reporting = false;
    }
  }

  /**
   * Uploads a tile too large for one message; returns its blob id. An upload the
   * coordinator no longer holds (NOT_FOUND: it dropped it when its disk refused a chunk,
   * it expired, or the coordinator restarted) is begun again while the lease lasts.
   */
  async #uploadTile(bytes: Uint8Array, signal: AbortSignal, giveUp: () => boolean): Promise<string> {
    const sha256 = await sha256Hex(bytes);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#uploadTileOnce(bytes, sha256, signal, giveUp);
      } catch (e) {
        const err = ConnectError.from(e);
        if (err.code !== Code.NotFound || signal.aborted || giveUp()) throw e;
        this.#log.warn({ err: err.rawMessage, attempt }, "tile upload lost by the coordinator; uploading again");
        await sleepMs(backoffDelayMs(attempt, this.#config.random), signal);
      }
    }
  }

  async #uploadTileOnce(bytes: Uint8Array, sha256: string, signal: AbortSignal, giveUp: () => boolean): Promise<string> {
    const bc = this.#bc();
    const opts = { signal, timeoutMs: this.#config.rpcTimeoutMs };
    const policy = { signal, workerScoped: false, giveUp };
    const begin = await this.#retry(
      "BeginUpload",
      () => bc.beginUpload({ sizeBytes: BigInt(bytes.byteLength), sha256 }, opts),
      policy,
    );
    // Blob ids are the lower-case hex SHA-256 of the bytes (common.proto, MatrixRef.blob_id),
    // which is the only id we have when the coordinator already holds the blob.
    if (begin.alreadyPresent) return sha256;
    if (this.#localStore !== undefined && (await writeUploadLocally(begin, bytes))) {
      const done = await this.#retry(
        "FinishUpload",
        () => bc.finishUpload({ uploadId: begin.uploadId, writtenLocally: true }, opts),
        policy,
      );
      return done.blobId;
    }
    const chunkBytes = Math.min(begin.maxChunkBytes || Number.POSITIVE_INFINITY, this.#chunkLimitBytes());
    for (let offset = 0; offset < bytes.byteLength; offset += chunkBytes) {
      const data = bytes.subarray(offset, Math.min(offset + chunkBytes, bytes.byteLength));
      await this.#retry(
        "UploadChunk",
        () => bc.uploadChunk({ uploadId: begin.uploadId, offset: BigInt(offset), data }, opts),
        policy,
      );
    }
    const done = await this.#retry("FinishUpload", () => bc.finishUpload({ uploadId: begin.uploadId }, opts), policy);
    return done.blobId;
  }

  /** Reports a failure (`release: false`) or hands a lease back (`release: true`); best effort. */
  async #failShard(lease: LeaseRef, error: string, release: boolean, signal: AbortSignal, timeoutMs: number): Promise<void> {
    try {
      await this.#retry(
        "FailShard",
        (workerId) => this.#wc().failShard({ workerId, lease, error, release }, { signal, timeoutMs }),
        {
          signal,
          workerScoped: true,
          // FailShard also names a job, which may be unknown; only "worker ... not registered" means re-register.
          notFoundIsWorker: (e) => /worker/i.test(e.rawMessage),
          maxAttempts: 3,
        },
      );
      this.#log.debug({ ...leaseFields(lease), release }, release ? "lease released" : "shard failure reported");
    } catch (e) {
      this.#log.warn({ ...leaseFields(lease), release, err: errorMessage(e) }, "FailShard did not get through");
    }
  }

  /** Hands a lease back unstarted; used during drain. */
  #handBack(lease: LeaseRef | undefined, why: string): Promise<void> {
    if (lease === undefined) return Promise.resolve();
    return this.#failShard(lease, why, true, AbortSignal.timeout(releaseTimeoutMs), releaseTimeoutMs);
  }

  // ---- heartbeat ---------------------------------------------------------------------

  async #heartbeatLoop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      await sleepMs(this.#heartbeatPeriodMs(), signal);
      if (signal.aborted) return;
      await this.#heartbeatOnce(signal);
    }
  }

  async #heartbeatOnce(signal: AbortSignal): Promise<void> {
    const runs = [...this.#runs.values()];
    const sentAtMs = Date.now();
    try {
      const res = await this.#retry(
        "Heartbeat",
        (workerId) =>
          this.#wc().heartbeat(
            { workerId, leases: runs.map((r) => r.lease) },
            { signal, timeoutMs: Math.max(this.#heartbeatPeriodMs(), 1_000) },
          ),
        // One try: the next tick is the retry, and it carries the current leases.
        { signal, workerScoped: true, maxAttempts: 1 },
      );
      for (const status of res.leases) {
        const run = status.lease === undefined ? undefined : this.#runs.get(leaseKey(status.lease));
        if (run === undefined) continue; // finished meanwhile
        if (status.state === LeaseState.ACTIVE) {
          run.expiresAtMs = sentAtMs + (status.ttlMs || this.#leaseTtlMs);
        } else if (status.state === LeaseState.CANCELLED || status.state === LeaseState.LOST) {
          const state = LeaseState[status.state];
          this.#log.info({ ...leaseFields(run.lease), state, phase: run.phase }, "lease ended; stopping shard");
          run.abort.abort(new ShardStopped(`lease ${state}`));
        }
      }
    } catch (e) {
      if (signal.aborted || this.#fatal !== undefined) return;
      this.#log.warn({ err: errorMessage(e), leases: runs.length }, "heartbeat failed");
    }
  }

  #heartbeatPeriodMs(): number {
    if (this.#heartbeatIntervalMs > 0) return this.#heartbeatIntervalMs;
    // The coordinator gave no interval: renew three times per lease lifetime.
    return this.#leaseTtlMs > 0 ? Math.max(10, Math.floor(this.#leaseTtlMs / 3)) : 1_000;
  }

  // ---- retries -----------------------------------------------------------------------

  /**
   * Runs one RPC with the worker's retry rules: NOT_FOUND for the worker id →
   * register again and retry; transient failures (UNAVAILABLE, network errors,
   * deadlines, overload) → jittered exponential backoff, charged against the retry
   * budget; anything else is thrown.
   */
  async #retry<T>(what: string, call: (workerId: string) => Promise<T>, policy: RetryPolicy): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const workerId = this.#workerId ?? "";
      try {
        const out = await call(workerId);
        this.#unreachableSinceMs = undefined;
        return out;
      } catch (e) {
        if (policy.signal.aborted || this.#fatal !== undefined) throw e;
        const err = ConnectError.from(e);
        const lastTry = policy.maxAttempts !== undefined && attempt + 1 >= policy.maxAttempts;
        if (policy.workerScoped && err.code === Code.NotFound && (policy.notFoundIsWorker?.(err) ?? true)) {
          await this.#reregister(workerId);
          if (lastTry) throw err;
          // A coordinator that keeps forgetting us right after registering must not spin.
          if (attempt > 0) await sleepMs(backoffDelayMs(attempt, this.#config.random), policy.signal);
          continue;
        }
        if (!isTransient(err)) throw err;
        this.#noteUnreachable(err);
        if (lastTry || policy.giveUp?.()) throw err;
        const delayMs = backoffDelayMs(attempt, this.#config.random);
        this.#log.warn(
          { rpc: what, code: Code[err.code], err: err.rawMessage, attempt: attempt + 1, retryInMs: Math.round(delayMs) },
          "coordinator call failed; retrying",
        );
        await sleepMs(delayMs, policy.signal);
        if (policy.signal.aborted) throw err;
      }
    }
  }

  /** Charges a failed call against the retry budget; fails the worker once it is spent. */
  #noteUnreachable(err: ConnectError): void {
    const nowMs = Date.now();
    this.#unreachableSinceMs ??= nowMs;
    const budgetMs = this.#config.retryBudgetMs;
    if (budgetMs > 0 && nowMs - this.#unreachableSinceMs >= budgetMs) {
      const fatal = new RetryBudgetExceededError(budgetMs, err);
      this.#fail(fatal);
      throw fatal;
    }
  }

  // ---- shutdown ----------------------------------------------------------------------

  /** Stops the worker because of an error it cannot recover from; wait() rejects with it. */
  #fail(error: Error): void {
    if (this.#fatal !== undefined) return;
    this.#fatal = error;
    // The whole worker stops, whichever shard's call found out: no shard scope on these lines.
    shardScope.exit(() => {
      this.#log.error({ err: error.message }, "worker stopping after a fatal error");
      this.#stop.abort(error);
      void this.close();
    });
  }

  async #close(): Promise<void> {
    const step = async (name: string, fn: () => Promise<void> | void) => {
      try {
        await fn();
      } catch (e) {
        this.#log.warn({ step: name, err: errorMessage(e) }, "shutdown step failed");
      }
    };
    if (this.#fatal === undefined) this.#log.info({ activeShards: this.#runs.size }, "draining");
    this.#drain.abort(new ShardStopped("worker is draining"));
    this.#wakeSlotWaiters();
    await step("wait for start", async () => {
      await this.#starting?.catch(() => {});
    });

    // Give running shards the grace period (cut short by a fatal error).
    await step("finish running shards", async () => {
      const finished = Promise.all([...this.#runs.values()].map((r) => r.done));
      await raceAbort(finished, AbortSignal.any([AbortSignal.timeout(this.#config.shutdownGraceMs), this.#stop.signal])).catch(
        () => {},
      );
    });

    // Whatever is still running is aborted; unless the coordinator is gone, its lease goes back.
    await step("hand back unfinished leases", async () => {
      const left = [...this.#runs.values()];
      for (const run of left) run.abort.abort(new ShardStopped("shutdown grace period over"));
      if (left.length > 0 && this.#fatal === undefined) {
        this.#log.info({ leases: left.length }, "handing back unfinished leases");
        await Promise.all(left.map((run) => this.#handBack(run.lease, "worker shut down before finishing")));
      }
      await Promise.all(left.map((r) => r.done));
    });

    await step("stop loops", async () => {
      this.#stop.abort(new ShardStopped("worker stopped"));
      await Promise.all(this.#loops);
    });
    await step("close pool", async () => {
      if (this.#injectedPool === undefined) await this.#pool?.close();
    });
    if (this.#fatal === undefined) this.#log.info({ workerId: this.#workerId }, "worker stopped");
    this.#settleStopped(this.#fatal);
  }

  // ---- small helpers -----------------------------------------------------------------

  /** Largest message both sides accept. */
  #messageLimitBytes(): number {
    return Math.min(this.#config.maxMessageBytes, this.#coordinatorMaxMessageBytes || Number.POSITIVE_INFINITY);
  }

  /** Largest payload per message: {@link Worker.#messageLimitBytes} less headroom for the envelope. */
  #chunkLimitBytes(): number {
    const limit = this.#messageLimitBytes();
    return limit > 2 * messageHeadroomBytes ? limit - messageHeadroomBytes : Math.floor(limit / 2);
  }

  #wc(): Client<typeof WorkerService> {
    if (this.#workerClient === undefined) throw new Error("worker not started");
    return this.#workerClient;
  }

  #bc(): Client<typeof BlobService> {
    if (this.#blobClient === undefined) throw new Error("worker not started");
    return this.#blobClient;
  }

  #requirePool(): ComputePool {
    if (this.#pool === undefined) throw new Error("worker not started");
    return this.#pool;
  }
}

function resolveConfig(o: WorkerOptions): WorkerConfig {
  const url = new URL(o.coordinatorUrl);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`coordinatorUrl must be http:// or https://, got ${o.coordinatorUrl}`);
  }
  const config: WorkerConfig = {
    coordinatorUrl: o.coordinatorUrl,
    ca: o.ca,
    cert: o.cert,
    key: o.key,
    name: o.name ?? hostname(),
    threads: o.threads,
    maxMessageBytes: o.maxMessageBytes ?? defaultMaxMessageBytes,
    cacheBytes: o.cacheBytes ?? defaultCacheBytes,
    useLocalStore: o.useLocalStore ?? true,
    prefetch: o.prefetch,
    shutdownGraceMs: o.shutdownGraceMs ?? defaultShutdownGraceMs,
    retryBudgetMs: o.retryBudgetMs ?? 0,
    acquireWaitMs: o.acquireWaitMs ?? 20_000,
    rpcTimeoutMs: o.rpcTimeoutMs ?? 30_000,
    random: o.random ?? Math.random,
    chaos: o.chaos,
  };
  for (const key of ["cacheBytes", "shutdownGraceMs", "retryBudgetMs", "acquireWaitMs"] as const) {
    const v = config[key];
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${key} must be a non-negative integer, got ${v}`);
  }
  if (config.prefetch !== undefined && !(Number.isSafeInteger(config.prefetch) && config.prefetch >= 0)) {
    throw new RangeError(`prefetch must be a non-negative integer, got ${config.prefetch}`);
  }
  if (!Number.isSafeInteger(config.rpcTimeoutMs) || config.rpcTimeoutMs < 1) {
    throw new RangeError(`rpcTimeoutMs must be a positive integer, got ${config.rpcTimeoutMs}`);
  }
  if (!Number.isSafeInteger(config.maxMessageBytes) || config.maxMessageBytes < minMaxMessageBytes) {
    throw new RangeError(`maxMessageBytes must be an integer >= ${minMaxMessageBytes}, got ${config.maxMessageBytes}`);
  }
  if ((config.cert === undefined) !== (config.key === undefined)) throw new TypeError("cert and key go together");
  if (config.threads !== undefined && (!Number.isSafeInteger(config.threads) || config.threads < 1)) {
    throw new RangeError(`threads must be a positive integer, got ${config.threads}`);
  }
  return config;
}

function threadsOption(threads: number | undefined): { threads?: number } {
  return threads === undefined ? {} : { threads };
}

function createTransport(config: WorkerConfig): Transport {
  const tls = new URL(config.coordinatorUrl).protocol === "https:";
  const nodeOptions = tls
    ? {
        ...(config.ca !== undefined ? { ca: config.ca } : {}),
        // mTLS: the certificate is the worker's identity at the coordinator.
        ...(config.cert !== undefined && config.key !== undefined ? { cert: config.cert, key: config.key } : {}),
      }
    : {};
  // PINGs notice a dead (black-holed or half-open) connection under a long-poll well
  // within a lease TTL, so the worker reconnects before its leases expire
  // (covered by test/integration/network.test.ts).
  const ping = { pingIntervalMs: 1_000, pingTimeoutMs: 1_500 };
  return createGrpcTransport({
    // connect-node's gRPC transport always speaks HTTP/2 (it takes no httpVersion option).
    baseUrl: config.coordinatorUrl,
    readMaxBytes: config.maxMessageBytes,
    writeMaxBytes: config.maxMessageBytes,
    // float64 matrices barely compress, and gzip of every blob chunk cost the server
    // more time than the transfer itself (measured: ~4x slower reads on loopback).
    acceptCompression: [],
    // Wide flow-control windows: a 4 MiB blob chunk arrives in one window.
    sessionManager: new WideWindowSessionManager(config.coordinatorUrl, ping, nodeOptions),
  });
}

/** Validates a lease's task and works out the shard's geometry. */
function planShard(shard: ShardLease, defaultKernel: string): ShardPlan {
  const t = shard.matmul;
  if (t?.a === undefined || t.b === undefined) throw new ShardDataError("shard has no matmul task");
  const { a, b, rowStart, rowEnd, colStart, colEnd } = t;
  if (a.cols !== b.rows) throw new ShardDataError(`A is ${a.rows}x${a.cols} but B is ${b.rows}x${b.cols}`);
  if (!(rowStart < rowEnd && rowEnd <= a.rows)) {
    throw new ShardDataError(`row range [${rowStart}, ${rowEnd}) does not fit A with ${a.rows} rows`);
  }
  if (!(colStart < colEnd && colEnd <= b.cols)) {
    throw new ShardDataError(`column range [${colStart}, ${colEnd}) does not fit B with ${b.cols} columns`);
  }
  const kernel = shard.kernel || defaultKernel;
  createKernel(kernel); // throws RangeError for a kernel this build lacks
  return { m: rowEnd - rowStart, n: colEnd - colStart, k: a.cols, a, b, rowStart, colStart, colEnd, kernel };
}

/** Transient: worth retrying after a pause (the coordinator may be restarting or overloaded). */
function isTransient(err: ConnectError): boolean {
  // Another CA, an expired certificate, a refused one: no retry changes the answer.
  if (isTlsMisconfiguration(err)) return false;
  // A broken connection can surface as ABORTED or INTERNAL too (connect-node maps
  // ECONNRESET and destroyed streams to ABORTED), which would otherwise read as the
  // coordinator's own "stale lease" ABORTED. Errors raised on this side carry the
  // Node.js error as their cause; statuses sent by the server never do.
  if (isLocalNetworkError(err)) return true;
  switch (err.code) {
    case Code.Unavailable:
    case Code.ResourceExhausted:
    case Code.DeadlineExceeded:
    case Code.Unknown:
    case Code.Internal:
    case Code.Canceled: // not ours (ours is checked first): the server or a proxy cancelled
      return true;
    default:
      return false;
  }
}

/** True if a Node.js system or stream error (with a string `code`, e.g. ECONNRESET) caused `err`. */
function isLocalNetworkError(err: Error): boolean {
  const seen = new Set<unknown>();
  for (let e: unknown = err.cause; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    if (typeof (e as { code?: unknown }).code === "string") return true;
  }
  return false;
}

/** Map key of a lease: one grant of one shard. */
function leaseKey(lease: LeaseRef): string {
  return `${lease.jobId}\u0000${lease.shardIndex}\u0000${lease.epoch}`;
}

/**
 * Log fields of a batch of leases: those of the lease when there is one; otherwise the
 * job (`jobId`, or `jobIds` when they differ) and the shard indices as `shards`.
 */
function batchFields(leases: readonly LeaseRef[]): Record<string, unknown> {
  const [only] = leases;
  if (leases.length === 1 && only !== undefined) return leaseFields(only);
  const jobIds = [...new Set(leases.map((l) => l.jobId))];
  return { ...(jobIds.length === 1 ? { jobId: jobIds[0] } : { jobIds }), shards: leases.map((l) => l.shardIndex) };
}

function leaseFields(lease: LeaseRef): Record<string, unknown> {
  // The same names as the coordinator's lines (`jobId`, `shard`, `epoch`), so one filter follows a shard everywhere.
  return { jobId: lease.jobId, shard: lease.shardIndex, epoch: Number(lease.epoch) };
}

function clampUint32(x: number): number {
  return Math.min(Math.max(0, x), 0xffff_ffff);
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function toError(e: unknown, context?: string): Error {
  if (e instanceof Error && context === undefined) return e;
  return new Error(context === undefined ? String(e) : `${context}: ${errorMessage(e)}`, { cause: e });
}
